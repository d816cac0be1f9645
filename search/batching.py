"""The query-time model calls: CLAP text embedding and DiffATR relevance.

`QueryModels` runs them in the caller's thread (the command line, batching turned off).
`BatchedQueryModels` hands them to one worker thread that runs the requests which arrived
within a few milliseconds of each other as one batch: one CLAP text pass for all their texts
and one DiffATR pass per list length. Concurrent requests then share model calls instead of
fighting over two cores, and each caller still gets its own result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from core.batching import MicroBatcher

if TYPE_CHECKING:
    from generative.clap.model import ClapModel
    from generative.diffatr.pipeline import DiffATR


@dataclass(frozen=True)
class TextQuery:
    text: str


@dataclass(frozen=True, eq=False)
class RerankList:
    reranker: DiffATR
    query: np.ndarray  # (D,) the query's CLAP text vector
    audio: np.ndarray  # (K, D) the candidates' CLAP audio vectors


QueryWork = TextQuery | RerankList


class QueryModels:
    """Each call runs at once, in the caller's thread."""

    def __init__(self, clap: ClapModel) -> None:
        self.clap = clap

    def embed_text(self, text: str) -> np.ndarray:
        """A query -> its CLAP text vector (D,)."""
        return self.run([TextQuery(text)])[0]

    def relevance(self, reranker: DiffATR, query: np.ndarray, audio: np.ndarray) -> np.ndarray:
        """DiffATR's generated distribution (K,) over the candidates audio (K, D)."""
        return self.run([RerankList(reranker, query, audio)])[0]

    def run(self, work: list[QueryWork]) -> list[np.ndarray]:
        """Every item's result, in order: texts in one CLAP pass, lists grouped by shape."""
        out: dict[int, np.ndarray] = {}
        texts = [(i, item.text) for i, item in enumerate(work) if isinstance(item, TextQuery)]
        if texts:
            # No filler rows: at the API's load a batch holds a few texts, and a full batch
            # would cost several times their own pass (same vectors to about 1e-7).
            vectors = self.clap.embed_text([text for _, text in texts], fill=False)  # (T, D)
            out.update((i, vectors[row]) for row, (i, _) in enumerate(texts))
        groups: dict[tuple[int, tuple[int, ...]], list[tuple[int, RerankList]]] = {}
        for i, item in enumerate(work):
            if isinstance(item, RerankList):
                groups.setdefault((id(item.reranker), item.audio.shape), []).append((i, item))
        for members in groups.values():
            reranker = members[0][1].reranker
            queries = np.stack([item.query for _, item in members])  # (B, D)
            audio = np.stack([item.audio for _, item in members])  # (B, K, D)
            probs = reranker.generate_batch(queries, audio)  # (B, K)
            out.update((i, probs[row]) for row, (i, _) in enumerate(members))
        return [out[i] for i in range(len(work))]

    def close(self) -> None:
        pass


class BatchedQueryModels(QueryModels):
    """Calls from many threads, run by one worker thread in micro-batches."""

    def __init__(
        self,
        clap: ClapModel,
        *,
        max_batch: int,
        max_wait_s: float,
        torch_threads: int | None = None,
    ) -> None:
        super().__init__(clap)

        def start() -> None:
            if torch_threads:  # torch's thread count is set per thread that runs its ops
                import torch

                torch.set_num_threads(torch_threads)

        self.batcher: MicroBatcher[QueryWork, np.ndarray] = MicroBatcher(
            super().run,
            max_batch=max_batch,
            max_wait_s=max_wait_s,
            name="foley-query-batcher",
            on_start=start,
        )

    def embed_text(self, text: str) -> np.ndarray:
        return self.batcher.submit(TextQuery(text))

    def relevance(self, reranker: DiffATR, query: np.ndarray, audio: np.ndarray) -> np.ndarray:
        return self.batcher.submit(RerankList(reranker, query, audio))

    def close(self) -> None:
        self.batcher.close()
