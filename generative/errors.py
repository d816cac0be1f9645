"""What loading a model can raise, importable without loading torch."""


class ModelLoadError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not fit its config or its CLAP."""
