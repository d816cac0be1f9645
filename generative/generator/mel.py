"""The mel front end: mono waves at the CLAP's sample rate -> normalised log-mel frames, and
Griffin-Lim, the baseline way back from a mel to a wave.

Frames are (B, T, n_mels) with T = ceil(samples / hop) (centred STFT, reflect padding), so
`seconds * sample_rate / hop` frames make `seconds` of audio again.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from generative.generator.config import MelConfig


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filters(config: MelConfig) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters on the HTK mel scale, each of unit area."""
    bins = np.linspace(0.0, config.sample_rate / 2, config.n_fft // 2 + 1)
    edges = _mel_to_hz(
        np.linspace(
            _hz_to_mel(np.asarray(config.fmin)),
            _hz_to_mel(np.asarray(config.fmax)),
            config.n_mels + 2,
        )
    )
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    filters = np.maximum(0.0, np.minimum(rising, falling))
    filters *= 2.0 / (upper - lower)  # slaney-style area normalisation
    return filters.astype(np.float32)


class MelFrontEnd(nn.Module):
    """(B, samples) waves in [-1, 1] -> (B, T, n_mels) normalised log-mel; and back to a
    magnitude spectrogram for Griffin-Lim."""

    filters: torch.Tensor  # (n_mels, n_fft // 2 + 1), a buffer
    window: torch.Tensor  # (n_fft,), a buffer

    def __init__(self, config: MelConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("filters", torch.from_numpy(mel_filters(config)), persistent=False)
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)

    def magnitude(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, n_fft // 2 + 1, T) linear magnitude."""
        c = self.config
        spec = torch.stft(
            wave,
            c.n_fft,
            c.hop,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        frames = -(-wave.shape[-1] // c.hop)
        return spec.abs()[..., :frames]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        c = self.config
        mel = self.filters @ self.magnitude(wave)  # (M, F) @ (B, F, T) -> (B, M, T)
        log_mel = torch.log(mel.clamp(min=c.floor))
        return ((log_mel - c.offset) / c.scale).transpose(1, 2)  # (B, T, M)

    def silence(self) -> float:
        """The normalised value of a silent frame."""
        return (float(np.log(self.config.floor)) - self.config.offset) / self.config.scale

    def to_linear(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) normalised log-mel -> (B, F, T) linear magnitude (least squares)."""
        c = self.config
        power = torch.exp(mel * c.scale + c.offset).transpose(1, 2)  # (B, M, T)
        inverse = torch.linalg.pinv(self.filters)  # (F, M)
        return (inverse @ power).clamp(min=0.0)  # (F, M) @ (B, M, T) -> (B, F, T)

    def griffin_lim(
        self, mel: torch.Tensor, iters: int = 32, seed: int = 0, momentum: float = 0.99
    ) -> torch.Tensor:
        """(B, T, n_mels) -> (B, T * hop) waves by fast Griffin-Lim from a seeded phase."""
        c = self.config
        magnitude = self.to_linear(mel)
        length = mel.shape[1] * c.hop
        generator = torch.Generator().manual_seed(seed)
        angles = torch.exp(2j * torch.pi * torch.rand(magnitude.shape, generator=generator))
        previous = torch.zeros_like(angles)
        wave = torch.zeros(mel.shape[0], length)
        for _ in range(max(1, iters)):
            wave = torch.istft(
                magnitude * angles, c.n_fft, c.hop, window=self.window, center=True, length=length
            )
            spec = torch.stft(
                wave,
                c.n_fft,
                c.hop,
                window=self.window,
                center=True,
                pad_mode="reflect",
                return_complex=True,
            )[..., : mel.shape[1]]
            accelerated = spec - momentum / (1 + momentum) * previous
            previous = spec
            angles = accelerated / accelerated.abs().clamp(min=1e-8)
        return wave.clamp(-1.0, 1.0)
