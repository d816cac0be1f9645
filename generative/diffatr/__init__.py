"""DiffATR: the generative reranker. `model.py` (denoiser and config), `sampler.py` (DDIM),
`pipeline.py` (a loaded reranker), `features.py` (cached CLAP features), `train.py`, `eval.py`."""
