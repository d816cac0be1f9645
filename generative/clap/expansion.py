"""Query expansion: a text query moved toward the training captions that CLAP puts near it.

A description typed into a search box ("an explosion") is short and may use words the corpus
captions say differently ("a loud blast with debris falling"). Its CLAP text vector is
moved toward the mean of the text vectors of its k nearest training captions (pseudo-relevance
feedback on the caption side, as Rocchio did with documents):

    q' = normalise(q + weight x mean of the k train captions' unit vectors nearest to q)

The captions are the corpus train split's (each distinct text once), embedded by the same
CLAP, and ship beside its weights: `expansion.safetensors` (unit vectors as int8 x 127) and
`expansion.json` (the CLAP's model id, k, weight and the val table that chose them). A CLAP
folder without them, or with ones made by another CLAP, searches with the plain vector.

Only text queries are expanded: library sounds are indexed with the plain audio vectors, and
search by example is untouched. k and weight are chosen on val by the library protocol
(`foley train query-expansion`, `expansion_build.py`); test, ood and ood-real never choose them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

EXPANSION_WEIGHTS = "expansion.safetensors"
EXPANSION_FILE = "expansion.json"
_SCALE = 127.0


class QueryExpansion:
    """Unit text vectors of training captions (N, D), and how far a query moves toward its k
    nearest. Loaded from a folder, the vectors are read at the first expansion, not at load:
    a process that never searches by description (a worker captioning, `foley index`) never
    holds them."""

    def __init__(self, vectors: np.ndarray, k: int, weight: float, clap_model_id: str) -> None:
        self._vectors: np.ndarray | None = np.asarray(vectors, dtype=np.float32)
        self._count = len(self._vectors)
        self._path: Path | None = None
        self._lock = threading.Lock()
        if k < 1 or weight < 0:
            raise ValueError(f"k must be at least 1 and weight at least 0, got {k} and {weight}")
        self.k = min(int(k), self._count)
        self.weight = float(weight)
        self.clap_model_id = clap_model_id

    def __len__(self) -> int:
        return self._count

    @property
    def vectors(self) -> np.ndarray:
        """(N, D) float32 unit vectors (dequantised from the file on first use)."""
        if self._vectors is None:
            with self._lock:
                if self._vectors is None:
                    from safetensors.numpy import load_file

                    assert self._path is not None
                    quantised = load_file(str(self._path))["vectors"]
                    self._vectors = unit(quantised.astype(np.float32) / _SCALE)
        return self._vectors

    def expand(self, queries: np.ndarray, chunk: int = 256) -> np.ndarray:
        """(Q, D) unit query vectors -> (Q, D) unit expanded vectors."""
        return expand(queries, self.vectors, self.k, self.weight, chunk)

    def save(self, folder: Path, facts: dict[str, Any] | None = None) -> None:
        from safetensors.numpy import save_file

        folder = Path(folder)
        quantised = np.clip(np.round(self.vectors * _SCALE), -127, 127).astype(np.int8)
        save_file({"vectors": quantised}, str(folder / EXPANSION_WEIGHTS))
        text = {"clap_model_id": self.clap_model_id, "k": self.k, "weight": self.weight,
                "captions": len(self), **(facts or {})}  # fmt: skip
        tmp = folder / f".{EXPANSION_FILE}.tmp"
        tmp.write_text(json.dumps(text, indent=2) + "\n")
        os.replace(tmp, folder / EXPANSION_FILE)

    @classmethod
    def load(cls, folder: Path, clap_model_id: str) -> QueryExpansion | None:
        """The expansion stored in a CLAP folder, if it was made by this CLAP; else None
        (logged), and the CLAP searches with plain vectors. Only the description and the
        weights file's header are read here."""
        from safetensors import safe_open

        folder = Path(folder)
        path = folder / EXPANSION_FILE
        if not path.is_file():
            return None
        weights = folder / EXPANSION_WEIGHTS
        try:
            text = json.loads(path.read_text())
            with safe_open(str(weights), framework="np") as handle:
                shape = handle.get_slice("vectors").get_shape()
            if len(shape) != 2:
                raise ValueError(f"vectors of shape {shape}, not (captions, dimensions)")
            found = cls(np.zeros((shape[0], 0), dtype=np.float32), int(text["k"]),
                        float(text["weight"]), str(text["clap_model_id"]))  # fmt: skip
        except Exception as exc:  # a truncated or foreign file: search without expansion
            log.warning("ignoring the query expansion in %s: %s", folder, exc)
            return None
        if found.clap_model_id != clap_model_id:
            log.warning("ignoring the query expansion in %s: it was made for %s, not %s",
                        folder, found.clap_model_id, clap_model_id)  # fmt: skip
            return None
        found._vectors, found._path = None, weights
        return found


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def expand(
    queries: np.ndarray, bank: np.ndarray, k: int, weight: float, chunk: int = 256
) -> np.ndarray:
    """normalise(q + weight x mean of q's k nearest bank rows), per row of `queries`."""
    queries = np.asarray(queries, dtype=np.float32)
    if weight == 0 or not len(bank) or not len(queries):
        return queries.copy()
    k = min(k, len(bank))
    out = np.empty_like(queries)
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        sims = q @ bank.T  # (C, D) @ (D, N) -> (C, N)
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (C, k)
        moved = q + weight * bank[top].mean(axis=1)  # (C, k, D) -> (C, D)
        out[start : start + len(q)] = unit(moved)
    return out


def distinct_captions(captions: Sequence[str], vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Each distinct caption text once (its first row), in first-seen order."""
    first: dict[str, int] = {}
    for i, text in enumerate(captions):
        first.setdefault(text, i)
    rows = np.fromiter(first.values(), dtype=np.int64, count=len(first))
    return list(first), np.asarray(vectors, dtype=np.float32)[rows]
