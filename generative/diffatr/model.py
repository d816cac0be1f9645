"""DiffATR: a generative reranker that denoises the distribution of relevance over K candidates.

A text query and the K sounds a first-stage CLAP search returned go in as frozen CLAP features.
The data the diffusion works on is the relevance distribution over the K candidates, scaled to
[-1, 1] (the positive +1, every other candidate -1). The denoiser sees the noisy distribution
`x_t`, the noise level, the query and the candidates: candidates and query first attend to each
other (once per query: this listwise context does not depend on the noise); then, at each step,
the query token with the noise level added attends over the candidates with `x_t` added to its
attention logits, and a per-candidate head predicts the clean distribution (as logits).
Sampling runs diffusers' DDIM from pure noise in a few steps; the final score of a candidate is
its CLAP similarity plus `alpha` times its generated probability.

Build on CPU in float32, move with `.to(device)`. The sampler is separate from the model.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"


@dataclass
class DiffATRConfig:
    feature_dim: int = 256  # width of the CLAP embeddings it reranks
    width: int = 128
    heads: int = 4
    layers: int = 1  # self-attention layers over [query; candidates]: the listwise context
    dropout: float = 0.1
    product_input: bool = False  # candidates carry query * audio, not only similarities
    sim_scale: float = 10.0  # CLAP cosines are close together; scaled before they are inputs
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    # Inference: DDIM steps, and final score = CLAP similarity + alpha * generated probability.
    sample_steps: int = 5
    alpha: float = 0.1
    seed: int = 0  # the sampler's noise, so the same query always ranks the same way
    top_n: int = 64  # candidates reranked per query
    clap_model_id: str | None = None  # the CLAP whose features it was trained on

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiffATRConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


class Encoded(NamedTuple):
    """A query and its candidates, encoded once for all denoising steps."""

    query: torch.Tensor  # (B, W) query token after the listwise context
    keys: torch.Tensor  # (B, K, W) candidates projected as attention keys
    values: torch.Tensor  # (B, K, W) ... as attention values
    head: torch.Tensor  # (B, K, 2W) the candidate's part of the head's first layer
    prior: torch.Tensor  # (B, K) the adapted cosine, scaled: the logits' starting point


class DiffATRDenoiser(nn.Module):
    """(x_t, t, query, candidates) -> logits of the clean relevance distribution over K.

    Two parts: `encode` turns the query and its candidates into tokens once per query (the
    listwise context does not depend on the noise); `denoise` runs at every DDIM step, with the
    noise level embedded into the query token and the noisy distribution added to its attention
    logits over the candidates, then a per-candidate head."""

    def __init__(self, config: DiffATRConfig) -> None:
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        super().__init__()
        self.config = config
        dim, width = config.feature_dim, config.width
        self.time_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(width, width)
        self.query_in = nn.Linear(dim, width)
        # Small trainable projections of the query and of the audio (residuals, zero at start):
        # the cosine of the adapted pair is one more input. Training gives them a contrastive
        # loss over the whole train split, which sharpens what the frozen CLAP tells apart.
        self.query_adapter = nn.Linear(dim, dim)
        self.audio_adapter = nn.Linear(dim, dim)
        for adapter in (self.query_adapter, self.audio_adapter):
            nn.init.zeros_(adapter.weight)
            nn.init.zeros_(adapter.bias)
        # A candidate is four similarity features: the CLAP cosine (scaled) and the adapted
        # cosine, each also as a z-score within the list (and, with `product_input`, its
        # elementwise product with the query, which lets the denoiser memorise train clips).
        inputs = dim + 4 if config.product_input else 4
        self.candidate_in = nn.Sequential(
            nn.Linear(inputs, width), nn.GELU(), nn.Linear(width, width)
        )
        layer = nn.TransformerEncoderLayer(
            width, config.heads, 2 * width, config.dropout, batch_first=True, norm_first=True
        )
        self.context = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.q_proj = nn.Linear(width, width, bias=False)
        self.k_proj = nn.Linear(width, width, bias=False)
        self.v_proj = nn.Linear(width, width, bias=False)
        self.out_proj = nn.Linear(width, width)
        self.noise_gain = nn.Parameter(torch.ones(()))
        self.prior_gain = nn.Parameter(torch.ones(()))
        # The head's first layer split by input: candidate token (computed once), the attention
        # summary and the noise level (per step). Together one MLP over [summary; cand; t].
        self.head_candidate = nn.Linear(width, 2 * width)
        self.head_summary = nn.Linear(width, 2 * width, bias=False)
        self.head_time = nn.Linear(width, 2 * width, bias=False)
        self.head_out = nn.Sequential(nn.GELU(), nn.Linear(2 * width, 1))

    def adapt_query(self, query: torch.Tensor) -> torch.Tensor:
        """(..., D) unit CLAP text vectors -> adapted unit vectors (..., D)."""
        adapted = query + self.query_adapter(query)
        return adapted / adapted.norm(dim=-1, keepdim=True).clamp_min(1e-6)

    def adapt_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """(..., D) unit CLAP audio vectors -> adapted unit vectors (..., D)."""
        adapted = audio + self.audio_adapter(audio)
        return adapted / adapted.norm(dim=-1, keepdim=True).clamp_min(1e-6)

    def adapted_similarity(self, query: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """query (B, D), audio (B, K, D) -> cosine of the adapted query with each candidate."""
        return torch.einsum("bd,bkd->bk", self.adapt_query(query), self.adapt_audio(audio))

    def encode(self, query: torch.Tensor, audio: torch.Tensor) -> Encoded:
        """query (B, D), audio (B, K, D) -> what every denoising step of this list reuses."""
        sim = torch.einsum("bd,bkd->bk", query, audio)  # (B, D) . (B, K, D) -> (B, K)
        # The adapters learn from their own contrastive loss only (see training).
        adapted = self.adapted_similarity(query, audio).detach()  # (B, K)
        scale = self.config.sim_scale
        sims = torch.stack(
            [sim * scale, _zscore(sim), adapted * scale, _zscore(adapted)], dim=-1
        )  # (B, K, 4)
        # Raw audio features would let the denoiser memorise the train clips; what goes in is
        # relational: the query-candidate product and the similarities.
        parts = [audio * query[:, None, :], sims] if self.config.product_input else [sims]
        pair = torch.cat(parts, dim=-1)  # (B, K, D + 4) or (B, K, 4)
        tokens = torch.cat([self.query_in(query)[:, None, :], self.candidate_in(pair)], dim=1)
        tokens = self.context(tokens)  # (B, 1 + K, W)
        q_tok, cand = tokens[:, 0], tokens[:, 1:]  # (B, W), (B, K, W)
        return Encoded(
            q_tok, self.k_proj(cand), self.v_proj(cand), self.head_candidate(cand), adapted * scale
        )

    def time_condition(self, timesteps: torch.Tensor) -> torch.Tensor:
        """Noise-level embeddings: timesteps (T,) -> (T, W)."""
        return self.time_embed(self.time_proj(timesteps.reshape(-1)).to(self.q_proj.weight.dtype))

    def denoise(
        self,
        encoded: Encoded,
        noisy: torch.Tensor,
        timestep: torch.Tensor,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One step: noisy (B, K), timestep (B,) or () -> logits (B, K). `cond`, the timestep's
        embedding (B, W) or (W,), may be given when already computed."""
        if cond is None:
            timestep = timestep.reshape(-1).expand(noisy.shape[0])  # () or (B,) -> (B,)
            cond = self.time_condition(timestep)  # (B, W)
        query = self.q_proj(encoded.query + cond)  # (B, W)
        attn = torch.einsum("bw,bkw->bk", query, encoded.keys)  # (B, K)
        attn = attn / math.sqrt(encoded.keys.shape[-1])
        attn = attn + self.noise_gain * noisy  # the noisy distribution steers the attention
        weights = attn.softmax(dim=-1)  # (B, K)
        summary = self.out_proj(torch.einsum("bk,bkw->bw", weights, encoded.values))  # (B, W)
        hidden = self.head_summary(summary) + self.head_time(cond)  # (B, 2W)
        hidden = encoded.head + hidden[:, None, :]  # (B, K, 2W)
        # Logits = the adapted cosine + what the listwise context and the noisy distribution
        # add to it (at the start of training, the adapted cosine's own ranking).
        return self.prior_gain * encoded.prior + self.head_out(hidden).squeeze(-1) + attn

    def forward(
        self, noisy: torch.Tensor, timestep: torch.Tensor, query: torch.Tensor, audio: torch.Tensor
    ) -> torch.Tensor:
        """noisy (B, K), timestep (B,) or (), query (B, D), audio (B, K, D) -> logits (B, K)."""
        return self.denoise(self.encode(query, audio), noisy, timestep)


