"""The `foley` command line (`python -m foley` works too)."""
