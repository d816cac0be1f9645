"""Scene effects shared by every source: room, distance, background noise, loudness.

Each clip's dry sound is placed in a sampled scene so that the same class appears close
or far, dry or reverberant, clean or over background noise; the captions name the scene.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy import signal

SAMPLE_RATE = 16_000

ROOMS = ("none", "small room", "large hall")
DISTANCES = ("near", "medium", "far")
BACKGROUNDS = ("none", "hum", "hiss", "rumble")
LOUDNESS = ("quiet", "medium", "loud")
SCENE_KEYS = ("loudness", "room", "distance", "background")

# Peak level ranges per loudness word; the final mix is scaled into these.
_PEAK = {"quiet": (0.08, 0.18), "medium": (0.3, 0.5), "loud": (0.75, 0.95)}
_RT60 = {"small room": (0.25, 0.45), "large hall": (1.6, 2.6)}
_WET = {"none": 0.0, "small room": 0.3, "large hall": 0.5}


def seconds(n: int) -> float:
    return n / SAMPLE_RATE


def samples(duration_s: float) -> int:
    return int(round(duration_s * SAMPLE_RATE))


def sample_scene(rng: np.random.Generator) -> dict[str, str]:
    """Draw the attributes every clip varies, whatever its source."""
    return {
        "loudness": str(rng.choice(LOUDNESS, p=[0.25, 0.5, 0.25])),
        "room": str(rng.choice(ROOMS, p=[0.45, 0.3, 0.25])),
        "distance": str(rng.choice(DISTANCES, p=[0.3, 0.45, 0.25])),
        "background": str(rng.choice(BACKGROUNDS, p=[0.55, 0.15, 0.15, 0.15])),
    }


DURATIONS = {"short": (1.0, 2.5), "medium": (2.5, 5.0), "long": (5.0, 8.0)}


def sample_duration(
    rng: np.random.Generator, words: tuple[str, ...] = ("short", "medium", "long")
) -> dict[str, Any]:
    """A duration word ("short", "long"; "medium" goes unsaid) and seconds within its range."""
    weights = np.array([{"short": 0.35, "medium": 0.4, "long": 0.25}[w] for w in words])
    word = str(rng.choice(words, p=weights / weights.sum()))
    return {"duration": word, "duration_s": round(float(rng.uniform(*DURATIONS[word])), 2)}


def lowpass(x: np.ndarray, cutoff_hz: float, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, min(cutoff_hz, 7800.0), "lowpass", fs=SAMPLE_RATE, output="sos")
    return signal.sosfilt(sos, x)


def highpass(x: np.ndarray, cutoff_hz: float, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, max(cutoff_hz, 10.0), "highpass", fs=SAMPLE_RATE, output="sos")
    return signal.sosfilt(sos, x)


def bandpass(x: np.ndarray, low_hz: float, high_hz: float, order: int = 2) -> np.ndarray:
    low, high = max(low_hz, 10.0), min(high_hz, 7800.0)
    sos = signal.butter(
        order, [low, max(high, low * 1.05)], "bandpass", fs=SAMPLE_RATE, output="sos"
    )
    return signal.sosfilt(sos, x)


def resample(x: np.ndarray, rate_from: int, rate_to: int = SAMPLE_RATE) -> np.ndarray:
    if rate_from == rate_to:
        return x
    ratio = Fraction(rate_to, rate_from)
    return signal.resample_poly(x, ratio.numerator, ratio.denominator)


def to_mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1) if x.ndim == 2 else x


def impulse_response(room: str, rng: np.random.Generator) -> np.ndarray:
    """Exponentially decaying noise: a cheap, convincing diffuse reverb tail."""
    rt60 = rng.uniform(*_RT60[room])
    n = samples(rt60)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.standard_normal(n) * 10.0 ** (-3.0 * t / rt60)
    # Large spaces lose highs faster (air absorption).
    ir = lowpass(ir, 3500.0 if room == "large hall" else 6000.0)
    ir[: samples(0.004)] = 0.0  # pre-delay before the first reflection
    return ir / (np.sqrt(np.sum(ir**2)) + 1e-12)


def apply_room(x: np.ndarray, room: str, extra_wet: float, rng: np.random.Generator) -> np.ndarray:
    wet_level = _WET[room] + extra_wet
    if wet_level <= 0.0:
        return x
    ir = impulse_response(room if room != "none" else "small room", rng)
    wet = signal.fftconvolve(x, ir)[: len(x)]
    dry_rms, wet_rms = _rms(x), _rms(wet)
    wet *= dry_rms / (wet_rms + 1e-12)
    return (1.0 - wet_level) * x + wet_level * wet


def apply_distance(x: np.ndarray, distance: str, rng: np.random.Generator) -> np.ndarray:
    if distance == "far":
        return 0.4 * lowpass(x, rng.uniform(1200.0, 2500.0))
    if distance == "medium":
        return 0.7 * lowpass(x, rng.uniform(4500.0, 6500.0), order=1)
    return x


def background(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    if kind == "hum":
        mains = float(rng.choice([50.0, 60.0]))
        hum = sum(np.sin(2 * np.pi * mains * k * t) / k for k in (1, 2, 3, 5, 7))
        return np.asarray(hum) + 0.05 * rng.standard_normal(n)
    if kind == "hiss":
        return highpass(rng.standard_normal(n), 2000.0)
    brown = np.cumsum(rng.standard_normal(n))
    brown = lowpass(highpass(brown, 20.0), 250.0)
    swell = 1.0 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 6.3))
    return brown * swell


def finish(dry: np.ndarray, params: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Place a dry sound in its scene and scale it to its loudness; returns float32."""
    x = np.asarray(dry, dtype=np.float64)
    x = apply_distance(x, params["distance"], rng)
    x = apply_room(x, params["room"], 0.25 if params["distance"] == "far" else 0.0, rng)
    if params["background"] != "none":
        noise = background(params["background"], len(x), rng)
        snr_db = rng.uniform(12.0, 22.0) - (6.0 if params["distance"] == "far" else 0.0)
        noise *= _rms(x) / (_rms(noise) + 1e-12) * 10.0 ** (-snr_db / 20.0)
        x = x + noise
    x = fade(x)
    peak = np.max(np.abs(x))
    if peak > 0:
        x *= rng.uniform(*_PEAK[params["loudness"]]) / peak
    return x.astype(np.float32)


def fade(x: np.ndarray, seconds_in: float = 0.005, seconds_out: float = 0.05) -> np.ndarray:
    n_in, n_out = min(samples(seconds_in), len(x)), min(samples(seconds_out), len(x))
    x = x.copy()
    x[:n_in] *= np.linspace(0.0, 1.0, n_in)
    if n_out:
        x[-n_out:] *= np.linspace(1.0, 0.0, n_out)
    return x


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    if len(x) >= n:
        return x[:n]
    return np.concatenate([x, np.zeros(n - len(x))])


def write_flac(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(x, -1.0, 1.0), SAMPLE_RATE, format="FLAC", subtype="PCM_16")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0
