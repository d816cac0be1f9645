"""Foley search."""
