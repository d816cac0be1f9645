"""A Vocos-style vocoder (arXiv 2306.00814): normalised log-mel frames -> ConvNeXt blocks ->
STFT magnitude and phase per frame -> inverse STFT at the mel's hop. Everything runs at the
frame rate, so it is fast on a CPU; trained here with mel and multi-resolution STFT losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from generative.generator.config import MelConfig, VocoderConfig
from generative.generator.mel import MelFrontEnd


class ConvNeXtBlock(nn.Module):
    def __init__(self, width: int, intermediate: int, kernel: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(width, width, kernel, padding=kernel // 2, groups=width)
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, intermediate)
        self.down = nn.Linear(intermediate, width)
        self.gamma = nn.Parameter(torch.full((width,), 1e-2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, W, T)
        h = self.depthwise(x).transpose(1, 2)  # (B, T, W)
        h = self.down(F.gelu(self.up(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class Vocoder(nn.Module):
    """(B, T, n_mels) normalised log-mel -> (B, T * hop) wave in [-1, 1]."""

    window: torch.Tensor  # (n_fft,), a buffer

    def __init__(self, config: VocoderConfig, mel: MelConfig) -> None:
        super().__init__()
        self.config = config
        self.hop = mel.hop
        self.embed = nn.Conv1d(mel.n_mels, config.width, config.kernel, padding=config.kernel // 2)
        self.norm = nn.LayerNorm(config.width)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(config.width, config.intermediate, config.kernel)
            for _ in range(config.layers)
        )
        self.final_norm = nn.LayerNorm(config.width)
        self.bins = config.n_fft // 2 + 1
        self.head = nn.Linear(config.width, 2 * self.bins)
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        frames = mel.shape[1]
        x = self.embed(mel.transpose(1, 2))  # (B, M, T) -> (B, W, T)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        h = self.head(self.final_norm(x.transpose(1, 2))).transpose(1, 2)  # (B, 2F, T)
        log_magnitude, phase = h[:, : self.bins], h[:, self.bins :]
        magnitude = torch.exp(log_magnitude).clamp(max=1e2)
        spec = torch.polar(magnitude, phase)  # (B, F, T) complex
        # Centred frames: T frames of hop H cover T * H samples.
        wave = torch.istft(
            spec,
            self.config.n_fft,
            self.hop,
            window=self.window,
            center=True,
            length=frames * self.hop,
        )
        return wave.clamp(-1.0, 1.0)


# --- losses ------------------------------------------------------------------------------

STFT_RESOLUTIONS = ((512, 128), (1024, 256), (256, 64))


def stft_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1, averaged."""
    total = fake.new_zeros(())
    for n_fft, hop in STFT_RESOLUTIONS:
        window = torch.hann_window(n_fft, device=fake.device)
        f, r = (
            torch.stft(x, n_fft, hop, window=window, return_complex=True).abs().clamp(min=1e-7)
            for x in (fake, real)
        )
        convergence = torch.linalg.norm(r - f) / torch.linalg.norm(r).clamp(min=1e-7)
        total = total + convergence + F.l1_loss(torch.log(f), torch.log(r))
    return total / len(STFT_RESOLUTIONS)


def vocoder_loss(
    front_end: MelFrontEnd, fake: torch.Tensor, real: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to minimise, mel L1 alone): 45 x mel L1 (as HiFi-GAN weighs it) + STFT loss."""
    mel_l1 = F.l1_loss(front_end(fake), front_end(real))
    return 45.0 * mel_l1 + stft_loss(fake, real), mel_l1
