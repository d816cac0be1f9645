"""Frame-level audio features from a frozen CLAP, per 10 s segment, and their corpus cache.

The captioner reads what CLAP's audio branch sees before it pools: for laion-clap's PANN
branches, the `fine_grained_embedding` (frames after `fc1`, upsampled 16x by laion-clap; the
original frames are every 16th row). A segment is cut like `ClapModel.embed_audio` cuts a file:
fixed windows of the CLAP's `clip_samples` from the segment's start, a short last window filled
by repeating its own samples. Each window gives F frames (6 for a 3 s window at a 30 ms hop);
a partial window keeps only the frames its real audio covers. A segment's features are its
frames (T, C) and its pooled CLAP embedding (D,), the same vector `embed_audio` gives.

Deterministic: full batches whatever the number of windows (as `ClapModel.embed_windows`).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from generative.clap.model import ClapModel

log = logging.getLogger(__name__)

SEGMENT_S = 10.0
# laion-clap's PANN branches repeat each frame this many times in `fine_grained_embedding`.
_PANN_UPSAMPLE = 16


@dataclass
class SegmentFeatures:
    start_s: float
    end_s: float
    frames: np.ndarray  # (T, C) float32
    embedding: np.ndarray  # (D,) unit CLAP audio vector
    rms: float  # loudness of the segment's samples


def segment_bounds(
    samples: int, sample_rate: int, segment_s: float = SEGMENT_S
) -> list[tuple[int, int]]:
    """Non-overlapping segments from the start: [(first sample, end sample), ...]."""
    length = round(segment_s * sample_rate)
    return [(start, min(samples, start + length)) for start in range(0, max(1, samples), length)]


def window_frames(clap: ClapModel, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(W, window) float32 -> frames (W, F, C) and unit CLAP embeddings (W, D)."""
    import torch
    import torch.nn.functional as F

    from generative.clap.model import _audio_autocast

    frames: list[np.ndarray] = []
    embeddings: list[np.ndarray] = []
    with torch.inference_mode(), _audio_autocast(clap.device):
        for start in range(0, len(windows), clap.batch_size):
            chunk = windows[start : start + clap.batch_size]
            x = torch.zeros((clap.batch_size, windows.shape[1]), dtype=torch.float32)
            x[: len(chunk)] = torch.from_numpy(chunk)
            # ClapModel keeps how its branch wants a batch (tensor or dict); the same call.
            out = clap.module.encode_audio(clap._audio_input(x.to(clap.device)), clap.device)  # type: ignore[operator]
            fine = out["fine_grained_embedding"][:, ::_PANN_UPSAMPLE]  # (B, 16F, C) -> (B, F, C)
            pooled = F.normalize(clap.module.audio_projection(out["embedding"]).float(), dim=-1)  # type: ignore[operator]
            frames.append(fine[: len(chunk)].float().cpu().numpy())
            embeddings.append(pooled[: len(chunk)].cpu().numpy())
    return np.concatenate(frames), np.concatenate(embeddings)


def segment_features(clap: ClapModel, waves: Sequence[np.ndarray]) -> list[list[SegmentFeatures]]:
    """Each wave cut into 10 s segments -> per wave, per segment: frames, embedding, loudness.
    All windows of all waves go through CLAP together."""
    from generative.clap.model import _check_wave

    plan = _WindowPlan(clap.window)
    for i, raw in enumerate(waves):
        plan.add_segments(i, _check_wave(raw, i), clap.sample_rate)
    frames, embeddings = window_frames(clap, np.stack(plan.windows))
    return plan.segment_features(frames, embeddings, len(waves))


def embed_and_segment(
    clap: ClapModel, waves: Sequence[np.ndarray]
) -> tuple[np.ndarray, list[list[SegmentFeatures]]]:
    """`clap.embed_audio(waves)` (bit for bit) and `segment_features(clap, waves)` from one
    CLAP pass: a window both cut alike runs once, which is every window of a wave up to 10 s
    (an upload needs its search embedding and its caption's frames)."""
    from generative.clap.model import _check_wave, pool_windows

    plan = _WindowPlan(clap.window)
    rows, weights, owners = [], [], []
    for i, raw in enumerate(waves):
        wave = _check_wave(raw, i)
        for start in range(0, len(wave), clap.window):  # as `ClapModel.embed_audio` cuts it
            stop = min(start + clap.window, len(wave))
            rows.append(plan.row(i, wave, start, stop))
            weights.append((stop - start) / clap.window)
            owners.append(i)
        plan.add_segments(i, wave, clap.sample_rate)
    if not plan.windows:
        return np.zeros((0, clap.dim), dtype=np.float32), []
    frames, embeddings = window_frames(clap, np.stack(plan.windows))
    vectors = pool_windows(embeddings[rows], weights, owners, len(waves))
    return vectors, plan.segment_features(frames, embeddings, len(waves))


