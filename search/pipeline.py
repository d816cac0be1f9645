"""The query pipeline: embed the query, search the index, join the catalog.

A text query runs in one of three modes: `audio` (CLAP similarity, reranked by DiffATR),
`words` (full-text search over titles, tags and captions) or `hybrid`, the default, which
fuses the two ranked lists by reciprocal rank fusion (`search.fusion`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from sqlalchemy import Row, bindparam, select
from sqlalchemy.orm import Session

from core.audio import decode
from core.catalog import Embedding, Sound
from core.vector_index import Query, SearchFilter
from core.words import words_search
from search.batching import BatchedSearches
from search.fusion import FUSION_DEPTH, reciprocal_rank_fusion
from search.rerank import rerank_lists, text_reranker, top_n
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


@dataclass(frozen=True)
class TextRequest:
    """One text search as asked; `text_request` builds a checked one."""

    query: str
    k: int = 10
    flt: SearchFilter | None = None
    rerank: bool = True
    mode: SearchMode = SearchMode.hybrid


def text_request(
    query: str,
    k: int,
    flt: SearchFilter | None = None,
    rerank: bool = True,
    mode: SearchMode | str = SearchMode.hybrid,
) -> TextRequest:
    """A text search's parameters, checked: QueryError says what is wrong."""
    query = query.strip()
    if not query:
        raise QueryError("the query text is empty: describe the sound you are looking for")
    _check_k(k)
    try:
        mode = SearchMode(mode)
    except ValueError:
        raise QueryError(f"mode must be one of hybrid, audio, words; got {mode!r}") from None
    return TextRequest(query, k, flt, rerank, mode)


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
    return run_text_search(foley, text_request(query, k, flt, rerank, mode))


def run_text_search(foley: Foley, request: TextRequest) -> TextSearch:
    """A checked search: in a batch with concurrent ones once `start_query_batching` ran (the
    API), else at once in this thread."""
    if foley.searches is not None:
        return cast(TextSearch, foley.searches.search(request))
    return find_texts(foley, [request])[0]


def start_query_batching(foley: Foley) -> None:
    """Micro-batch concurrent text searches (the API), unless the settings turn it off."""
    from generative.registry import torch_threads

    settings = foley.settings
    if not settings.search_batching or foley.searches is not None:
        return
    foley.searches = BatchedSearches(
        lambda requests: find_texts(foley, requests),
        max_batch=settings.search_batch_size,
        max_wait_s=settings.search_batch_wait_ms / 1000,
        # The search workers share the cores with the event loop (HTTP and JSON): half of them
        # each by default. On 2 cores a second torch thread cost 20 % more CPU per batch,
        # spinning and waiting for a core that other work was using.
        torch_threads=torch_threads(settings, processes=2),
        workers=settings.search_workers,
    )


def warm_up(foley: Foley) -> None:
    """One search before the first caller's, so that no caller waits for the models'
    first-pass set-up (the text encoder's graph is traced then: about a second)."""
    find_text(foley, "warm up", 1)


def find_texts(foley: Foley, requests: Sequence[TextRequest]) -> list[TextSearch]:
    """Checked text searches run together, each with the results it gets alone: one CLAP text
    pass, the index searches under one hold of its lock, one catalog session, one DiffATR pass
    per candidate-list length."""
    with_clap = [r.query for r in requests if r.mode is not SearchMode.words]
    # No filler rows: a batch holds a few texts, and a full one would cost several times
    # their own pass (same vectors to about 1e-7).
    plain = (
        foley.clap.embed_text(with_clap, fill=False)
        if with_clap
        else np.zeros((0, foley.clap.dim), dtype=np.float32)
    )
    # The index is searched with the expanded query (`generative.clap.expansion`); DiffATR,
    # trained on plain caption vectors, reads the plain one (it reranked best so).
    texts: Iterator[tuple[np.ndarray, np.ndarray]] = zip(
        foley.clap.expand(plain), plain, strict=True
    )
    wanted = []
    for r in requests:
        vector, query = (None, None) if r.mode is SearchMode.words else next(texts)
        # Hybrid ranks both lists deeper than k, for fusion to choose from.
        depth = max(r.k, FUSION_DEPTH) if r.mode is SearchMode.hybrid else r.k
        words = None if r.mode is SearchMode.audio else r.query
        wanted.append(_Wanted(vector, depth, r.flt, r.rerank, words, query))
    with foley.catalog.session() as session:
        rankings = _rank_many(foley, session, wanted)
        lists = [_final(r, ranking) for r, ranking in zip(requests, rankings, strict=True)]
        found = _results_many(session, lists)
    threshold = foley.missing_threshold
    return [
        TextSearch(results, r.best, None if threshold is None else threshold.missing(r.best))
        for results, r in zip(found, rankings, strict=True)
    ]


