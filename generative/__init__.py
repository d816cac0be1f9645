"""Foley's neural models (CLAP, DiffATR, Re-AudioLDM, AutoCap) and their registry."""
