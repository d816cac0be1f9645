"""Reciprocal rank fusion: one ranked list from the CLAP list and the words list.

A sound's fused score is the sum, over the lists it appears in, of 1 / (K + rank), rank
counted from 1 (Cormack, Clarke and Büttcher, SIGIR 2009). Ranks, not scores, are fused:
a cosine similarity (after DiffATR, plus a generated probability) and a BM25 or ts_rank value
live on unrelated scales, and rank fusion needs no calibration between them.

K = 60, the paper's value. A large K flattens the head of each list, so agreement between
the lists counts for more than the position within one: with K = 60 a sound ranked 20th by
both lists (2/80 = 0.025) outranks one ranked first by only one list (1/61 = 0.016); with
K = 5 the lone first would win (1/6 = 0.167 against 2/25 = 0.080). Neither list is reliable
enough alone for its first place to be trusted over the other's judgement: CLAP misses the
names people use, and bag-of-words matching misses everything that was never written down.

Each list is cut at FUSION_DEPTH (64, DiffATR's candidate count) or k if larger; a sound
missing from one list contributes from the other alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TypeVar

from search.results import Ranked, SoundResult

RRF_K = 60
FUSION_DEPTH = 64

# Fusion needs ids and first-stage scores only: the pipeline fuses `Ranked` entries and reads
# the catalog rows of the k it returns; `SoundResult` lists fuse the same way.
R = TypeVar("R", Ranked, SoundResult)


def rrf_scores(*rankings: Sequence[int], k: int = RRF_K) -> dict[int, float]:
    """Each id's fused score over the ranked id lists (best first)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return scores


def reciprocal_rank_fusion(
    by_audio: Sequence[R], by_words: Sequence[R], k: int = RRF_K, limit: int | None = None
) -> list[R]:
    """The two lists fused, best first; ties go to the better CLAP rank, then the lower id.

    Each result keeps its `clap_score` and `words_score` and gains its rank in each list;
    `score` becomes the fused score. `limit`: only the best this many are built.
    """
    audio_rank = {r.id: rank for rank, r in enumerate(by_audio, 1)}
    words_rank = {r.id: rank for rank, r in enumerate(by_words, 1)}
    scores = rrf_scores([r.id for r in by_audio], [r.id for r in by_words], k=k)
    unranked = len(by_audio) + 1
    order = sorted(scores, key=lambda i: (-scores[i], audio_rank.get(i, unranked), i))
    merged: dict[int, R] = {r.id: r for r in by_words}
    words_scores = {r.id: r.words_score for r in by_words}
    merged.update((r.id, r) for r in by_audio)
    return [
        replace(
            merged[sound_id],
            score=scores[sound_id],
            words_score=words_scores.get(sound_id),
            audio_rank=audio_rank.get(sound_id),
            words_rank=words_rank.get(sound_id),
        )
        for sound_id in order[:limit]
    ]
