"""Query expansion: a text query moved toward the training captions that CLAP puts near it,
and toward the sounds those captions describe.

A description typed into a search box ("an explosion") is short and may use words the corpus
captions say differently ("a loud blast with debris falling"). Its CLAP text vector is moved
toward the mean of the text vectors of its k nearest training captions (pseudo-relevance
feedback on the caption side, as Rocchio did with documents), and toward the mean CLAP audio
vector of the training clips those captions belong to:

    q' = normalise(q + weight x mean_k(caption text) + audio_weight x mean_k(caption audio))

The second term carries the query across the gap between CLAP's text and audio regions: the
library is ranked partly as if a few training sounds of the described kind had been given
as examples, and sound-to-sound similarity is what CLAP generalises best to recordings it
never heard. Each caption's audio vector is the mean of the unit vectors of the train clips
that carry it.

The captions are the corpus train split's (each distinct text once), embedded by the same
CLAP, and ship beside its weights: `expansion.safetensors` (unit text vectors as int8 x 127),
`expansion-audio.safetensors` (the train clips' unit audio vectors as int8 x 127 and which
clips each caption belongs to; only when audio_weight > 0) and `expansion.json` (the CLAP's
model id, k, both weights and the val table that chose them). A CLAP folder without them, or
with ones made by another CLAP, searches with the plain vector.

Only text queries are expanded: library sounds are indexed with the plain audio vectors, and
search by example is untouched. k and the weights are chosen on val by the library protocol
(`foley train query-expansion`, `expansion_build.py`); test, ood and ood-real never choose them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

EXPANSION_WEIGHTS = "expansion.safetensors"
EXPANSION_AUDIO = "expansion-audio.safetensors"
EXPANSION_FILE = "expansion.json"
_SCALE = 127.0


@dataclass(frozen=True)
class CaptionSounds:
    """The train clips behind each bank caption: unit audio vectors of M clips (M, D) and, in
    compressed rows, which of them carry caption i: `clips[starts[i]:starts[i + 1]]`."""

    audio: np.ndarray  # (M, D)
    starts: np.ndarray  # (N + 1,) int64
    clips: np.ndarray  # (L,) int32

    def caption_audio(self) -> np.ndarray:
        """(N, D): per caption, the mean audio vector of its clips (zero for a caption without)."""
        sizes = np.diff(self.starts)
        if not len(self.clips):
            return np.zeros((len(sizes), self.audio.shape[1]), dtype=np.float32)
        gathered = self.audio[self.clips].astype(np.float32)  # (L, D)
        # reduceat at each caption's first row; a caption without clips gets a zero row below.
        sums = np.add.reduceat(gathered, np.minimum(self.starts[:-1], len(self.clips) - 1), axis=0)
        return np.where(sizes[:, None] > 0, sums / np.maximum(sizes, 1)[:, None], 0.0).astype(
            np.float32
        )

    @classmethod
    def from_owners(cls, audio: np.ndarray, owners: Sequence[Sequence[int]]) -> CaptionSounds:
        """`owners[i]`: the rows of `audio` (clips) that carry caption i."""
        sizes = np.fromiter((len(o) for o in owners), dtype=np.int64, count=len(owners))
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        clips = np.fromiter((c for o in owners for c in o), dtype=np.int32, count=int(sizes.sum()))
        return cls(np.asarray(audio, dtype=np.float32), starts, clips)


class QueryExpansion:
    """Unit text vectors of training captions (N, D), optionally the sounds behind them, and how
    far a query moves toward its k nearest. Loaded from a folder, the vectors are read at the
    first expansion, not at load: a process that never searches by description (a worker
    captioning, `foley index`) never holds them."""

    def __init__(
        self, vectors: np.ndarray, k: int, weight: float, clap_model_id: str,
        sounds: CaptionSounds | None = None, audio_weight: float = 0.0,
    ) -> None:  # fmt: skip
        self._vectors: np.ndarray | None = np.asarray(vectors, dtype=np.float32)
        self._count = len(self._vectors)
        self._sounds = sounds
        self._caption_audio: np.ndarray | None = None
        self._path: Path | None = None
        self._lock = threading.Lock()
        if k < 1 or weight < 0 or audio_weight < 0:
            raise ValueError(
                f"k must be at least 1 and the weights at least 0, got {k}, {weight} and "
                f"{audio_weight}"
            )
        if audio_weight > 0 and sounds is None:
            raise ValueError("an audio weight needs the sounds behind the captions")
        if sounds is not None and len(sounds.starts) != self._count + 1:
            raise ValueError(
                f"the sounds describe {len(sounds.starts) - 1} captions, the bank holds "
                f"{self._count}"
            )
        self.k = min(int(k), self._count)
        self.weight = float(weight)
        self.audio_weight = float(audio_weight)
        self.clap_model_id = clap_model_id

    def __len__(self) -> int:
        return self._count

    @property
    def vectors(self) -> np.ndarray:
        """(N, D) float32 unit text vectors (dequantised from the file on first use)."""
        if self._vectors is None:
            self._read()
        assert self._vectors is not None
        return self._vectors

    @property
    def caption_audio(self) -> np.ndarray | None:
        """(N, D) each caption's mean clip audio vector, or None without an audio side; held
        as float16 (38 MB for the shipped bank instead of 75 MB), averaged in float32."""
        if self.audio_weight == 0:
            return None
        if self._vectors is None:
            self._read()
        if self._caption_audio is None:
            with self._lock:
                if self._caption_audio is None:
                    assert self._sounds is not None
                    self._caption_audio = self._sounds.caption_audio().astype(np.float16)
        return self._caption_audio

    def _read(self) -> None:
        with self._lock:
            if self._vectors is not None:
                return
            from safetensors.numpy import load_file

            assert self._path is not None
            quantised = load_file(str(self._path))["vectors"]
            if self.audio_weight > 0:
                stored = load_file(str(self._path.parent / EXPANSION_AUDIO))
                self._sounds = CaptionSounds(
                    unit(stored["clip_audio"].astype(np.float32) / _SCALE),
                    stored["caption_starts"], stored["caption_clips"],
                )  # fmt: skip
            self._vectors = unit(quantised.astype(np.float32) / _SCALE)

    def expand(self, queries: np.ndarray, chunk: int = 256) -> np.ndarray:
        """(Q, D) unit query vectors -> (Q, D) unit expanded vectors."""
        return expand(queries, self.vectors, self.k, self.weight, chunk,
                      self.caption_audio, self.audio_weight)  # fmt: skip

    def save(self, folder: Path, facts: dict[str, Any] | None = None) -> None:
        from safetensors.numpy import save_file

        folder = Path(folder)
        save_file({"vectors": _quantise(self.vectors)}, str(folder / EXPANSION_WEIGHTS))
        audio_file = folder / EXPANSION_AUDIO
        if self.audio_weight > 0:
            if self._sounds is None:
                self._read()
            sounds = self._sounds
            assert sounds is not None
            save_file({"clip_audio": _quantise(sounds.audio), "caption_starts": sounds.starts,
                       "caption_clips": sounds.clips}, str(audio_file))  # fmt: skip
        else:
            audio_file.unlink(missing_ok=True)
        text = {"clap_model_id": self.clap_model_id, "k": self.k, "weight": self.weight,
                "audio_weight": self.audio_weight, "captions": len(self),
                **(facts or {})}  # fmt: skip
        tmp = folder / f".{EXPANSION_FILE}.tmp"
        tmp.write_text(json.dumps(text, indent=2) + "\n")
        os.replace(tmp, folder / EXPANSION_FILE)

    @classmethod
    def load(cls, folder: Path, clap_model_id: str) -> QueryExpansion | None:
        """The expansion stored in a CLAP folder, if it was made by this CLAP; else None
        (logged), and the CLAP searches with plain vectors. Only the description and the
        weights files' headers are read here."""
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
            audio_weight = float(text.get("audio_weight", 0.0))
            if audio_weight < 0:
                raise ValueError(f"audio weight {audio_weight} below 0")
            if audio_weight > 0:
                with safe_open(str(folder / EXPANSION_AUDIO), framework="np") as handle:
                    starts = handle.get_slice("caption_starts").get_shape()
                    clip_shape = handle.get_slice("clip_audio").get_shape()
                if list(starts) != [shape[0] + 1] or clip_shape[1:] != shape[1:]:
                    raise ValueError(
                        f"{EXPANSION_AUDIO} describes {starts} captions of {clip_shape[1:]} "
                        f"dimensions, the bank holds {shape}"
                    )
            found = cls(np.zeros((shape[0], 0), dtype=np.float32), int(text["k"]),
                        float(text["weight"]), str(text["clap_model_id"]))  # fmt: skip
        except Exception as exc:  # a truncated or foreign file: search without expansion
            log.warning("ignoring the query expansion in %s: %s", folder, exc)
            return None
        if found.clap_model_id != clap_model_id:
            log.warning("ignoring the query expansion in %s: it was made for %s, not %s",
                        folder, found.clap_model_id, clap_model_id)  # fmt: skip
            return None
        # Read at the first expansion (`_read`), the sounds too when the audio weight asks.
        found._vectors, found._path, found.audio_weight = None, weights, audio_weight
        return found


