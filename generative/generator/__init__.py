"""Re-AudioLDM: retrieval-augmented text-to-audio generation. `config.py` (the dataclasses),
`mel.py` (log-mel front end, Griffin-Lim), `model.py` (mel VAE, conditioned latent UNet,
checkpoint folders), `vocoder.py`, `sampler.py` (scheduler + guidance), `pipeline.py`
(`Generator`), `features.py` (corpus CLAP features and neighbours) and `train.py`; `eval.py`
is still to come."""
