"""A benchmark library of real audio files, indexed through `foley index`, cached on disk.

Clips come from the corpus's procedural synthesizer (50 classes, each with its own knobs):
400 rendered clips, each varied (speed, gain, noise) into many files with their own bytes,
short so that embedding 10,000 of them stays cheap. The catalog and index are built by the
`foley index` command itself, then cached under ~/.cache/foley/bench/library-N: later runs
write nothing and embed nothing.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CACHE = Path(os.environ.get("FOLEY_BENCH_CACHE", "~/.cache/foley/bench")).expanduser()
SAMPLE_RATE = 16_000
READY = "ready"


BASES = 400  # rendered clips; every file is one of them varied


def base_clip(i: int, seconds: float, rng: np.random.Generator) -> tuple[str, str, np.ndarray]:
    """Rendered clip number i: its folder, file stem and wave."""
    from generative.corpus import procedural

    classes = procedural.recipes()
    draft = procedural.draft(classes[i % len(classes)].key, rng)
    draft.params["duration_s"] = seconds * 1.2  # room for the speed change below
    return draft.folder, draft.stem, procedural.render(draft.params, rng)


def vary(wave: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A variation: speed (by resampling), gain and a little noise, so bytes never repeat."""
    speed = float(rng.uniform(0.85, 1.15))
    positions = np.arange(0, len(wave) - 1, speed)
    wave = np.interp(positions, np.arange(len(wave)), wave)[: int(seconds * SAMPLE_RATE)]
    wave = wave + rng.normal(0.0, 0.01 * np.abs(wave).max() + 1e-6, wave.shape)
    wave = 0.5 * wave / (np.abs(wave).max() + 1e-9) * float(rng.uniform(0.5, 1.0))
    return wave.astype(np.float32)


def write_clips(root: Path, count: int, seconds: float, seed: int = 0) -> list[Path]:
    """`count` distinct wav files of `seconds` each under `root`, in the classes' folders."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    bases = [base_clip(i, seconds, rng) for i in range(min(BASES, count))]
    paths = []
    for i in range(count):
        folder, stem, wave = bases[i % len(bases)]
        path = root / folder / f"{stem}_{i:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, vary(wave, seconds, rng), SAMPLE_RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def library(count: int = 10_000, seconds: float = 1.0, partial: bool = False) -> Path:
    """The data dir of an indexed library of `count` clips (built on first use; resumed where
    an interrupted build stopped). `partial`: as far as a build got, if one started."""
    home = CACHE / f"library-{count}-{seconds:g}s"
    data_dir = home / "data"
    if (home / READY).exists() or (partial and (data_dir / "catalog.sqlite3").exists()):
        return data_dir
    audio = home / "audio"
    if not (home / "written").exists():
        log.info("writing %d clips to %s", count, audio)
        write_clips(audio, count, seconds)
        (home / "written").write_text(str(count))
    env = {**os.environ, "FOLEY_DATA_DIR": str(data_dir), "FOLEY_CAPTION_ON_SCAN": "false"}
    log.info("indexing them with `foley index` (cached for later runs)")
    subprocess.run([sys.executable, "-m", "foley", "index", str(audio)], env=env, check=True)
    (home / READY).write_text(str(count))
    return data_dir


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(library(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
