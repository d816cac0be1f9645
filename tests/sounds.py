"""Sound files made by the tests: distinct, deterministic, a few KB each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16_000


def tone(kind: int, seconds: float = 1.5, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A clip whose character depends on `kind`: tones, chirps, noise bands, pulses."""
    rng = np.random.default_rng(kind)
    t = np.arange(int(seconds * sr)) / sr
    family = kind % 4
    f0 = 110.0 * 2 ** (kind / 7.0)
    if family == 0:
        wave = np.sin(2 * np.pi * f0 * t)
    elif family == 1:
        wave = np.sin(2 * np.pi * (f0 + 400.0 * t) * t)
    elif family == 2:
        wave = rng.standard_normal(t.size)
        wave = np.convolve(wave, np.ones(1 + kind % 9) / (1 + kind % 9), mode="same")
    else:
        wave = np.sin(2 * np.pi * f0 * t) * (np.sin(2 * np.pi * (2 + kind % 5) * t) > 0)
    return (0.5 * wave / (np.abs(wave).max() + 1e-9)).astype(np.float32)


def write_library(root: Path, count: int = 30, seconds: float = 1.5) -> list[Path]:
    """`count` distinct clips in a few folders, as wav and flac."""
    paths = []
    for kind in range(count):
        folder = root / ["Ambience", "Impacts", "Tones"][kind % 3]
        folder.mkdir(parents=True, exist_ok=True)
        ext = "flac" if kind % 2 else "wav"
        path = folder / f"clip_{kind:02d}.{ext}"
        sf.write(path, tone(kind, seconds), SAMPLE_RATE)
        paths.append(path)
    return paths