class _WindowPlan:
    """The distinct CLAP windows to run once, and the segments made of them.

    A window is the samples `wave[start:stop]` of one wave, filled to a full window by
    repeating them (`fill_window`), so two cuts of the same samples share a row."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.windows: list[np.ndarray] = []
        self._rows: dict[tuple[int, int, int], int] = {}
        # (owner, start_s, end_s, rms, window rows, each window's share of real audio)
        self.segments: list[tuple[int, float, float, float, list[int], list[float]]] = []

    def row(self, owner: int, wave: np.ndarray, start: int, stop: int) -> int:
        from generative.clap.model import fill_window

        key = (owner, start, stop)
        if key not in self._rows:
            self._rows[key] = len(self.windows)
            self.windows.append(fill_window(wave[start:stop], self.window))
        return self._rows[key]

    def add_segments(self, owner: int, wave: np.ndarray, sample_rate: int) -> None:
        """The wave's 10 s segments, each cut into windows from its own start."""
        for first, last in segment_bounds(len(wave), sample_rate):
            rows, shares = [], []
            for start in range(first, last, self.window):
                stop = min(start + self.window, last)
                rows.append(self.row(owner, wave, start, stop))
                shares.append((stop - start) / self.window)
            piece = wave[first:last]
            rms = float(np.sqrt(np.mean(np.square(piece, dtype=np.float64))))
            self.segments.append(
                (owner, first / sample_rate, last / sample_rate, rms, rows, shares)
            )

    def segment_features(
        self, frames: np.ndarray, embeddings: np.ndarray, count: int
    ) -> list[list[SegmentFeatures]]:
        """Frames (W, F, C) and unit embeddings (W, D) of the windows -> per wave, per segment."""
        out: list[list[SegmentFeatures]] = [[] for _ in range(count)]
        per_window = frames.shape[1]
        for owner, start_s, end_s, rms, rows, shares in self.segments:
            kept = [
                frames[r, : max(1, math.ceil(per_window * s))]
                for r, s in zip(rows, shares, strict=True)
            ]
            # (n, D) * (n, 1), summed -> (D,)
            pooled = (embeddings[rows] * np.asarray(shares)[:, None]).sum(axis=0)
            pooled /= max(float(np.linalg.norm(pooled)), 1e-12)
            out[owner].append(
                SegmentFeatures(
                    start_s, end_s, np.concatenate(kept), pooled.astype(np.float32), rms
                )
            )
        return out


# --- the corpus cache ----------------------------------------------------------------------


@dataclass
class CorpusFrames:
    """The first 10 s segment of every clip: frames, stored flat, and CLAP embeddings."""

    model_id: str
    clip_ids: np.ndarray  # (N,) str
    offsets: np.ndarray  # (N + 1,) clip i's frames are frames[offsets[i]:offsets[i + 1]]
    frames: np.ndarray  # (sum T, C) float16
    embedding: np.ndarray  # (N, D) float32 unit vectors

    def clip_frames(self, i: int) -> np.ndarray:
        return self.frames[self.offsets[i] : self.offsets[i + 1]]

    def rows(self, clip_ids: Sequence[str]) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.clip_ids.tolist())}
        return np.asarray([index[c] for c in clip_ids], dtype=np.int64)


def cache_path(corpus_dir: Path, model_id: str) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", model_id)
    return Path(corpus_dir) / "cache" / f"captioner-frames-{stem}.npz"


def _read_cache(path: Path, model_id: str) -> CorpusFrames | None:
    if not path.is_file():
        return None
    with np.load(path) as cached:
        return CorpusFrames(model_id, cached["clip_ids"], cached["offsets"], cached["frames"],
                            cached["embedding"])  # fmt: skip


def corpus_frames(
    corpus_dir: Path, clap: ClapModel, clips: Sequence[Any], chunk: int = 256
) -> CorpusFrames:
    """Frames of `clips` (objects with `.id` and `.path`) and of every clip cached before:
    clips missing from `<corpus>/cache/` (keyed by the CLAP's model id) are computed now and
    added to the cache."""
    import soundfile as sf

    path = cache_path(corpus_dir, clap.model_id)
    cached = _read_cache(path, clap.model_id)
    have = set() if cached is None else set(cached.clip_ids.tolist())
    missing = [c for c in clips if c.id not in have]
    if not missing and cached is not None:
        log.info("captioner frames of %d clips from %s", len(clips), path)
        return cached
    started = time.perf_counter()
    frames: list[np.ndarray] = []
    embeddings: list[np.ndarray] = []
    for start in range(0, len(missing), chunk):
        batch = missing[start : start + chunk]
        waves = [sf.read(str(Path(corpus_dir) / c.path), dtype="float32")[0] for c in batch]
        waves = [w if w.ndim == 1 else w.mean(axis=1) for w in waves]
        for per_clip in segment_features(clap, waves):
            frames.append(per_clip[0].frames.astype(np.float16))
            embeddings.append(per_clip[0].embedding)
        elapsed = time.perf_counter() - started
        log.info("captioner frames: %d/%d clips (%.0f s)", start + len(batch), len(missing),
                 elapsed)  # fmt: skip
    ids = [c.id for c in missing]
    if cached is not None:  # the cached clips first, then the new ones
        frames = [cached.clip_frames(i) for i in range(len(cached.clip_ids))] + frames
        embeddings = list(cached.embedding) + embeddings
        ids = cached.clip_ids.tolist() + ids
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in frames])]).astype(np.int64)
    result = CorpusFrames(clap.model_id, np.asarray(ids), offsets, np.concatenate(frames),
                          np.stack(embeddings))  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, clip_ids=result.clip_ids, offsets=offsets, frames=result.frames,
             embedding=result.embedding)  # fmt: skip
    os.replace(tmp, path)
    return result
