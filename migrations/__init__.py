"""Alembic migrations of the Foley catalog."""
