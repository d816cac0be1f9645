"""Pictures of sounds: a waveform coloured by spectral centroid and a log-frequency
spectrogram, drawn with numpy and Pillow (after Freesound's `utils/audioprocessing`).

A waveform column holds the min and max sample of its stretch of audio, coloured by that
stretch's spectral centroid (dark blue for low, through green and yellow, to red for
bright). A spectrogram column is the magnitude spectrum (in dB, relative to the loudest
bin of the sound) of a window centred on the column, resampled onto a logarithmic
frequency axis from 20 Hz to half the sample rate, low frequencies at the bottom.

Pictures are cached as PNG files named by the sound's content hash, kind, size and the
drawing's version, so a sound is decoded and drawn once per picture.
"""

from __future__ import annotations

import enum
import io
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Bump when the drawing changes, so cached pictures and ETags change with it.
VERSION = 1
SAMPLE_RATE = 22_050
FFT_SIZE = 2048
MIN_FREQ = 20.0
DB_RANGE = 90.0
BACKGROUND = (24, 26, 33)

# (position 0..1, RGB) stops; the waveform's runs from low (dark blue) to bright (red) centroid.
_WAVE_STOPS = [(0.0, (50, 80, 200)), (0.35, (40, 170, 170)), (0.6, (120, 200, 60)),
               (0.8, (240, 200, 40)), (1.0, (230, 60, 50))]  # fmt: skip
_SPECTRO_STOPS = [(0.0, (0, 0, 0)), (0.25, (58, 10, 110)), (0.5, (180, 40, 100)),
                  (0.75, (250, 140, 30)), (1.0, (255, 255, 200))]  # fmt: skip


class Kind(enum.StrEnum):
    waveform = "waveform"
    spectrogram = "spectrogram"


class Size(enum.StrEnum):
    list = "list"
    detail = "detail"


DIMENSIONS: dict[Size, tuple[int, int]] = {Size.list: (195, 101), Size.detail: (780, 301)}


def _palette(stops: list[tuple[float, tuple[int, int, int]]]) -> np.ndarray:
    """A 256 x 3 colour table interpolated between the stops."""
    positions = [p for p, _ in stops]
    x = np.linspace(0.0, 1.0, 256)
    channels = [np.interp(x, positions, [c[i] for _, c in stops]) for i in range(3)]
    return np.stack(channels, axis=1).astype(np.uint8)


WAVE_PALETTE = _palette(_WAVE_STOPS)
SPECTRO_PALETTE = _palette(_SPECTRO_STOPS)


