"""The generator's configuration: one dataclass per part, gathered in `GeneratorConfig`, which
round-trips through JSON (`config.json` of a checkpoint folder). No torch here."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

MIN_SECONDS = 1.0
MAX_SECONDS = 10.0


def _from_dict(cls: Any, data: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    # JSON has no tuples: lists come back as the tuples the dataclasses declare.
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass
class MelConfig:
    """Log-mel at the CLAP's sample rate (AudioLDM's front end: 64 mels, 10 ms hop)."""

    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 160
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float = 8000.0
    floor: float = 1e-5  # log(max(mel, floor)); the floor is silence
    # The VAE sees (log mel - offset) / scale: silence near -1.6, loud sounds near +1.5.
    offset: float = -5.0
    scale: float = 4.0


@dataclass
class VAEConfig:
    """diffusers' AutoencoderKL over a (1, T, n_mels) mel image."""

    # Small on purpose: the full-resolution blocks dominate the cost on a CPU.
    block_out_channels: tuple[int, ...] = (16, 32, 64)
    latent_channels: int = 8
    layers_per_block: int = 1
    norm_num_groups: int = 8
    kl_weight: float = 1e-5

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


@dataclass
class VocoderConfig:
    """A Vocos-style vocoder: ConvNeXt blocks over mel frames -> STFT magnitude and phase ->
    inverse STFT at the mel's hop."""

    width: int = 192
    intermediate: int = 576
    layers: int = 6
    kernel: int = 7
    n_fft: int = 640  # 4 hops, as Vocos
    griffin_lim_iters: int = 32  # the baseline, used when no vocoder is trained


@dataclass
class UNetConfig:
    """diffusers' UNet2DConditionModel over VAE latents, with the condition encoder."""

    block_out_channels: tuple[int, ...] = (64, 128, 128)
    down_block_types: tuple[str, ...] = (
        "DownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
    )
    up_block_types: tuple[str, ...] = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    layers_per_block: int = 1
    norm_num_groups: int = 16
    attention_heads: int = 4
    cond_dim: int = 128  # width of the cross-attention tokens
    clap_dim: int = 256  # width of the CLAP embeddings it is conditioned on
    max_neighbours: int = 10
    # Training: which CLAP embedding of the target clip fills the query slot ("text": one of
    # its captions; "audio": its audio embedding, as AudioLDM), and the condition dropout.
    train_condition: str = "text"
    p_drop_text: float = 0.1
    p_drop_retrieval: float = 0.1
    p_drop_both: float = 0.1
    p_drop_caption: float = 0.1  # a neighbour's caption missing (its audio stays)
    # Diffusion (AudioLDM's schedule) and the sampler's defaults.
    train_timesteps: int = 1000
    beta_start: float = 0.0015
    beta_end: float = 0.0195
    beta_schedule: str = "scaled_linear"
    latent_scale: float = 1.0  # set from the training latents' std so they have unit variance
    steps: int = 25
    guidance: float = 2.5
    guidance_mode: str = "both"
    scheduler: str = "ddim"
    # With retrieval, the query slot holds this share of the neighbours' mean CLAP audio
    # embedding, the rest the prompt's text embedding (unit-normalised mix): an audio-side
    # estimate of the prompt for a UNet whose query slot learnt audio embeddings.
    query_from_neighbours: float = 0.0


@dataclass
class GeneratorConfig:
    mel: MelConfig = field(default_factory=MelConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    clap_model_id: str | None = None  # the CLAP whose embeddings the UNet was trained on
    vae_id: str | None = None  # the VAE weights the UNet was trained on (a digest)

    @property
    def frame_multiple(self) -> int:
        """Mel frames are padded to a multiple of this: the VAE's and the UNet's downsampling."""
        return self.vae.downsample * 2 ** (len(self.unet.block_out_channels) - 1)

    def frames(self, seconds: float) -> int:
        return round(seconds * self.mel.sample_rate / self.mel.hop)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        parts = {"mel": MelConfig, "vae": VAEConfig, "vocoder": VocoderConfig, "unet": UNetConfig}
        kwargs: dict[str, Any] = {
            name: _from_dict(kind, data.get(name, {})) for name, kind in parts.items()
        }
        kwargs["clap_model_id"] = data.get("clap_model_id")
        kwargs["vae_id"] = data.get("vae_id")
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> GeneratorConfig:
        return cls.from_dict(json.loads(text))


def tiny_config(clap_dim: int = 32) -> GeneratorConfig:
    """A few-thousand-parameter generator for tests: hidden sizes of 8-16, 2 sampler steps."""
    return GeneratorConfig(
        mel=MelConfig(n_fft=256, hop=160, n_mels=16),
        vae=VAEConfig(block_out_channels=(8, 8), latent_channels=4, norm_num_groups=4),
        vocoder=VocoderConfig(width=16, intermediate=32, layers=1, n_fft=640, griffin_lim_iters=4),
        unet=UNetConfig(
            block_out_channels=(8, 16),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=4,
            attention_heads=2,
            cond_dim=16,
            clap_dim=clap_dim,
            max_neighbours=4,
            steps=2,
        ),
    )
