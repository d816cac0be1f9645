"""The query pipeline: embed the query, search the index, join the catalog.

A text query runs in one of three modes: `audio` (CLAP similarity, reranked by DiffATR),
`words` (full-text search over titles, tags and captions) or `hybrid`, the default, which
fuses the two ranked lists by reciprocal rank fusion (`search.fusion`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audio import decode
from core.catalog import Embedding, Sound
from core.vector_index import SearchFilter
from core.words import words_search
from search.fusion import FUSION_DEPTH, reciprocal_rank_fusion
from search.rerank import rerank_results, text_reranker, top_n
from search.results import SoundResult
from search.service import Foley

MAX_K = 200


class SearchMode(enum.StrEnum):
    hybrid = "hybrid"  # CLAP (+ DiffATR) and words, fused by rank
    audio = "audio"  # CLAP (+ DiffATR) only
    words = "words"  # titles, tags and captions only: no CLAP


class QueryError(ValueError):
    """The query itself is unusable (empty text, bad k, unknown sound)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise QueryError(f"k must be between 1 and {MAX_K}, got {k}")


def search_text(
    foley: Foley,
    query: str,
    k: int,
    flt: SearchFilter | None = None,
    rerank: bool = True,
    mode: SearchMode | str = SearchMode.hybrid,
) -> list[SoundResult]:
    """Sounds matching a description, best first.

    `audio`: the CLAP top N, reranked by DiffATR with `rerank` (when a reranker fits the
    running CLAP), best k. `words`: full-text search alone. `hybrid`: both lists, fused.
    """
    query = query.strip()
    if not query:
        raise QueryError("the query text is empty: describe the sound you are looking for")
    _check_k(k)
    try:
        mode = SearchMode(mode)
    except ValueError:
        raise QueryError(f"mode must be one of hybrid, audio, words; got {mode!r}") from None
    if mode is SearchMode.words:
        return search_words(foley, query, k, flt)
    vector = foley.models.embed_text(query)  # micro-batched with concurrent queries
    if mode is SearchMode.audio:
        return search_vector(foley, vector, k, flt, rerank=rerank)
    depth = max(k, FUSION_DEPTH)
    by_audio = search_vector(foley, vector, depth, flt, rerank=rerank)
    by_words = search_words(foley, query, depth, flt)
    return reciprocal_rank_fusion(by_audio, by_words)[:k]


def search_words(
    foley: Foley, query: str, k: int, flt: SearchFilter | None = None
) -> list[SoundResult]:
    """Sounds whose title, tags or caption hold the query's words, best first (no CLAP)."""
    with foley.catalog.session() as session:
        ranked = words_search(session, query, k, flt)
        sounds = _sounds(session, [sound_id for sound_id, _ in ranked])
        return [
            _result(sounds[sound_id], score, words_score=score)
            for sound_id, score in ranked
            if sound_id in sounds
        ]


def search_audio(
    foley: Foley, data: bytes, name: str, k: int, flt: SearchFilter | None = None
) -> list[SoundResult]:
    """Sounds like an example clip; AudioError propagates for bad uploads."""
    _check_k(k)
    wave, _ = decode(data, target_sr=foley.clap.sample_rate, limits=foley.limits, name=name)
    vector = foley.clap.embed_audio([wave])[0]
    return search_vector(foley, vector, k, flt)


def search_like_sound(
    foley: Foley, sound_id: int, k: int, flt: SearchFilter | None = None
) -> list[SoundResult]:
    """Sounds like one already in the catalog, the sound itself left out."""
    _check_k(k)
    with foley.catalog.session() as session:
        row = session.scalar(
            select(Embedding).where(
                Embedding.sound_id == sound_id, Embedding.model_id == foley.clap.model_id
            )
        )
        if row is None:
            if session.get(Sound, sound_id) is None:
                raise QueryError(f"no sound with id {sound_id}", status=404)
            raise QueryError(f"sound {sound_id} has no embedding yet; index it first", status=409)
        vector = row.as_array()
    hits = search_vector(foley, vector, k + 1, flt)
    return [h for h in hits if h.id != sound_id][:k]


def search_vector(
    foley: Foley, vector: np.ndarray, k: int, flt: SearchFilter | None = None, rerank: bool = False
) -> list[SoundResult]:
    reranker = text_reranker(foley)[0] if rerank else None
    with foley.lock:
        hits = foley.index.search(vector, top_n(reranker, k), flt)
    if not hits:
        return []
    with foley.catalog.session() as session:
        sounds = _sounds(session, [h.id for h in hits])
        # A hit deleted in the catalog (the syncer has not caught up yet) is left out.
        results = [
            _result(sounds[hit.id], float(hit.score), clap_score=float(hit.score))
            for hit in hits
            if hit.id in sounds
        ]
    if reranker is not None:
        results = rerank_results(foley, reranker, vector, results)
    return results[:k]


def _sounds(session: Session, ids: Sequence[int]) -> dict[int, Sound]:
    if not ids:
        return {}
    return {s.id: s for s in session.scalars(select(Sound).where(Sound.id.in_(list(ids))))}


def _result(
    sound: Sound,
    score: float,
    *,
    clap_score: float | None = None,
    words_score: float | None = None,
) -> SoundResult:
    return SoundResult(
        id=sound.id,
        score=score,
        title=sound.title,
        duration=sound.duration,
        tags=list(sound.tags),
        source=sound.source,
        caption=sound.caption,
        format=sound.format,
        audio_url=f"/api/sounds/{sound.id}/audio",
        clap_score=clap_score,
        words_score=words_score,
    )
