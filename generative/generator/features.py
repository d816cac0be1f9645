"""The generator's view of the corpus: clips with their group, their frozen CLAP features
(audio embedding and every caption's text embedding) cached in `<corpus>/cache/` keyed by the
CLAP's model id, and each train clip's retrieved neighbours among the other train clips.

Audio embeddings the captioner's cache already holds (the same CLAP, the same pooling over a
clip's first 10 s; corpus clips are at most 10 s) are taken from it rather than recomputed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from generative.clap.eval import Clip, decode_clip, read_manifest

if TYPE_CHECKING:
    from generative.clap.model import ClapModel

log = logging.getLogger(__name__)

NEAR_DUPLICATE = 0.98  # CLAP audio cosine above which a clip counts as a copy of another


@dataclass
class ClipFeatures:
    """CLAP features of some clips: one audio embedding each and every caption's text one."""

    clip_ids: np.ndarray  # (N,) str
    audio: np.ndarray  # (N, D) unit vectors
    text: np.ndarray  # (C, D) unit vectors
    offsets: np.ndarray  # (N + 1,) clip i's captions are text[offsets[i]:offsets[i + 1]]

    def captions_of(self, i: int) -> np.ndarray:
        return self.text[self.offsets[i] : self.offsets[i + 1]]


def sample_clips(corpus_dir: Path, split: str, limit: int | None, seed: int) -> list[Clip]:
    """The clips of a split, or a seeded sample of `limit` of them, in manifest order."""
    clips = [c for c in read_manifest(corpus_dir) if c.split == split]
    if limit is not None and limit < len(clips):
        keep = np.sort(np.random.default_rng(seed).permutation(len(clips))[:limit])
        clips = [clips[i] for i in keep]
    return clips


def clip_groups(corpus_dir: Path, clips: Sequence[Clip]) -> np.ndarray:
    """(N,) each clip's group (a recording and its variations); its own id when it has none."""
    wanted = {c.id for c in clips}
    groups: dict[str, str] = {}
    with open(Path(corpus_dir) / "manifest.jsonl") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                if row["id"] in wanted:
                    groups[row["id"]] = str(row.get("meta", {}).get("group") or row["id"])
    return np.asarray([groups.get(c.id, c.id) for c in clips])


def cache_path(corpus_dir: Path, model_id: str) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", model_id)
    return Path(corpus_dir) / "cache" / f"generator-clap-{stem}.npz"


def clip_features(corpus_dir: Path, clap: ClapModel, clips: Sequence[Clip]) -> ClipFeatures:
    """CLAP features of `clips`, from the cache or computed now (and added to the cache)."""
    path = cache_path(corpus_dir, clap.model_id)
    cached = _read(path)
    have = {} if cached is None else {c: i for i, c in enumerate(cached.clip_ids.tolist())}
    missing = [c for c in clips if c.id not in have]
    if missing:
        cached = _extend(path, cached, _compute(corpus_dir, clap, missing))
        have = {c: i for i, c in enumerate(cached.clip_ids.tolist())}
    assert cached is not None
    rows = [have[c.id] for c in clips]
    texts = [cached.captions_of(r) for r in rows]
    counts = np.asarray([len(t) for t in texts])
    return ClipFeatures(
        clip_ids=np.asarray([c.id for c in clips]),
        audio=cached.audio[rows],
        text=np.concatenate(texts),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
    )


def _read(path: Path) -> ClipFeatures | None:
    if not path.is_file():
        return None
    with np.load(path) as z:
        return ClipFeatures(z["clip_ids"], z["audio"], z["text"], z["offsets"])


def _extend(path: Path, cached: ClipFeatures | None, new: ClipFeatures) -> ClipFeatures:
    if cached is not None:
        new = ClipFeatures(
            clip_ids=np.concatenate([cached.clip_ids, new.clip_ids]),
            audio=np.concatenate([cached.audio, new.audio]),
            text=np.concatenate([cached.text, new.text]),
            offsets=np.concatenate([cached.offsets, new.offsets[1:] + cached.offsets[-1]]),
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, clip_ids=new.clip_ids, audio=new.audio, text=new.text, offsets=new.offsets)
    os.replace(tmp, path)
    return new


def _compute(corpus_dir: Path, clap: ClapModel, clips: Sequence[Clip]) -> ClipFeatures:
    from generative.captioner.features import cache_path as captioner_cache

    started = time.perf_counter()
    audio = np.zeros((len(clips), clap.dim), np.float32)
    known = np.zeros(len(clips), bool)
    frames = captioner_cache(corpus_dir, clap.model_id)
    if frames.is_file():
        with np.load(frames) as z:
            row = {c: i for i, c in enumerate(z["clip_ids"].tolist())}
            hits = [(i, row[c.id]) for i, c in enumerate(clips) if c.id in row]
            if hits:
                mine, theirs = np.asarray(hits).T
                audio[mine] = z["embedding"][theirs]
                known[mine] = True
    todo = np.flatnonzero(~known)
    for start in range(0, len(todo), 64):
        part = todo[start : start + 64]
        audio[part] = clap.embed_audio([decode_clip(clips[i].path, clap.sample_rate) for i in part])
        log.info(
            "CLAP audio: %d/%d clips (%.0f s)",
            start + len(part),
            len(todo),
            time.perf_counter() - started,
        )
    captions = [caption for c in clips for caption in c.captions]
    text = clap.embed_text(captions)
    counts = np.asarray([len(c.captions) for c in clips])
    log.info(
        "CLAP features of %d clips (%d from the captioner's cache), %d captions in %.0f s",
        len(clips),
        int(known.sum()),
        len(captions),
        time.perf_counter() - started,
    )
    return ClipFeatures(
        clip_ids=np.asarray([c.id for c in clips]),
        audio=audio,
        text=text,
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
    )


def train_neighbours(
    audio: np.ndarray, groups: np.ndarray, k: int, near_duplicate: float = NEAR_DUPLICATE
) -> np.ndarray:
    """(N, k) indices of each clip's k nearest other clips by CLAP audio cosine, best first,
    leaving out the clip itself, its own group and near duplicates (cosine > near_duplicate);
    -1 where fewer than k remain."""
    out = np.full((len(audio), k), -1, dtype=np.int64)
    _, group_ids = np.unique(groups, return_inverse=True)
    for start in range(0, len(audio), 1024):
        sims = audio[start : start + 1024] @ audio.T  # (b, D) @ (D, N) -> (b, N)
        same = group_ids[start : start + 1024, None] == group_ids[None, :]
        sims[same | (sims > near_duplicate)] = -np.inf
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        found = np.take_along_axis(sims, top, axis=1) > -np.inf
        out[start : start + len(top)] = np.where(found, top, -1)
    return out
