"""Foley index_builder."""
