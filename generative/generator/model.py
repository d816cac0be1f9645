"""Re-AudioLDM's networks: a mel VAE (diffusers' AutoencoderKL), a latent UNet (diffusers'
UNet2DConditionModel) with its condition encoder, and how a checkpoint folder stores them.

The UNet's conditions, built by `ConditionEncoder`:
- the query's CLAP embedding (text at sampling; text or the clip's own audio in training) is
  both the UNet's class embedding (`simple_projection`, added to the time embedding) and the
  first cross-attention token;
- each of up to K retrieved neighbours is one more token: its CLAP audio embedding and the CLAP
  text embedding of its caption, projected and summed with a rank embedding; a neighbour
  without a caption gets a learned "no caption" vector instead of the text part;
- `encoder_attention_mask` (B, 1 + K) hides missing neighbours. A dropped query (condition
  dropout, the unconditional branch of guidance) is a learned null token and a zero class
  embedding; dropped retrieval hides every neighbour token. Token 0 is never hidden, so the
  attention always has a key.

A checkpoint folder holds `config.json` (GeneratorConfig), one fp16 safetensors file per part
(`vae`, `unet`, `vocoder`; each stage of training writes its own), `training.json` and a
`README.md` model card.

Build on CPU in float32, move with `.to(device)`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from generative.errors import ModelLoadError
from generative.generator.config import GeneratorConfig, UNetConfig, VAEConfig

CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
TRAINING_FILE = "training.json"
PARTS = ("vae", "vocoder", "unet")
MAX_CHECKPOINT_BYTES = 25 * 1024 * 1024


class GeneratorLoadError(ModelLoadError):
    """A generator checkpoint is missing, unreadable, or does not fit its config or its CLAP."""


def weights_file(part: str) -> str:
    return f"{part}.safetensors"


def build_vae(config: VAEConfig) -> Any:
    """diffusers' AutoencoderKL (typed Any: diffusers' classes are not typed as modules)."""
    from diffusers import AutoencoderKL

    n = len(config.block_out_channels)
    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        latent_channels=config.latent_channels,
        norm_num_groups=config.norm_num_groups,
    )


@dataclass
class Conditions:
    """What the UNet is conditioned on, for a batch of B with up to K neighbours each."""

    query: torch.Tensor  # (B, D) CLAP embedding (text, or audio in training)
    neighbour_audio: torch.Tensor  # (B, K, D) CLAP audio embeddings
    neighbour_text: torch.Tensor  # (B, K, D) CLAP text embeddings of their captions
    neighbour_mask: torch.Tensor  # (B, K) bool: the neighbour exists
    caption_mask: torch.Tensor  # (B, K) bool: the neighbour has a caption
    use_query: torch.Tensor  # (B,) bool: False drops the query (dropout / guidance)
    use_retrieval: torch.Tensor  # (B,) bool: False hides every neighbour

    def with_dropped(self, query: bool, retrieval: bool) -> Conditions:
        """The same conditions with the query and/or the retrieval dropped."""
        out = Conditions(*self._tensors())
        if query:
            out.use_query = torch.zeros_like(self.use_query)
        if retrieval:
            out.use_retrieval = torch.zeros_like(self.use_retrieval)
        return out

    @staticmethod
    def cat(items: list[Conditions]) -> Conditions:
        parts = [item._tensors() for item in items]
        return Conditions(*(torch.cat(column) for column in zip(*parts, strict=True)))

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        return (
            self.query,
            self.neighbour_audio,
            self.neighbour_text,
            self.neighbour_mask,
            self.caption_mask,
            self.use_query,
            self.use_retrieval,
        )


class ConditionEncoder(nn.Module):
    """Conditions -> (tokens (B, 1 + K, H), attention mask (B, 1 + K), class input (B, D))."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        dim, width = config.clap_dim, config.cond_dim
        self.query = nn.Linear(dim, width)
        self.null_query = nn.Parameter(torch.randn(width) * 0.02)
        self.audio = nn.Linear(dim, width)
        self.text = nn.Linear(dim, width)
        self.no_caption = nn.Parameter(torch.randn(width) * 0.02)
        self.rank = nn.Embedding(config.max_neighbours, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, c: Conditions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k = c.neighbour_audio.shape[1]
        if k > self.rank.num_embeddings:
            raise ValueError(f"{k} neighbours; this model takes at most {self.rank.num_embeddings}")
        keep = c.use_query[:, None].float()  # (B, 1)
        query = keep * self.query(c.query) + (1 - keep) * self.null_query  # (B, H)
        has_caption = c.caption_mask[..., None].float()  # (B, K, 1)
        text = has_caption * self.text(c.neighbour_text) + (1 - has_caption) * self.no_caption
        ranks = self.rank(torch.arange(k, device=c.query.device))  # (K, H)
        neighbours = self.audio(c.neighbour_audio) + text + ranks  # (B, K, H)
        tokens = self.norm(torch.cat([query[:, None], neighbours], dim=1))  # (B, 1 + K, H)
        visible = c.neighbour_mask & c.use_retrieval[:, None]  # (B, K)
        mask = torch.cat([torch.ones_like(visible[:, :1]), visible], dim=1)  # (B, 1 + K)
        class_input = c.query * keep  # (B, D): a dropped query adds nothing to the time embedding
        return tokens, mask, class_input


class LatentUNet(nn.Module):
    """(noisy latents (B, C, T', F'), timesteps (B,), Conditions) -> predicted noise."""

    def __init__(self, config: UNetConfig, latent_channels: int) -> None:
        from diffusers import UNet2DConditionModel

        super().__init__()
        self.config = config
        self.conditions = ConditionEncoder(config)
        self.unet = UNet2DConditionModel(
            in_channels=latent_channels,
            out_channels=latent_channels,
            down_block_types=config.down_block_types,
            up_block_types=config.up_block_types,
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_num_groups,
            cross_attention_dim=config.cond_dim,
            attention_head_dim=config.attention_heads,
            class_embed_type="simple_projection",
            projection_class_embeddings_input_dim=config.clap_dim,
        )
        # Seen by tests: what the last call passed to the UNet's cross-attention.
        self.last_hidden_shape: tuple[int, ...] = ()
        self.last_mask: torch.Tensor | None = None

    def forward(self, latents: torch.Tensor, t: torch.Tensor, c: Conditions) -> torch.Tensor:
        tokens, mask, class_input = self.conditions(c)
        self.last_hidden_shape, self.last_mask = tuple(tokens.shape), mask
        out = self.unet(  # type: ignore[operator]
            latents,
            t,
            encoder_hidden_states=tokens,
            encoder_attention_mask=mask,
            class_labels=class_input,
        ).sample
        return out


# --- checkpoint folders --------------------------------------------------------------------


def save_part(module: nn.Module, folder: Path, part: str) -> str:
    """Write `<part>.safetensors` in fp16 (atomically); returns its digest. Raises ValueError
    when it would exceed 25 MB."""
    from safetensors.torch import save_file

    tensors = {
        name: (t.half() if t.is_floating_point() else t).detach().cpu().contiguous()
        for name, t in module.state_dict().items()
    }
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    if size > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"the {part} would take {size / 2**20:.1f} MB; checkpoints hold 25 MB")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{weights_file(part)}.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.chmod(tmp, 0o644)  # safetensors creates its file owner-only
    os.replace(tmp, folder / weights_file(part))
    return part_digest(folder, part)


