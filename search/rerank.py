"""Reranking a text query's top-N candidates with DiffATR.

The candidates' audio features are the CLAP vectors already in the catalog (`Embedding` rows
under the running CLAP's model id): nothing is embedded again at query time. A candidate's final
score is its CLAP similarity plus alpha times the probability DiffATR generates for it; every
candidate comes back exactly once, sorted by final score.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar, cast

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.catalog import Embedding
from search.results import Ranked, SoundResult

if TYPE_CHECKING:
    from generative.diffatr.pipeline import DiffATR
    from search.service import Foley

R = TypeVar("R", Ranked, SoundResult)

log = logging.getLogger(__name__)

RERANK_TOP_N = 64  # used when the checkpoint does not name its own top N


def text_reranker(foley: Foley) -> tuple[DiffATR | None, str]:
    """The process's reranker if it fits the running CLAP, else None; and why."""
    from generative.registry import diffatr_status, get_diffatr

    reranker = get_diffatr(foley.settings)
    if reranker is None:
        return None, diffatr_status(foley.settings)
    trained_on = reranker.config.clap_model_id
    if reranker.config.feature_dim != foley.clap.dim or trained_on not in (
        None,
        foley.clap.model_id,
    ):
        return None, f"trained on CLAP features {trained_on}, not {foley.clap.model_id}"
    return reranker, "loaded"


def top_n(reranker: DiffATR | None, k: int) -> int:
    """How many ANN hits to fetch so that k results come from the reranked list."""
    if reranker is None:
        return k
    return max(k, reranker.config.top_n or RERANK_TOP_N)


def rerank_scores(
    reranker: DiffATR, query: np.ndarray, audio: np.ndarray, clap_scores: np.ndarray
) -> np.ndarray:
    """query (D,), candidates (N, D), their CLAP scores (N,) -> final scores (N,)."""
    if len(audio) == 0:
        return np.zeros(0)
    probs = reranker.generate(query, audio)  # (N,), sums to 1
    return reranker.scores(clap_scores, probs)


def catalog_vectors(session: Session, model_id: str, ids: Sequence[int]) -> dict[int, np.ndarray]:
    """The catalog's CLAP audio vectors (D,) of these sounds under `model_id`: one query for
    two columns, no ORM objects (a search reads 64 of them)."""
    rows = session.execute(
        select(Embedding.sound_id, Embedding.vector).where(
            Embedding.sound_id.in_(list(ids)), Embedding.model_id == model_id
        )
    )
    return {sound_id: np.frombuffer(vector, dtype=np.float32) for sound_id, vector in rows}


def candidate_vectors(foley: Foley, ids: Sequence[int]) -> dict[int, np.ndarray]:
    """The catalog's CLAP audio vectors of these sounds under the running CLAP."""
    with foley.catalog.session() as session:
        return catalog_vectors(session, foley.clap.model_id, ids)


def rerank_results(
    foley: Foley,
    reranker: DiffATR,
    query: np.ndarray,
    results: Sequence[R],
    vectors: Mapping[int, np.ndarray] | None = None,
) -> list[R]:
    """The same results, each once, with final scores, best first. A sound with no vector in
    the catalog (being re-embedded) keeps its CLAP score as its final score. `vectors`: the
    candidates' catalog vectors when the caller already read them."""
    if vectors is None:
        vectors = candidate_vectors(foley, [r.id for r in results])
    return rerank_lists(reranker, [(query, results)], vectors)[0]


def rerank_lists(
    reranker: DiffATR,
    lists: Sequence[tuple[np.ndarray, Sequence[R]]],
    vectors: Mapping[int, np.ndarray],
) -> list[list[R]]:
    """Several queries' candidate lists (query (D,), its results), each reranked as
    `rerank_results` reranks it alone, in one DiffATR pass per list length. Each list starts
    from the noise it would get alone, so its scores do not depend on the others."""
    known = [[r for r in results if r.id in vectors] for _, results in lists]
    final = [{r.id: float(r.score) for r in results} for _, results in lists]
    by_length: dict[int, list[int]] = {}
    for i, candidates in enumerate(known):
        if candidates:
            by_length.setdefault(len(candidates), []).append(i)
    for members in by_length.values():
        queries = np.stack([lists[i][0] for i in members])  # (B, D)
        audio = np.stack([[vectors[r.id] for r in known[i]] for i in members])  # (B, N, D)
        probs = reranker.generate_batch(queries, audio)  # (B, N), each row sums to 1
        for row, i in enumerate(members):
            clap = np.asarray([r.score for r in known[i]], dtype=np.float64)
            scores = reranker.scores(clap, probs[row])
            final[i].update(zip((r.id for r in known[i]), scores.tolist(), strict=True))
    missing = sum(len(results) - len(k) for (_, results), k in zip(lists, known, strict=True))
    if missing:
        log.warning("%d candidates have no catalog vector; not reranked", missing)
    return [
        sorted((_with_score(r, scores[r.id]) for r in results), key=lambda r: -r.score)
        for (_, results), scores in zip(lists, final, strict=True)
    ]


def _with_score(result: R, score: float) -> R:
    if isinstance(result, Ranked):  # a search's 64 candidates: `replace` costs several times this
        fresh = Ranked(result.id, score, result.clap_score, result.words_score,
                       result.audio_rank, result.words_rank)  # fmt: skip
        return cast(R, fresh)
    return replace(result, score=score)
