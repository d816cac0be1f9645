"""Frozen CLAP features of a whole corpus, embedded once and cached in `<corpus>/cache/`,
keyed by the CLAP's model id. DiffATR trains and is evaluated on them, and the query expansion
(`expansion_build.py`) is built and tuned on them."""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from generative.clap.model import ClapModel

log = logging.getLogger(__name__)


@dataclass
class CorpusFeatures:
    """Frozen CLAP features of a whole corpus."""

    model_id: str
    clip_ids: np.ndarray  # (N,) str
    splits: np.ndarray  # (N,) str
    labels: list[set[str]]  # (N,)
    audio: np.ndarray  # (N, D) unit vectors
    text: np.ndarray  # (C, D) unit vectors, every caption of every clip
    caption_clip: np.ndarray  # (C,) index of each caption's clip

    def split_captions(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits[self.caption_clip] == split)


def _cache_stem(model_id: str) -> str:
    return f"clap-features-{re.sub(r'[^A-Za-z0-9_.-]', '_', model_id)}"


def _cache_path(corpus_dir: Path, model_id: str, train_clips: int | None = None) -> Path:
    suffix = "" if train_clips is None else f"-train{train_clips}"
    return corpus_dir / "cache" / f"{_cache_stem(model_id)}{suffix}.npz"


def corpus_features(
    corpus_dir: Path, clap: ClapModel, train_clips: int | None = None
) -> CorpusFeatures:
    """The corpus's CLAP features, from a cache or embedded now (and cached). `train_clips`
    keeps only that many train clips (a seeded draw; every clip of the other splits stays)."""
    from generative.clap.eval import embed_clips, read_manifest

    corpus_dir = Path(corpus_dir)
    clips = _subset(read_manifest(corpus_dir), train_clips)
    cached = _from_cache(corpus_dir, clap.model_id, clips)
    if cached is not None:
        return cached
    started = time.perf_counter()
    audio = embed_clips(clap, clips)
    text = clap.embed_text([caption for clip in clips for caption in clip.captions])
    log.info("embedded %d clips and %d captions in %.0f s", len(clips), len(text),
             time.perf_counter() - started)  # fmt: skip
    path = _cache_path(corpus_dir, clap.model_id, train_clips)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    owner = np.asarray([i for i, clip in enumerate(clips) for _ in clip.captions])
    np.savez(tmp, clip_ids=[c.id for c in clips], audio=audio, text=text, caption_clip=owner)
    os.replace(tmp, path)
    return _features(clap.model_id, clips, audio, text)


def _subset(clips: list[Any], train_clips: int | None) -> list[Any]:
    train = [i for i, c in enumerate(clips) if c.split == "train"]
    if train_clips is None or train_clips >= len(train):
        return clips
    rng = np.random.default_rng(0)
    drop = set(np.asarray(train)[rng.permutation(len(train))[train_clips:]].tolist())
    return [c for i, c in enumerate(clips) if i not in drop]


def _from_cache(corpus_dir: Path, model_id: str, clips: list[Any]) -> CorpusFeatures | None:
    """Features of `clips` from any cache file of this CLAP that holds all of them."""
    for path in sorted((corpus_dir / "cache").glob(f"{_cache_stem(model_id)}*.npz")):
        with np.load(path) as cached:
            if "caption_clip" not in cached.files:
                continue
            row = {clip_id: i for i, clip_id in enumerate(cached["clip_ids"].tolist())}
            if not all(c.id in row for c in clips):
                continue
            starts = np.searchsorted(cached["caption_clip"], np.arange(len(row)))
            rows = [row[c.id] for c in clips]
            texts = [
                np.arange(starts[r], starts[r] + len(c.captions))
                for r, c in zip(rows, clips, strict=True)
            ]
            log.info("CLAP features of %d clips from %s", len(clips), path)
            return _features(
                model_id, clips, cached["audio"][rows], cached["text"][np.concatenate(texts)]
            )
    return None


def _features(
    model_id: str, clips: list[Any], audio: np.ndarray, text: np.ndarray
) -> CorpusFeatures:
    return CorpusFeatures(
        model_id=model_id,
        clip_ids=np.asarray([c.id for c in clips]),
        splits=np.asarray([c.split for c in clips]),
        labels=[set(c.labels) for c in clips],
        audio=audio.astype(np.float32),
        text=text.astype(np.float32),
        caption_clip=np.asarray([i for i, c in enumerate(clips) for _ in c.captions]),
    )