def _quantise(vectors: np.ndarray) -> np.ndarray:
    return np.clip(np.round(vectors * _SCALE), -127, 127).astype(np.int8)


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def expand(
    queries: np.ndarray, bank: np.ndarray, k: int, weight: float, chunk: int = 256,
    bank_audio: np.ndarray | None = None, audio_weight: float = 0.0,
) -> np.ndarray:  # fmt: skip
    """normalise(q + weight x mean of q's k nearest bank rows + audio_weight x mean of those
    rows' `bank_audio`), per row of `queries`."""
    queries = np.asarray(queries, dtype=np.float32)
    with_audio = bank_audio is not None and audio_weight > 0
    if (weight == 0 and not with_audio) or not len(bank) or not len(queries):
        return queries.copy()
    k = min(k, len(bank))
    out = np.empty_like(queries)
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        sims = q @ bank.T  # (C, D) @ (D, N) -> (C, N)
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (C, k)
        moved = q + weight * bank[top].mean(axis=1)  # (C, k, D) -> (C, D)
        if with_audio:
            assert bank_audio is not None
            moved += audio_weight * bank_audio[top].mean(axis=1, dtype=np.float32)
        out[start : start + len(q)] = unit(moved)
    return out


def distinct_captions(captions: Sequence[str], vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Each distinct caption text once (its first row), in first-seen order."""
    first: dict[str, int] = {}
    for i, text in enumerate(captions):
        first.setdefault(text, i)
    rows = np.fromiter(first.values(), dtype=np.int64, count=len(first))
    return list(first), np.asarray(vectors, dtype=np.float32)[rows]