def _final(request: TextRequest, ranking: _Ranking) -> list[Ranked]:
    """A request's k results from its ranking: the CLAP list, the words list, or both fused."""
    if request.mode is SearchMode.audio:
        return ranking.by_audio[: request.k]
    if request.mode is SearchMode.words:
        return ranking.by_words[: request.k]
    return reciprocal_rank_fusion(ranking.by_audio, ranking.by_words, limit=request.k)


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
    with foley.catalog.session() as session:
        ranking = _rank_many(foley, session, [_Wanted(vector, k, flt, rerank, None, vector)])[0]
        return _results(session, ranking.by_audio[:k])


@dataclass
class _Wanted:
    """What one search ranks: the CLAP list (with a vector) and the words list (with words),
    each to `depth`."""

    vector: np.ndarray | None
    depth: int
    flt: SearchFilter | None
    rerank: bool
    words: str | None
    # What DiffATR reads as the query: the plain text vector of an expanded query, else
    # `vector` itself.
    rerank_query: np.ndarray | None


@dataclass
class _Ranking:
    by_audio: list[Ranked]
    by_words: list[Ranked]
    best: float | None  # the best CLAP cosine among the hits the catalog has


def _rank_many(foley: Foley, session: Session, wanted: Sequence[_Wanted]) -> list[_Ranking]:
    """Each search's CLAP top N (reranked when asked) and words list: the index searched under
    one hold of its lock, the candidates' catalog rows (and vectors, to rerank) read in one
    query. A hit the catalog no longer has (deleted, the syncer not caught up yet) is left out."""
    clap = [w for w in wanted if w.vector is not None]
    reranker = text_reranker(foley)[0] if any(w.rerank for w in clap) else None
    queries = [
        Query(w.vector, top_n(reranker if w.rerank else None, w.depth), w.flt)
        for w in wanted
        if w.vector is not None
    ]
    with foley.lock:
        answers = iter(foley.index.search_many(queries))
    hits = [next(answers) if w.vector is not None else [] for w in wanted]
    reranked = [reranker is not None and w.rerank for w in wanted]
    to_rerank = {hit.id for found, r in zip(hits, reranked, strict=True) if r for hit in found}
    plain = {hit.id for found in hits for hit in found} - to_rerank
    vectors: dict[int, np.ndarray] = {}
    present: set[int] = set()
    if to_rerank:
        vectors, present = _vectors_of_present(session, foley.clap.model_id, sorted(to_rerank))
    if plain:
        present.update(session.scalars(_PRESENT, {"ids": sorted(plain)}))
    by_words = [
        _rank_by_words(session, w.words, w.depth, w.flt) if w.words is not None else []
        for w in wanted
    ]
    by_audio = [
        [Ranked(h.id, float(h.score), clap_score=float(h.score)) for h in found if h.id in present]
        for found in hits
    ]
    best = [ranked[0].score if ranked else None for ranked in by_audio]
    lists = [i for i, ranked in enumerate(by_audio) if reranked[i] and ranked]
    if lists:
        assert reranker is not None
        pairs = [(cast(np.ndarray, wanted[i].rerank_query), by_audio[i]) for i in lists]
        for i, ranked in zip(lists, rerank_lists(reranker, pairs, vectors), strict=True):
            by_audio[i] = ranked
    return [
        _Ranking(audio[: w.depth], words, score)
        for w, audio, words, score in zip(wanted, by_audio, by_words, best, strict=True)
    ]


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


def _results(session: Session, ranked: Sequence[Ranked]) -> list[SoundResult]:
    """The ranked sounds with their catalog rows, in order; one deleted meanwhile is left out."""
    return _results_many(session, [ranked])[0]


def _results_many(session: Session, lists: Sequence[Sequence[Ranked]]) -> list[list[SoundResult]]:
    """`_results` for several lists, their catalog rows read in one query."""
    ids = sorted({r.id for ranked in lists for r in ranked})
    if not ids:
        return [[] for _ in lists]
    rows = {row.id: row for row in session.execute(_RESULT_ROWS, {"ids": ids})}
    return [_joined(ranked, rows) for ranked in lists]


def _joined(ranked: Sequence[Ranked], rows: Mapping[int, Row[Any]]) -> list[SoundResult]:
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
