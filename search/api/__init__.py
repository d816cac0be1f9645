"""Foley HTTP API."""
