"""AutoCap: captions and tags for new sounds. Will hold `model.py` (frozen CLAP audio encoder,
Q-Former, BART decoder with metadata tokens, and their config), `train.py` and `eval.py`, in the
same shape as `generative.clap` and `generative.diffatr`."""
