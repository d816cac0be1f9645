"""How well search finds a corpus split's clips by their labels, in each search mode.

The library protocol of `generative.clap.eval`: the clips of a split are the library, each
distinct label phrase is a query ("rooster", "gravel footstep") and a clip is relevant when it
carries that label; per query precision@10 and recall@50 beside a random ranking's.

Here the library is built the way Foley builds one: a throw-away catalog and Qdrant Edge index
in a temporary folder, each clip decoded, embedded with the given CLAP and written by the index
builder, with the captioner's words (a generated caption and tags per clip) as its only words:
titles are left empty, so a clip's file name cannot give its label away. Every query then runs
through `search.pipeline.find_text` in mode `audio` (CLAP, reranked by DiffATR when a reranker
fits that CLAP), `words` (full text over the generated words) and `hybrid` (both, fused).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from core.catalog import Sound
from core.config import Settings
from core.words import CaptionWords, offer_caption
from generative.clap.eval import library_ranking, read_manifest
from index_builder.embed import Decoded, Failed, content_hash, decode_for, embed_decoded
from index_builder.writer import FileOutcome, write_batch
from search.pipeline import MAX_K, SearchMode, find_text
from search.service import Foley

if TYPE_CHECKING:
    from generative.clap.model import ClapModel

log = logging.getLogger(__name__)

EVAL_MODEL_ID = "evaluation"
MODES = (SearchMode.audio, SearchMode.words, SearchMode.hybrid)


@dataclass(frozen=True)
class EvalClip:
    """A library clip: its audio, its labels (the truth) and the captioner's words for it."""

    id: str
    path: Path
    labels: tuple[str, ...]
    caption: str = ""
    tags: tuple[str, ...] = ()


def evaluate_search(
    clips: Sequence[EvalClip],
    clap: ClapModel,
    *,
    settings: Settings | None = None,
    modes: Sequence[SearchMode | str] = MODES,
    rerank: bool = True,
    workdir: Path | None = None,
) -> dict[str, dict[str, float]]:
    """Per mode: lib_P@10, lib_R@50, their random baselines and the number of queries.

    `settings` gives the DiffATR checkpoint and decode limits (default: the process's);
    the catalog and index live in `workdir` or a temporary folder removed afterwards.
    """
    if not clips:
        raise ValueError("no clips to evaluate on")
    base = settings or Settings()
    with tempfile.TemporaryDirectory(prefix="foley-eval-", dir=workdir) as tmp:
        local = base.model_copy(
            update={"data_dir": Path(tmp), "database_url": None, "qdrant_url": None}
        )
        foley = Foley.open(local, clap=clap)
        try:
            labels = _build_library(foley, clips)
            return {
                SearchMode(mode).value: _run_queries(foley, labels, SearchMode(mode), rerank)
                for mode in modes
            }
        finally:
            foley.close()


def evaluate_split(
    corpus_dir: Path,
    split: str,
    clap: ClapModel,
    captions: Mapping[str, Mapping[str, Any]],
    **kwargs: Any,
) -> dict[str, dict[str, float]]:
    """`evaluate_search` over one split of a built corpus, with `captions[clip_id]` holding
    the generated {"caption": str, "tags": [str]} of each clip (a clip without is wordless)."""
    clips = [
        EvalClip(
            clip.id,
            clip.path,
            clip.labels,
            str(captions.get(clip.id, {}).get("caption", "")),
            tuple(captions.get(clip.id, {}).get("tags", ())),
        )
        for clip in read_manifest(corpus_dir)
        if clip.split == split
    ]
    if not clips:
        raise ValueError(f"split {split!r} has no clips in {corpus_dir}")
    return evaluate_search(clips, clap, **kwargs)


def _build_library(foley: Foley, clips: Sequence[EvalClip]) -> dict[int, set[str]]:
    """Index every clip as the index builder does; returns each sound's labels."""
    labels: dict[int, set[str]] = {}
    chunk = 32
    for start in range(0, len(clips), chunk):
        part = clips[start : start + chunk]
        decoded: list[tuple[EvalClip, str, Decoded]] = []
        for clip in part:
            data = clip.path.read_bytes()
            result = decode_for(foley.clap, data, clip.path.name, foley.limits)
            if isinstance(result, Failed):
                log.warning("%s left out of the evaluation: %s", clip.id, result.message)
                continue
            decoded.append((clip, content_hash(data), result))
        embedded = embed_decoded(foley.clap, [d for _, _, d in decoded])
        outcomes = [
            FileOutcome(
                path=str(clip.path),
                size=clip.path.stat().st_size,
                mtime_ns=clip.path.stat().st_mtime_ns,
                library_id=None,
                content_hash=digest,
                result=vector,
            )
            for (clip, digest, _), vector in zip(decoded, embedded, strict=True)
        ]
        with foley.catalog.session() as session:
            write_batch(session, outcomes, foley.clap.model_id)
            for clip, digest, _ in decoded:
                sound = session.scalar(select(Sound).where(Sound.content_hash == digest))
                assert sound is not None
                # Byte-identical clips are one sound: it carries every label of each.
                labels.setdefault(sound.id, set()).update(clip.labels)
                words = CaptionWords(clip.caption, list(clip.tags), EVAL_MODEL_ID)
                offer_caption(session, sound, words)
    foley.sync()
    return labels


def _run_queries(
    foley: Foley, labels: Mapping[int, set[str]], mode: SearchMode, rerank: bool
) -> dict[str, float]:
    ids = sorted(labels)
    column = {sound_id: j for j, sound_id in enumerate(ids)}
    phrases = sorted(set().union(*labels.values()))
    relevant = np.asarray([[p in labels[i] for i in ids] for p in phrases])  # (Q, N)
    # A retrieved sound scores above every unretrieved one, in its rank order; unretrieved
    # sounds tie at 0, and ties count against the relevant ones.
    scores = np.zeros(relevant.shape)
    k = min(MAX_K, len(ids))
    for q, phrase in enumerate(phrases):
        results = find_text(foley, phrase, k, rerank=rerank, mode=mode).results
        for rank, hit in enumerate(results):
            scores[q, column[hit.id]] = len(results) - rank
    metrics = library_ranking(scores, relevant)
    metrics["lib_sounds"] = float(len(ids))
    return metrics


def format_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """A markdown table: one row per mode."""
    lines = [
        "| mode | P@10 | random P@10 | P@10 ÷ random | R@50 | random R@50 | queries |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, m in results.items():
        lines.append(
            f"| {mode} | {m['lib_P@10']:.3f} | {m['lib_random_P@10']:.3f} | "
            f"{m['lib_P@10_x_random']:.2f} | {m['lib_R@50']:.3f} | {m['lib_random_R@50']:.3f} | "
            f"{int(m['lib_queries'])} |"
        )
    return "\n".join(lines)
