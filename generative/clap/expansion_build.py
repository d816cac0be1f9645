"""`foley train query-expansion`: embed the corpus train captions and clips with a CLAP, choose
k and the two weights of the query expansion (`expansion.py`) on val by the library protocol,
and write the expansion into the CLAP's folder."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from generative.clap.expansion import CaptionSounds, QueryExpansion, distinct_captions, expand

log = logging.getLogger(__name__)

NEAREST = (10, 25, 50, 100, 200)
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
AUDIO_WEIGHTS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)
TUNING_SPLIT = "val"


def cell(k: int, weight: float, audio_weight: float = 0.0) -> str:
    """A grid cell's name in the tuning table."""
    name = f"k {k}, weight {weight:g}"
    return f"{name}, audio weight {audio_weight:g}" if audio_weight else name


def tune(
    bank: np.ndarray, phrases: np.ndarray, audio: np.ndarray, relevant: np.ndarray,
    nearest: Sequence[int] = NEAREST, weights: Sequence[float] = WEIGHTS,
    bank_audio: np.ndarray | None = None, audio_weights: Sequence[float] = (0.0,),
) -> tuple[tuple[int, float, float], dict[str, float]]:  # fmt: skip
    """The (k, weight, audio weight) with the best library P@10 ÷ random over label phrases
    (Q, D) against a library `audio` (N, D) with relevance (Q, N), and every cell's value.
    `bank_audio` (the captions' sounds) is needed for audio weights above 0. Both weights 0 is
    plain search; on a tie the smaller k and weights win."""
    from generative.clap.eval import library_ranking

    table: dict[str, float] = {}
    best: tuple[float, int, float, float] | None = None
    for k in nearest:
        for audio_weight in audio_weights if bank_audio is not None else (0.0,):
            for weight in weights:
                expanded = expand(phrases, bank, k, weight, bank_audio=bank_audio,
                                  audio_weight=audio_weight)  # fmt: skip
                value = library_ranking(expanded @ audio.T, relevant)["lib_P@10_x_random"]
                table[cell(k, weight, audio_weight)] = value
                if best is None or value > best[0] + 1e-9:
                    best = (value, k, weight, audio_weight)
    assert best is not None
    return (best[1], best[2], best[3]), table


def build_expansion(corpus_dir: Path, clap_checkpoint: Path, *, threads: int = 2) -> dict[str, Any]:
    """Embed the train captions and clips with the CLAP in `clap_checkpoint`, choose k and
    both weights on val, and write the expansion into that folder; returns what
    `expansion.json` records."""
    import torch

    from generative.clap.eval import library_queries, read_manifest, split_clips
    from generative.clap.features import corpus_features
    from generative.clap.load import load_clap

    torch.set_num_threads(threads)
    clap = load_clap(clap_checkpoint)
    clips = read_manifest(corpus_dir)
    features = corpus_features(corpus_dir, clap)
    train = [c for c in clips if c.split == "train"]
    captions = [caption for c in train for caption in c.captions]
    train_rows = features.split_captions("train")
    texts, bank = distinct_captions(captions, features.text[train_rows])
    log.info("%d train captions, %d distinct", len(captions), len(texts))
    sounds = caption_sounds(captions, features.caption_clip[train_rows], features.audio)
    val = split_clips(clips, TUNING_SPLIT)
    row = {clip_id: i for i, clip_id in enumerate(features.clip_ids.tolist())}
    audio = features.audio[[row[c.id] for c in val]]
    phrases, relevant = library_queries([set(c.labels) for c in val])  # (Q,), (Q, N)
    (k, weight, audio_weight), table = tune(
        bank, clap.embed_text(phrases), audio, relevant, bank_audio=sounds.caption_audio(),
        audio_weights=AUDIO_WEIGHTS,
    )  # fmt: skip
    chosen = cell(k, weight, audio_weight)
    log.info("query expansion on %s: chose %s (P@10 ÷ random %.2f, plain %.2f)", TUNING_SPLIT,
             chosen, table[chosen], table[cell(NEAREST[0], 0.0)])  # fmt: skip
    facts = {"tuned_on": TUNING_SPLIT, "val_queries": len(phrases), "val_clips": len(val),
             "val_lib_P@10_x_random": table}  # fmt: skip
    expansion = QueryExpansion(bank, k, weight, clap.model_id, sounds, audio_weight)
    expansion.save(Path(clap_checkpoint), facts)
    return {"k": k, "weight": weight, "audio_weight": audio_weight, "captions": len(texts),
            "clips": len(sounds.audio), **facts}  # fmt: skip


def caption_sounds(
    captions: Sequence[str], caption_clip: np.ndarray, audio: np.ndarray
) -> CaptionSounds:
    """The clips behind each distinct caption (in `distinct_captions` order): the audio of
    every clip that carries a caption (rows of `audio`, renumbered), and which ones carry each."""
    owners: dict[str, dict[int, None]] = {}  # each caption's clips, once each, in order
    for text, clip in zip(captions, caption_clip.tolist(), strict=True):
        owners.setdefault(text, {})[clip] = None
    used = sorted({clip for found in owners.values() for clip in found})
    renumber = {clip: i for i, clip in enumerate(used)}
    return CaptionSounds.from_owners(
        audio[used], [[renumber[c] for c in found] for found in owners.values()]
    )
