"""`foley train query-expansion`: embed the corpus train captions with a CLAP, choose k and
weight of the query expansion (`expansion.py`) on val by the library protocol, and write the
expansion into the CLAP's folder."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from generative.clap.expansion import QueryExpansion, distinct_captions, expand

log = logging.getLogger(__name__)

NEAREST = (10, 25, 50, 100, 200)
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
TUNING_SPLIT = "val"


def tune(
    bank: np.ndarray, phrases: np.ndarray, audio: np.ndarray, relevant: np.ndarray,
    nearest: Sequence[int] = NEAREST, weights: Sequence[float] = WEIGHTS,
) -> tuple[tuple[int, float], dict[str, float]]:  # fmt: skip
    """The (k, weight) with the best library P@10 ÷ random over label phrases (Q, D) against a
    library `audio` (N, D) with relevance (Q, N), and every cell's value. Weight 0 is plain
    search; on a tie the smaller k and weight win."""
    from generative.clap.eval import library_ranking

    table: dict[str, float] = {}
    best: tuple[float, int, float] | None = None
    for k in nearest:
        for weight in weights:
            expanded = expand(phrases, bank, k, weight)
            value = library_ranking(expanded @ audio.T, relevant)["lib_P@10_x_random"]
            table[f"k {k}, weight {weight:g}"] = value
            if best is None or value > best[0] + 1e-9:
                best = (value, k, weight)
    assert best is not None
    return (best[1], best[2]), table


def build_expansion(corpus_dir: Path, clap_checkpoint: Path, *, threads: int = 2) -> dict[str, Any]:
    """Embed the train captions with the CLAP in `clap_checkpoint`, choose k and weight on
    val, and write the expansion into that folder; returns what `expansion.json` records."""
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
    texts, bank = distinct_captions(captions, features.text[features.split_captions("train")])
    log.info("%d train captions, %d distinct", len(captions), len(texts))
    val = split_clips(clips, TUNING_SPLIT)
    row = {clip_id: i for i, clip_id in enumerate(features.clip_ids.tolist())}
    audio = features.audio[[row[c.id] for c in val]]
    phrases, relevant = library_queries([set(c.labels) for c in val])  # (Q,), (Q, N)
    (k, weight), table = tune(bank, clap.embed_text(phrases), audio, relevant)
    log.info("query expansion on %s: chose k %d, weight %g (P@10 ÷ random %.2f, plain %.2f)",
             TUNING_SPLIT, k, weight, table[f"k {k}, weight {weight:g}"],
             table[f"k {NEAREST[0]}, weight 0"])  # fmt: skip
    facts = {"tuned_on": TUNING_SPLIT, "val_queries": len(phrases), "val_clips": len(val),
             "val_lib_P@10_x_random": table}  # fmt: skip
    QueryExpansion(bank, k, weight, clap.model_id).save(Path(clap_checkpoint), facts)
    return {"k": k, "weight": weight, "captions": len(texts), **facts}
