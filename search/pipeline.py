"""The query pipeline: embed the query, search the index, join the catalog.

A text query runs in one of three modes: `audio` (CLAP similarity, reranked by DiffATR),
`words` (full-text search over titles, tags and captions) or `hybrid`, the default, which
fuses the two ranked lists by reciprocal rank fusion (`search.fusion`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from core.audio import decode
from core.catalog import Embedding, Sound
from core.vector_index import SearchFilter
from core.words import words_search
from search.fusion import FUSION_DEPTH, reciprocal_rank_fusion
from search.rerank import rerank_results, text_reranker, top_n
from search.results import Ranked, SoundResult
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


@dataclass
class TextSearch:
    """A text search's results, and whether the library seems to lack what it asked for."""

    results: list[SoundResult]
    # The best CLAP cosine between the query and a library sound (filters applied), before
    # reranking: how well the best sound fits. None in mode words or in an empty library.
    best_score: float | None = None
    # best_score below the calibrated threshold; None when there is no score or no threshold.
    missing: bool | None = None


def find_text(
    foley: Foley,
    query: str,
    k: int,
    flt: SearchFilter | None = None,
    rerank: bool = True,
    mode: SearchMode | str = SearchMode.hybrid,
) -> TextSearch:
    """Sounds matching a description, best first, and how well the best one fits.

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
        return TextSearch(search_words(foley, query, k, flt))
    vector = foley.models.embed_text(query)  # micro-batched with concurrent queries
    if mode is SearchMode.audio:
        ranking = _rank(foley, vector, k, flt, rerank)
        results = _with_sounds(foley, ranking.by_audio[:k])
    else:
        # Both lists are ranked on ids and scores; only the k fused winners' rows are read.
        depth = max(k, FUSION_DEPTH)
        ranking = _rank(foley, vector, depth, flt, rerank, words_query=query)
        fused = reciprocal_rank_fusion(ranking.by_audio, ranking.by_words, limit=k)
        results = _with_sounds(foley, fused)
    threshold = foley.missing_threshold
    missing = None if threshold is None else threshold.missing(ranking.best)
    return TextSearch(results, ranking.best, missing)


def search_words(
    foley: Foley, query: str, k: int, flt: SearchFilter | None = None
) -> list[SoundResult]:
    """Sounds whose title, tags or caption hold the query's words, best first (no CLAP)."""
    with foley.catalog.session() as session:
        ranked = _rank_by_words(session, query, k, flt)
        return _results(session, ranked)


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
    """The sounds nearest to a CLAP vector, best first; DiffATR reranks them with `rerank`."""
    return _with_sounds(foley, _rank(foley, vector, k, flt, rerank).by_audio[:k])


@dataclass
class _Ranking:
    by_audio: list[Ranked]
    by_words: list[Ranked]
    best: float | None  # the best CLAP cosine among the hits the catalog has


def _rank(
    foley: Foley,
    vector: np.ndarray,
    k: int,
    flt: SearchFilter | None,
    rerank: bool,
    words_query: str | None = None,
) -> _Ranking:
    """The CLAP top N (reranked when asked), and with `words_query` the words list to depth k,
    both read in one catalog session. A hit the catalog no longer has (deleted, the syncer
    not caught up yet) is left out."""
    reranker = text_reranker(foley)[0] if rerank else None
    with foley.lock:
        hits = foley.index.search(vector, top_n(reranker, k), flt, with_payload=False)
    ids = [hit.id for hit in hits]
    vectors: dict[int, np.ndarray] = {}
    present: set[int] = set()
    by_words: list[Ranked] = []
    if ids or words_query is not None:
        with foley.catalog.session() as session:
            if ids and reranker is None:
                present = set(session.scalars(_PRESENT, {"ids": ids}))
            elif ids:
                vectors, present = _vectors_of_present(session, foley.clap.model_id, ids)
            if words_query is not None:
                by_words = _rank_by_words(session, words_query, k, flt)
    by_audio = [
        Ranked(hit.id, float(hit.score), clap_score=float(hit.score))
        for hit in hits
        if hit.id in present
    ]
    best = by_audio[0].score if by_audio else None
    if reranker is not None and by_audio:
        by_audio = rerank_results(foley, reranker, vector, by_audio, vectors)
    return _Ranking(by_audio[:k], by_words, best)


def _vectors_of_present(
    session: Session, model_id: str, ids: Sequence[int]
) -> tuple[dict[int, np.ndarray], set[int]]:
    """The catalog vectors of these sounds under `model_id`, and which of them the catalog
    still has (with a vector or without: one being re-embedded), in one query."""
    rows = session.execute(_VECTORS_OF_PRESENT, {"ids": list(ids), "model_id": model_id})
    vectors, present = {}, set()
    for sound_id, vector in rows:
        present.add(sound_id)
        if vector is not None:
            vectors[sound_id] = np.frombuffer(vector, dtype=np.float32)
    return vectors, present


def _rank_by_words(session: Session, query: str, k: int, flt: SearchFilter | None) -> list[Ranked]:
    return [
        Ranked(sound_id, score, words_score=score)
        for sound_id, score in words_search(session, query, k, flt)
    ]


# A search runs these for every request: built once, with the ids as one expanding parameter
# (building a statement per request cost more CPU than SQLite spent running it). Table columns,
# not ORM attributes: rows come back as plain tuples, with no identity map.
_SOUNDS = Sound.__table__
_EMBEDDINGS = Embedding.__table__
_PRESENT = select(_SOUNDS.c.id).where(_SOUNDS.c.id.in_(bindparam("ids", expanding=True)))
_VECTORS_OF_PRESENT = (
    select(_SOUNDS.c.id, _EMBEDDINGS.c.vector)
    .select_from(
        _SOUNDS.outerjoin(
            _EMBEDDINGS,
            (_EMBEDDINGS.c.sound_id == _SOUNDS.c.id)
            & (_EMBEDDINGS.c.model_id == bindparam("model_id")),
        )
    )
    .where(_SOUNDS.c.id.in_(bindparam("ids", expanding=True)))
)
# The columns a result shows (not the timestamps or per-segment captions).
_RESULT_ROWS = select(
    *(
        _SOUNDS.c[name]
        for name in ("id", "title", "duration", "tags", "source", "caption", "format")
    )
).where(_SOUNDS.c.id.in_(bindparam("ids", expanding=True)))


def _with_sounds(foley: Foley, ranked: Sequence[Ranked]) -> list[SoundResult]:
    if not ranked:
        return []
    with foley.catalog.session() as session:
        return _results(session, ranked)


def _results(session: Session, ranked: Sequence[Ranked]) -> list[SoundResult]:
    """The ranked sounds with their catalog rows, in order; one deleted meanwhile is left out."""
    if not ranked:
        return []
    rows = {row.id: row for row in session.execute(_RESULT_ROWS, {"ids": [r.id for r in ranked]})}
    return [
        SoundResult(
            id=r.id,
            score=r.score,
            title=row.title,
            duration=row.duration,
            tags=list(row.tags),
            source=row.source,
            caption=row.caption,
            format=row.format,
            audio_url=f"/api/sounds/{r.id}/audio",
            clap_score=r.clap_score,
            words_score=r.words_score,
            audio_rank=r.audio_rank,
            words_rank=r.words_rank,
        )
        for r in ranked
        if (row := rows.get(r.id)) is not None
    ]