def part_digest(folder: Path, part: str) -> str:
    with open(Path(folder) / weights_file(part), "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:12]


def write_text(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp"
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, folder / name)


def read_config(folder: Path) -> GeneratorConfig:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise GeneratorLoadError(f"generator checkpoint {folder} has no {CONFIG_FILE}")
    try:
        return GeneratorConfig.from_json(path.read_text())
    except (ValueError, TypeError) as exc:
        raise GeneratorLoadError(f"{path} is not a generator config: {exc}") from exc


M = TypeVar("M", bound=nn.Module)


def load_part(module: M, folder: Path, part: str) -> M:
    """Fill `module` from `<part>.safetensors` (fp16 -> fp32); GeneratorLoadError otherwise."""
    from safetensors.torch import load_file

    path = Path(folder) / weights_file(part)
    if not path.is_file():
        raise GeneratorLoadError(f"generator checkpoint {folder} has no {path.name}")
    try:
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(path).items()}
    except Exception as exc:  # safetensors raises several types for truncated or foreign files
        raise GeneratorLoadError(f"cannot read generator weights {path}: {exc}") from exc
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[:2]
        raise GeneratorLoadError(f"{path} does not match {CONFIG_FILE}: {first}") from exc
    return module.eval()


def read_training(folder: Path) -> dict[str, Any]:
    path = Path(folder) / TRAINING_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