def _frames(signal: np.ndarray, columns: int) -> np.ndarray:
    """One Hann-windowed frame of FFT_SIZE samples centred on each column: (columns, FFT)."""
    padded = np.pad(signal, (FFT_SIZE // 2, FFT_SIZE // 2))
    centres = ((np.arange(columns) + 0.5) * len(signal) / columns).astype(np.int64)
    index = centres[:, None] + np.arange(FFT_SIZE)[None, :]  # (C, 1) + (1, N) -> (C, N)
    return padded[index] * np.hanning(FFT_SIZE)[None, :]


def _power(signal: np.ndarray, columns: int) -> np.ndarray:
    """Power spectrum per column: (columns, FFT/2 + 1)."""
    return np.abs(np.fft.rfft(_frames(signal, columns), axis=1)) ** 2


def _centroids(power: np.ndarray, sample_rate: int) -> np.ndarray:
    """Each column's spectral centroid mapped to 0..1 on a log scale from MIN_FREQ to Nyquist."""
    freqs = np.fft.rfftfreq(FFT_SIZE, 1.0 / sample_rate)
    total = power.sum(axis=1)
    centroid = (power * freqs[None, :]).sum(axis=1) / np.maximum(total, 1e-12)
    nyquist = sample_rate / 2
    position = np.log(np.clip(centroid, MIN_FREQ, nyquist) / MIN_FREQ) / np.log(nyquist / MIN_FREQ)
    return np.where(total > 1e-10, position, 0.0)


def _peaks(signal: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max sample of each column's stretch of the signal."""
    if len(signal) < columns:
        signal = np.interp(np.linspace(0, len(signal) - 1, columns), np.arange(len(signal)), signal)
    starts = (np.arange(columns) * len(signal) // columns).astype(np.int64)
    return np.minimum.reduceat(signal, starts), np.maximum.reduceat(signal, starts)


def draw_waveform(signal: np.ndarray, sample_rate: int, width: int, height: int) -> Image.Image:
    """Min/max peaks per column, each column coloured by its spectral centroid."""
    low, high = _peaks(signal, width)
    scale = max(float(np.abs(signal).max()), 1e-6)
    middle = (height - 1) / 2
    top = np.floor(middle - high / scale * middle).astype(int)
    bottom = np.ceil(middle - low / scale * middle).astype(int)
    colour = WAVE_PALETTE[(_centroids(_power(signal, width), sample_rate) * 255).astype(int)]
    rows = np.arange(height)[:, None]
    inside = (rows >= top[None, :]) & (rows <= bottom[None, :])  # (H, 1) vs (1, W) -> (H, W)
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = BACKGROUND
    pixels[inside] = np.broadcast_to(colour[None, :, :], (height, width, 3))[inside]
    pixels[int(middle), ~inside[int(middle)]] = (70, 74, 86)  # the zero line where silent
    return Image.fromarray(pixels, "RGB")


def _log_bands(sample_rate: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """For each picture row (top = highest), the FFT bins [lo, hi) it averages."""
    nyquist = sample_rate / 2
    edges = MIN_FREQ * (nyquist / MIN_FREQ) ** np.linspace(0.0, 1.0, height + 1)
    bins = np.clip(np.round(edges / nyquist * (FFT_SIZE // 2)).astype(int), 0, FFT_SIZE // 2)
    lo, hi = bins[:-1], np.maximum(bins[1:], bins[:-1] + 1)
    return lo[::-1], hi[::-1]


def draw_spectrogram(signal: np.ndarray, sample_rate: int, width: int, height: int) -> Image.Image:
    """Magnitude in dB on a log-frequency axis, relative to the sound's loudest bin."""
    power = _power(signal, width)
    lo, hi = _log_bands(sample_rate, height)
    cumulative = np.concatenate([np.zeros((width, 1)), np.cumsum(power, axis=1)], axis=1)
    band = (cumulative[:, hi] - cumulative[:, lo]) / (hi - lo)[None, :]  # (W, H)
    db = 10 * np.log10(np.maximum(band, 1e-20))
    level = np.clip((db - db.max() + DB_RANGE) / DB_RANGE, 0.0, 1.0)
    return Image.fromarray(SPECTRO_PALETTE[(level.T * 255).astype(int)], "RGB")


def draw(kind: Kind, size: Size, signal: np.ndarray, sample_rate: int) -> bytes:
    """The PNG of one kind of picture at one size."""
    width, height = DIMENSIONS[size]
    if len(signal) == 0:
        signal = np.zeros(1, np.float32)
    painter = draw_waveform if kind is Kind.waveform else draw_spectrogram
    return _png(painter(signal.astype(np.float64), sample_rate, width, height))


def draw_error(size: Size, message: str) -> bytes:
    """A picture that says, in words, why there is no picture of the sound."""
    width, height = DIMENSIONS[size]
    image = Image.new("RGB", (width, height), (60, 30, 34))
    pen = ImageDraw.Draw(image)
    pen.rectangle([0, 0, width - 1, height - 1], outline=(200, 80, 80))
    chars = max(8, (width - 12) // 6)
    lines = [message[i : i + chars] for i in range(0, len(message), chars)][: (height - 8) // 12]
    pen.multiline_text((6, 4), "\n".join(lines), fill=(255, 220, 220), spacing=2)
    return _png(image)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def etag(content_hash: str, kind: Kind, size: Size) -> str:
    return f'"{content_hash[:20]}-{kind.value}-{size.value}-v{VERSION}"'


class PictureCache:
    """PNG files under `root`, named by content hash, kind, size and drawing version."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, content_hash: str, kind: Kind, size: Size) -> Path:
        name = f"{content_hash}-{kind.value}-{size.value}-v{VERSION}.png"
        return self.root / content_hash[:2] / name

    def get(self, content_hash: str, kind: Kind, size: Size) -> bytes | None:
        path = self.path(content_hash, kind, size)
        return path.read_bytes() if path.is_file() else None

    def put(self, content_hash: str, kind: Kind, size: Size, png: bytes) -> None:
        """Write through a temporary file and a rename, so readers never see half a PNG."""
        path = self.path(content_hash, kind, size)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(png)
        os.replace(tmp, path)
