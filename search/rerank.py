"""Reranking a text query's top-N candidates with DiffATR.

The candidates' audio features are the CLAP vectors already in the catalog (`Embedding` rows
under the running CLAP's model id): nothing is embedded again at query time. A candidate's final
score is its CLAP similarity plus alpha times the probability DiffATR generates for it; every
candidate comes back exactly once, sorted by final score.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select

from core.catalog import Embedding

if TYPE_CHECKING:
    from generative.diffatr.pipeline import DiffATR
    from search.batching import QueryModels
    from search.results import SoundResult
    from search.service import Foley

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
    reranker: DiffATR,
    query: np.ndarray,
    audio: np.ndarray,
    clap_scores: np.ndarray,
    models: QueryModels | None = None,
) -> np.ndarray:
    """query (D,), candidates (N, D), their CLAP scores (N,) -> final scores (N,). DiffATR runs
    through `models` (micro-batched in the API) when given."""
    if len(audio) == 0:
        return np.zeros(0)
    if models is None:
        probs = reranker.generate(query, audio)  # (N,), sums to 1
    else:
        probs = models.relevance(reranker, query, audio)
    return reranker.scores(clap_scores, probs)


def candidate_vectors(foley: Foley, ids: Sequence[int]) -> dict[int, np.ndarray]:
    """The catalog's CLAP audio vectors of these sounds under the running CLAP."""
    with foley.catalog.session() as session:
        rows = session.scalars(
            select(Embedding).where(
                Embedding.sound_id.in_(list(ids)), Embedding.model_id == foley.clap.model_id
            )
        )
        return {row.sound_id: row.as_array() for row in rows}


def rerank_results(
    foley: Foley, reranker: DiffATR, query: np.ndarray, results: list[SoundResult]
) -> list[SoundResult]:
    """The same results, each once, with final scores, best first. A sound with no vector in
    the catalog (being re-embedded) keeps its CLAP score as its final score."""
    vectors = candidate_vectors(foley, [r.id for r in results])
    known = [r for r in results if r.id in vectors]
    final = {r.id: float(r.score) for r in results}
    if known:
        audio = np.stack([vectors[r.id] for r in known])  # (N, D)
        clap = np.asarray([r.score for r in known], dtype=np.float64)  # (N,)
        scores = rerank_scores(reranker, query, audio, clap, foley.models)
        final.update(zip((r.id for r in known), scores, strict=True))
    if len(known) < len(results):
        log.warning("%d of %d candidates have no catalog vector; not reranked",
                    len(results) - len(known), len(results))  # fmt: skip
    rescored = [replace(r, score=float(final[r.id])) for r in results]
    return sorted(rescored, key=lambda r: -r.score)
