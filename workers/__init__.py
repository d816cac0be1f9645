"""Foley workers."""
