"""The committed generator: it loads over the committed CLAP, every part fits the size limit,
and it makes a deterministic, audible sound with and without neighbours."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.config import DEFAULT_MODELS_DIR
from generative.generator.model import MAX_CHECKPOINT_BYTES

CHECKPOINT = DEFAULT_MODELS_DIR / "generator"
CLAP = DEFAULT_MODELS_DIR / "clap-compact"


def test_committed_parts_are_fp16_and_within_the_size_limit() -> None:
    from safetensors import safe_open

    for part in ("vae", "unet", "vocoder"):
        path = CHECKPOINT / f"{part}.safetensors"
        assert 0 < path.stat().st_size <= MAX_CHECKPOINT_BYTES, path
        with safe_open(str(path), framework="pt") as weights:
            dtypes = {str(weights.get_tensor(name).dtype) for name in weights.keys()}  # noqa: SIM118
        assert dtypes == {"torch.float16"}, (part, dtypes)
    training = json.loads((CHECKPOINT / "training.json").read_text())
    assert set(training) == {"vae", "vocoder", "unet"}
    assert (CHECKPOINT / "README.md").read_text().startswith("# Foley generator")


@pytest.fixture(scope="module")
def loaded():  # noqa: ANN201
    import torch

    from generative.clap.load import load_clap
    from generative.generator.pipeline import load_generator

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    clap = load_clap(CLAP)
    yield clap, load_generator(CHECKPOINT, clap=clap)  # refuses a generator of another CLAP
    torch.set_num_threads(threads)


def test_committed_generator_makes_a_deterministic_audible_sound(loaded) -> None:  # noqa: ANN001
    from generative.generator.pipeline import Neighbours

    clap, generator = loaded
    assert generator.vocoder is not None  # the trained vocoder, not Griffin-Lim
    rng = np.random.default_rng(0)
    audio = rng.standard_normal((3, clap.dim)).astype(np.float32)
    audio /= np.linalg.norm(audio, axis=1, keepdims=True)
    near = Neighbours(
        audio=audio,
        text=clap.embed_text(["rain on a roof", "heavy rain", "water dripping"]),
        has_caption=np.ones(3, bool),
    )
    first = generator("rain falling", seconds=1.0, neighbours=near, seed=1, steps=4)
    again = generator("rain falling", seconds=1.0, neighbours=near, seed=1, steps=4)
    alone = generator("rain falling", seconds=1.0, seed=1, steps=4)
    assert first.wave.shape == (generator.sample_rate,)
    assert np.array_equal(first.wave, again.wave)
    assert not np.allclose(first.wave, alone.wave)  # the neighbours change the sound
    rms = float(np.sqrt(np.mean(first.wave**2)))
    assert 1e-3 < rms < 0.9, rms
    assert np.isfinite(first.wave).all() and np.abs(first.wave).max() <= 1.0


@pytest.mark.parametrize("seconds", [0.5, 10.5])
def test_committed_generator_refuses_lengths_outside_1_to_10_seconds(
    loaded,  # noqa: ANN001
    seconds: float,
) -> None:
    from generative.generator.pipeline import GenerationError

    _, generator = loaded
    with pytest.raises(GenerationError, match="seconds"):
        generator("rain falling", seconds=seconds)
