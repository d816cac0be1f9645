"""CLAP: text and audio in one embedding space. `model.py` (with `config.py`), `load.py`,
`official.py` (LAION checkpoints), `train.py`, `eval.py`."""