def _zscore(scores: torch.Tensor) -> torch.Tensor:
    """(B, K) -> each row standardised within the list."""
    spread = scores.std(dim=1, keepdim=True, unbiased=False) + 1e-4
    return (scores - scores.mean(dim=1, keepdim=True)) / spread


def relevance_to_sample(probs: torch.Tensor) -> torch.Tensor:
    """A distribution over K (B, K) -> the diffusion's data space [-1, 1]."""
    return probs * 2.0 - 1.0


def build_denoiser(config: DiffATRConfig, seed: int = 0) -> DiffATRDenoiser:
    """A denoiser with seeded random weights, on CPU, in float32."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DiffATRDenoiser(config).float()


def save_diffatr(
    model: DiffATRDenoiser, config: DiffATRConfig, out_dir: Path, card: str | None = None
) -> Path:
    """Write fp16 `model.safetensors`, `config.json` and (with `card`) `README.md`, each under a
    temporary name renamed into place."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().half().contiguous() for k, v in model.state_dict().items()}
    writes: list[tuple[str, Any]] = [
        (WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"format": "pt"})),
        (CONFIG_FILE, lambda p: p.write_text(json.dumps(asdict(config), indent=2) + "\n")),
    ]
    if card is not None:
        writes.append((CARD_FILE, lambda p: p.write_text(card)))
    for name, write in writes:
        tmp = out_dir / f".{name}.tmp"
        write(tmp)
        os.replace(tmp, out_dir / name)
    return out_dir
