"""AutoCap: frozen CLAP audio frames -> Q-Former -> BART, with metadata text in the encoder.

1. A segment's CLAP frames (B, T, C) are layer-normalised and read by a Q-Former
   (`transformers.Blip2QFormerModel`): Q learned queries cross-attend to the frames and come
   out as Q audio tokens. The segment's pooled CLAP embedding (B, D) is one more token.
2. The tokens are projected to BART's width and put before the metadata text's token
   embeddings (`<title> ... <folder> ...`, tokens of the captioner's own tokenizer), followed
   by the captions of the most similar training clips (`<similar> ...`, `bank.py`): BART's
   encoder reads [audio tokens; text tokens] as `inputs_embeds`, so the words attend to the
   audio and the other way round.
3. BART's decoder (`BartForConditionalGeneration`, a small config) writes the caption.

Build on CPU in float32, move with `.to(device)`. The CLAP is not part of this module.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"


@dataclass
class CaptionerConfig:
    vocab_size: int = 6000
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    frame_dim: int = 512  # CLAP frame channels (PANN-6: 512)
    clap_dim: int = 256  # CLAP joint embedding size
    # Sized for training within minutes on 2 CPU cores (a step of batch 64 at d_model 256 with
    # 3 decoder layers and 6k tokens took 4.7 s on a shared machine).
    queries: int = 8
    qformer_width: int = 192
    qformer_layers: int = 2
    qformer_heads: int = 4
    d_model: int = 192
    encoder_layers: int = 2
    decoder_layers: int = 2
    heads: int = 4
    ffn: int = 768
    dropout: float = 0.1
    max_frames: int = 64  # frames read per segment (10 s of 3 s windows is 24)
    max_meta_tokens: int = 32
    # Captions of the k most similar training clips read by the encoder (`bank.py`); 0: none.
    neighbours: int = 0
    max_neighbour_tokens: int = 64
    # Consensus reranking (`consensus.py`): the captions of this many nearest training clips
    # join the beams as candidates (0: off), scored by likelihood + weight x agreement.
    consensus_k: int = 0
    consensus_weight: float = 0.0  # when the sound has metadata (a title or a folder)
    consensus_weight_bare: float = 0.0  # when it has none: the neighbours count for more
    # How the near clips weigh in the agreement: softmax of their CLAP audio similarity to the
    # sound over this temperature, so the closest count most; 0: all the same.
    consensus_temperature: float = 0.0  # with metadata
    consensus_temperature_bare: float = 0.0  # without
    max_caption_tokens: int = 40
    num_beams: int = 2
    clap_model_id: str | None = None  # the CLAP whose frames it was trained on

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaptionerConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def tiny_captioner_config(vocab_size: int = 64, frame_dim: int = 512, clap_dim: int = 32):
    """A few-thousand-parameter config for tests (hidden size 8)."""
    return CaptionerConfig(
        vocab_size=vocab_size, frame_dim=frame_dim, clap_dim=clap_dim, queries=4,
        qformer_width=8, qformer_layers=1, qformer_heads=2, d_model=8, encoder_layers=1,
        decoder_layers=1, heads=2, ffn=16, dropout=0.0, max_meta_tokens=16,
        max_caption_tokens=12, num_beams=2,
    )  # fmt: skip


def encoder_positions(config: CaptionerConfig) -> int:
    """Positions BART needs: audio tokens, metadata and similar captions (and the decoder's
    caption, which is shorter)."""
    text = config.max_meta_tokens + (config.max_neighbour_tokens if config.neighbours else 0)
    return config.queries + 1 + text + 8


class AutoCap(nn.Module):
    """(frames, frame mask, CLAP embedding, metadata ids) -> BART caption logits / captions."""

    def __init__(self, config: CaptionerConfig) -> None:
        from transformers import (
            BartConfig,
            BartForConditionalGeneration,
            Blip2QFormerConfig,
            Blip2QFormerModel,
        )

        super().__init__()
        self.config = config
        width = config.qformer_width
        self.frame_norm = nn.LayerNorm(config.frame_dim)
        self.queries = nn.Parameter(torch.randn(1, config.queries, width) * 0.02)
        self.qformer = Blip2QFormerModel(
            Blip2QFormerConfig(
                hidden_size=width,
                num_hidden_layers=config.qformer_layers,
                num_attention_heads=config.qformer_heads,
                intermediate_size=4 * width,
                encoder_hidden_size=config.frame_dim,
                cross_attention_frequency=1,
                hidden_dropout_prob=config.dropout,
                attention_probs_dropout_prob=config.dropout,
                max_position_embeddings=config.queries,
            )
        )
        self.audio_proj = nn.Linear(width, config.d_model)
        self.clap_proj = nn.Linear(config.clap_dim, config.d_model)
        self.bart = BartForConditionalGeneration(
            BartConfig(
                vocab_size=config.vocab_size,
                d_model=config.d_model,
                encoder_layers=config.encoder_layers,
                decoder_layers=config.decoder_layers,
                encoder_attention_heads=config.heads,
                decoder_attention_heads=config.heads,
                encoder_ffn_dim=config.ffn,
                decoder_ffn_dim=config.ffn,
                dropout=config.dropout,
                attention_dropout=config.dropout,
                max_position_embeddings=encoder_positions(config),
                pad_token_id=config.pad_id,
                bos_token_id=config.bos_id,
                eos_token_id=config.eos_id,
                decoder_start_token_id=config.bos_id,
                forced_eos_token_id=config.eos_id,
                scale_embedding=True,
                tie_word_embeddings=True,
            )
        )

    def encoder_inputs(
        self,
        frames: torch.Tensor,
        frame_mask: torch.Tensor,
        clap: torch.Tensor,
        meta_ids: torch.Tensor,
        meta_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (B, T, C), frame_mask (B, T), clap (B, D), meta_ids/meta_mask (B, M) ->
        BART encoder inputs_embeds (B, Q + 1 + M, d_model) and their attention mask."""
        b = frames.shape[0]
        audio = self.qformer(
            query_embeds=self.queries.expand(b, -1, -1),  # (B, Q, W)
            encoder_hidden_states=self.frame_norm(frames),  # (B, T, C)
            encoder_attention_mask=frame_mask.long(),
        ).last_hidden_state  # (B, Q, W)
        audio = torch.cat(
            [self.audio_proj(audio), self.clap_proj(clap)[:, None, :]], dim=1
        )  # (B, Q + 1, d_model)
        meta = self.bart.get_input_embeddings()(meta_ids)  # (B, M, d_model), scaled by BART
        embeds = torch.cat([audio, meta], dim=1)  # (B, Q + 1 + M, d_model)
        ones = torch.ones(audio.shape[:2], dtype=torch.long, device=audio.device)
        return embeds, torch.cat([ones, meta_mask.long()], dim=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Teacher-forced cross-entropy of `batch["labels"]` (B, L), padding as -100."""
        embeds, mask = self.encoder_inputs(
            batch["frames"], batch["frame_mask"], batch["clap"], batch["meta_ids"],
            batch["meta_mask"],
        )  # fmt: skip
        # labels are "<s> caption </s>"; BART shifts them right behind decoder_start (<s>).
        labels = batch["labels"][:, 1:].contiguous()
        return self.bart(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss

    @torch.no_grad()
    def logprob(
        self, batch: dict[str, torch.Tensor], labels: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        """(R,) mean log-probability per token of each row of `labels` (R, L) (<s> ... </s>,
        padding -100) given batch item `rows[r]`, teacher-forced; the encoder runs once per
        item, however many rows it has."""
        from transformers.models.bart.modeling_bart import shift_tokens_right

        embeds, mask = self.encoder_inputs(
            batch["frames"], batch["frame_mask"], batch["clap"], batch["meta_ids"],
            batch["meta_mask"],
        )  # fmt: skip
        hidden = self.bart.get_encoder()(inputs_embeds=embeds, attention_mask=mask)
        labels = labels[:, 1:].contiguous()  # (R, L - 1)
        # The decoder reads the labels shifted right behind <s>, as BART does given labels
        # (but no loss is computed, and logits only at the real tokens, not the padding).
        inputs = shift_tokens_right(labels, self.config.pad_id, self.config.bos_id)
        decoded = self.bart.get_decoder()(
            input_ids=inputs,
            encoder_hidden_states=hidden.last_hidden_state[rows],  # (R, S, d)
            encoder_attention_mask=mask[rows],
        ).last_hidden_state  # (R, L - 1, d)
        real = labels != -100
        logits = self.bart.lm_head(decoded[real]) + self.bart.final_logits_bias  # (n, V)
        picked = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels[real][:, None])[:, 0]
        owner = torch.arange(len(labels), device=labels.device)[:, None].expand_as(labels)[real]
        total = torch.zeros(len(labels), device=picked.device).index_add_(0, owner, picked)
        return total / real.sum(dim=1).clamp(min=1)

    @torch.no_grad()
    def generate(
        self, batch: dict[str, torch.Tensor], num_beams: int | None = None, every_beam: bool = False
    ) -> torch.Tensor:
        """Beam search (deterministic) -> token ids (B, L), or with `every_beam` each item's
        final beams, best first (B x beams, L)."""
        embeds, mask = self.encoder_inputs(
            batch["frames"], batch["frame_mask"], batch["clap"], batch["meta_ids"],
            batch["meta_mask"],
        )  # fmt: skip
        beams = num_beams or self.config.num_beams
        return self.bart.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            num_beams=beams,
            do_sample=False,
            max_length=self.config.max_caption_tokens,
            no_repeat_ngram_size=3,
            num_return_sequences=beams if every_beam else 1,
            early_stopping=True if beams > 1 else None,
            decoder_start_token_id=self.config.bos_id,
            bos_token_id=self.config.bos_id,
            eos_token_id=self.config.eos_id,
            pad_token_id=self.config.pad_id,
        )


def collate(
    frames: list[Any], clap: Any, meta_ids: list[list[int]], labels: list[list[int]] | None,
    config: CaptionerConfig,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Pad per-item arrays into a batch: frames (B, T, C) + mask, clap (B, D), metadata ids
    (B, M) + mask (at least one column), labels (B, L) with -100 as padding."""
    import numpy as np

    b = len(frames)
    t = min(config.max_frames, max(len(f) for f in frames))
    out_frames = torch.zeros((b, t, config.frame_dim))
    frame_mask = torch.zeros((b, t), dtype=torch.long)
    for i, f in enumerate(frames):
        f = torch.as_tensor(np.asarray(f[:t], dtype=np.float32))
        out_frames[i, : len(f)] = f
        frame_mask[i, : len(f)] = 1
    m = max(1, max(len(ids) for ids in meta_ids))
    meta = torch.full((b, m), config.pad_id, dtype=torch.long)
    meta_mask = torch.zeros((b, m), dtype=torch.long)
    for i, ids in enumerate(meta_ids):
        meta[i, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        meta_mask[i, : len(ids)] = 1
    batch = {
        "frames": out_frames,
        "frame_mask": frame_mask,
        "clap": torch.as_tensor(np.asarray(clap, dtype=np.float32)),
        "meta_ids": meta,
        "meta_mask": meta_mask,
    }
    if labels is not None:
        length = max(len(ids) for ids in labels)
        lab = torch.full((b, length), -100, dtype=torch.long)
        for i, ids in enumerate(labels):
            lab[i, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        batch["labels"] = lab
    return batch


def build_autocap(config: CaptionerConfig, seed: int = 0) -> AutoCap:
    """An AutoCap with seeded random weights, on CPU, in float32."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoCap(config).float()


def save_autocap(model: AutoCap, out_dir: Path, extra_files: dict[str, str] | None = None) -> Path:
    """Write fp16 `model.safetensors`, `config.json` and any `extra_files` (name -> text), each
    under a temporary name renamed into place."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    # Tied embeddings appear twice in the state dict; safetensors stores each tensor once.
    seen: set[int] = set()
    tensors = {}
    for name, tensor in state.items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        tensors[name] = (tensor.half() if tensor.is_floating_point() else tensor).detach().cpu()
        tensors[name] = tensors[name].contiguous()
    writes: list[tuple[str, Any]] = [
        (WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"format": "pt"})),
        (CONFIG_FILE, lambda p: p.write_text(json.dumps(asdict(model.config), indent=2) + "\n")),
    ]
    for name, text in (extra_files or {}).items():
        writes.append((name, lambda p, text=text: p.write_text(text)))
    for name, write in writes:
        tmp = out_dir / f".{name}.tmp"
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_dir / name)
    return out_dir


def load_autocap(folder: Path) -> AutoCap:
    """The model in `folder` (config.json + model.safetensors), in float32, eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = CaptionerConfig.from_dict(json.loads((folder / CONFIG_FILE).read_text()))
    model = build_autocap(config)
    state = {k: v.float() if v.is_floating_point() else v
             for k, v in load_file(str(folder / WEIGHTS_FILE)).items()}  # fmt: skip
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"bart.lm_head.weight", "bart.model.encoder.embed_tokens.weight",
            "bart.model.decoder.embed_tokens.weight", "bart.model.shared.weight"}  # fmt: skip
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ValueError(f"weights do not match the config: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")  # fmt: skip
    model.bart.tie_weights()
    return model.eval()
