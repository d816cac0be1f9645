"""Spectrogram pictures of log-mels (time left to right, low frequencies at the bottom), for
`foley generate --spectrogram` and the generator's model card. Pillow only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

# A dark-to-bright colour ramp (dark blue, purple, orange, pale yellow), interpolated linearly.
RAMP = np.asarray(
    [[8, 8, 32], [60, 15, 110], [160, 40, 110], [235, 110, 50], [252, 240, 160]], np.float32
)


def colour(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 colours along RAMP."""
    x = np.clip(values, 0.0, 1.0) * (len(RAMP) - 1)
    low = np.floor(x).astype(int).clip(0, len(RAMP) - 2)
    t = (x - low)[..., None]
    return ((1 - t) * RAMP[low] + t * RAMP[low + 1]).round().astype(np.uint8)


def mel_rgb(mel: np.ndarray, low: float = -1.6, high: float = 1.5) -> np.ndarray:
    """(T, n_mels) normalised log-mel -> (n_mels, T, 3) image rows, highest mel first.
    `low`/`high` are the normalised levels of silence and of a loud sound."""
    if mel.ndim != 2:
        raise ValueError(f"a log-mel is (frames, mels); got shape {mel.shape}")
    scaled = (np.asarray(mel, np.float32).T[::-1] - low) / (high - low)
    return colour(scaled)


def spectrogram_sheet(
    rows: Sequence[tuple[str, np.ndarray]], path: Path, zoom: int = 2, width: int | None = None
) -> Path:
    """One PNG with a titled spectrogram per (title, log-mel) row, all at one time scale."""
    from PIL import Image, ImageDraw

    if not rows:
        raise ValueError("no spectrograms to draw")
    pictures = [mel_rgb(mel) for _, mel in rows]
    frames = width or max(p.shape[1] for p in pictures)
    title_h, pad = 14, 6
    height = sum(p.shape[0] * zoom + title_h + pad for p in pictures)
    sheet = Image.new("RGB", (frames * zoom, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = 0
    for (title, _), picture in zip(rows, pictures, strict=True):
        draw.text((2, y + 1), title, fill=(0, 0, 0))
        y += title_h
        image = Image.fromarray(picture[:, :frames])
        image = image.resize((image.width * zoom, image.height * zoom), Image.Resampling.NEAREST)
        sheet.paste(image, (0, y))
        y += image.height + pad
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    return path
