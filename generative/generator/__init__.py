"""Re-AudioLDM: retrieval-augmented text-to-audio generation. Will hold `model.py` (mel VAE,
conditioned latent UNet, vocoder and their configs), `pipeline.py`, `train.py` and `eval.py`, in
the same shape as `generative.clap` and `generative.diffatr`."""
