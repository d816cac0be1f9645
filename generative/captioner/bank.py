"""The caption bank: captions of the training clips, found by CLAP audio similarity.

The captioner reads, beside a segment's audio and metadata, the captions of the k training
clips whose CLAP audio embeddings are closest to the segment's (retrieval-augmented
captioning): a near clip's caption says which words fit, the audio says which of them hold.
The bank ships with the checkpoint: one caption per training clip and its unit CLAP audio
embedding, stored as int8 (x 127) so 25,000 clips take 6 MB.

In training a clip must not find itself: neighbours leave out the clip's own recording
group (the augmented and mixed variants of one recording) and, for a share of the examples,
every clip of the same class, so the model also learns to caption when nothing near fits, as
for a sound of a class it never heard.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from generative.captioner.consensus import DocumentFrequency

BANK_WEIGHTS = "bank.safetensors"
BANK_CAPTIONS = "bank.json"
_SCALE = 127.0


class CaptionBank:
    """Captions (N,) and their unit CLAP audio embeddings (N, D)."""

    def __init__(self, captions: Sequence[str], embeddings: np.ndarray, clap_model_id: str | None):
        if len(captions) != len(embeddings):
            raise ValueError(f"{len(captions)} captions but {len(embeddings)} embeddings")
        self.captions = list(captions)
        self.embeddings = np.asarray(embeddings, dtype=np.float32)
        self.clap_model_id = clap_model_id

    def __len__(self) -> int:
        return len(self.captions)

    @functools.cached_property
    def frequency(self) -> DocumentFrequency:
        """The n-grams' document frequencies over the bank's captions (consensus reranking)."""
        return DocumentFrequency(self.captions)

    def nearest(self, queries: np.ndarray, k: int) -> np.ndarray:
        """(Q, D) unit vectors -> (Q, k) bank rows, most similar first."""
        k = min(k, len(self))
        if k <= 0:
            return np.zeros((len(queries), 0), dtype=np.int64)
        sims = np.asarray(queries, dtype=np.float32) @ self.embeddings.T  # (Q, D) @ (D, N)
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (Q, k), unordered
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1)

    def neighbour_captions(self, queries: np.ndarray, k: int) -> list[list[str]]:
        return [[self.captions[j] for j in row] for row in self.nearest(queries, k)]

    def neighbours(self, queries: np.ndarray, k: int) -> tuple[list[list[str]], list[list[float]]]:
        """Per query, the k nearest captions and their cosine similarity to it."""
        rows = self.nearest(queries, k)  # (Q, k)
        queries = np.asarray(queries, dtype=np.float32)
        sims = np.einsum("qd,qkd->qk", queries, self.embeddings[rows])  # (Q, k)
        return ([[self.captions[j] for j in row] for row in rows],
                [[float(s) for s in row] for row in sims])  # fmt: skip

    def save(self, folder: Path) -> None:
        from safetensors.numpy import save_file

        folder = Path(folder)
        quantised = np.clip(np.round(self.embeddings * _SCALE), -127, 127).astype(np.int8)
        save_file({"embeddings": quantised}, str(folder / BANK_WEIGHTS))
        text = {"clap_model_id": self.clap_model_id, "captions": self.captions}
        (folder / BANK_CAPTIONS).write_text(json.dumps(text) + "\n")

    @classmethod
    def load(cls, folder: Path) -> CaptionBank | None:
        """The bank in `folder`, or None when the checkpoint has none."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        if not (folder / BANK_CAPTIONS).is_file():
            return None
        text = json.loads((folder / BANK_CAPTIONS).read_text())
        quantised = load_file(str(folder / BANK_WEIGHTS))["embeddings"]
        embeddings = quantised.astype(np.float32) / _SCALE
        embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        return cls(text["captions"], embeddings, text.get("clap_model_id"))


def training_neighbours(
    embeddings: np.ndarray, groups: Sequence[str], classes: Sequence[str], k: int,
    chunk: int = 1024, pool: int = 64,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """For each training clip, the k nearest other training clips (rows, most similar first):
    leaving out its own group, and leaving out its whole class. -1 where fewer were found.
    Returns two (N, k) arrays."""
    n = len(embeddings)
    group_ids = np.unique(np.asarray(groups), return_inverse=True)[1]
    class_ids = np.unique(np.asarray(classes), return_inverse=True)[1]
    outs = (np.full((n, k), -1, dtype=np.int64), np.full((n, k), -1, dtype=np.int64))
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        sims = embeddings[rows] @ embeddings.T  # (C, D) @ (D, N) -> (C, N)
        # Same group (which includes the clip itself) never counts.
        sims[group_ids[rows][:, None] == group_ids[None, :]] = -np.inf
        for out, exclude_class in zip(outs, (False, True), strict=True):
            masked = sims.copy() if exclude_class else sims
            if exclude_class:
                masked[class_ids[rows][:, None] == class_ids[None, :]] = -np.inf
            width = min(pool, n)
            top = np.argpartition(-masked, width - 1, axis=1)[:, :width]
            order = np.argsort(-np.take_along_axis(masked, top, axis=1), axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
            for i, row in enumerate(rows):
                found = [j for j in top[i] if np.isfinite(masked[i, j])][:k]
                out[row, : len(found)] = found
    return outs
