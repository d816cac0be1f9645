"""Evaluate a CLAP checkpoint on the Foley corpus: retrieval both ways, class precision and
zero-shot classification, beside the same architecture with random weights.

Retrieval follows laion-clap's Clotho/AudioCaps evaluation: every caption is a text query
with its own clip as the one relevant audio (mAP@10 is then the mean of 1/rank within the
top 10); every clip is an audio query whose relevant items are all its captions (a hit at k
if any of them ranks within k; mAP@10 is the average precision at each of its captions found
in the top 10, divided by its number of captions, at most 10).

The library protocol asks what a person searching a library sees: the clips of a split are the
library and each distinct label phrase is a query ("rooster", "gravel footstep"); a clip is
relevant when it carries that label. Per query: precision@10, recall@50, and what a random
ranking would get (the share of relevant clips, and 50 / N); means over queries.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from generative.clap.model import ClapModel

log = logging.getLogger(__name__)

ZERO_SHOT_PROMPT = "the sound of {label}"
METRICS = (
    ("t2a_R@1", "T→A R@1"),
    ("t2a_R@5", "T→A R@5"),
    ("t2a_R@10", "T→A R@10"),
    ("t2a_mAP@10", "T→A mAP@10"),
    ("a2t_R@1", "A→T R@1"),
    ("a2t_R@5", "A→T R@5"),
    ("a2t_R@10", "A→T R@10"),
    ("a2t_mAP@10", "A→T mAP@10"),
    ("class_P@10", "class P@10"),
    ("a2a_class_P@10", "A→A class P@10"),
    ("zero_shot_acc", "zero-shot acc"),
)
RETRIEVAL_METRICS = tuple(key for key, _ in METRICS[:8])
LIBRARY_METRICS = (
    ("lib_P@10", "P@10"),
    ("lib_random_P@10", "random P@10"),
    ("lib_P@10_x_random", "P@10 ÷ random"),
    ("lib_R@50", "R@50"),
    ("lib_random_R@50", "random R@50"),
)
EVAL_SPLITS = ("test", "ood", "ood-real")
EXPANDED = "trained, expanded queries"  # the row of a checkpoint with a query expansion
# "<split>-previous": the split's clips from the sources the corpus had before the recorded
# Debian packages (synthesized, speech, MIDI and the desktop/OpenTTD sounds), so that a new
# checkpoint can be compared with an old one on exactly the clips the old one was judged on.
PREVIOUS_SOURCES = ("procedural", "speech", "midi", "recorded")
PREVIOUS_SUFFIX = "-previous"


def split_clips(clips: Sequence[Clip], split: str) -> list[Clip]:
    """The clips of `split`, or of `<split>-previous` (see PREVIOUS_SOURCES)."""
    if split.endswith(PREVIOUS_SUFFIX):
        base = split.removesuffix(PREVIOUS_SUFFIX)
        return [
            c for c in clips
            if c.split == base and c.source in PREVIOUS_SOURCES and not c.variant
        ]  # fmt: skip
    return [c for c in clips if c.split == split]


@dataclass(frozen=True)
class Clip:
    id: str
    path: Path
    captions: tuple[str, ...]
    labels: tuple[str, ...]
    split: str
    duration: float
    source: str = ""
    variant: str = ""  # recorded field clips: plain, augmented or mixture


def read_manifest(corpus_dir: Path) -> list[Clip]:
    """The corpus's clips, from `manifest.jsonl` (one JSON object a line)."""
    corpus_dir = Path(corpus_dir)
    manifest = corpus_dir / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} does not exist: build the corpus first")
    clips = []
    with open(manifest) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                clips.append(
                    Clip(
                        id=str(row["id"]),
                        path=corpus_dir / row["path"],
                        captions=tuple(str(c) for c in row["captions"]),
                        labels=tuple(str(label) for label in row["labels"]),
                        split=str(row["split"]),
                        duration=float(row.get("duration", 0.0)),
                        source=str(row.get("source", "")),
                        variant=str(row.get("params", {}).get("variant", "")),
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{manifest}:{number}: not a corpus entry ({exc})") from exc
    return clips


def decode_clip(path: Path, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """A clip as mono float32 at `sample_rate`, at most `max_seconds` long."""
    import soundfile as sf

    with sf.SoundFile(str(path)) as handle:
        frames = -1 if max_seconds is None else int(max_seconds * handle.samplerate)
        wave = handle.read(frames=frames, dtype="float32", always_2d=True).mean(axis=1)
        rate = int(handle.samplerate)
    if rate != sample_rate:
        from scipy.signal import resample_poly

        common = gcd(rate, sample_rate)
        wave = resample_poly(wave, sample_rate // common, rate // common).astype(np.float32)
    return wave


def _ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each row's target column; a tie counts against the target, so a
    model that scores everything alike ranks nothing first."""
    target_scores = scores[np.arange(len(scores)), targets]
    return (scores >= target_scores[:, None]).sum(axis=1) - 1


def _own_ranks(scores: np.ndarray, own: np.ndarray) -> np.ndarray:
    """0-based ranks of the relevant columns `own` in one row, best first: each one's place
    among its fellows plus the irrelevant columns scoring at least as high."""
    relevant = np.sort(scores[own])[::-1]
    others = np.delete(scores, own)
    return np.arange(len(own)) + (others[None, :] >= relevant[:, None]).sum(axis=1)


def _recall_map(ranks: np.ndarray) -> dict[str, float]:
    out = {f"R@{k}": float(np.mean(ranks < k)) for k in (1, 5, 10)}
    out["mAP@10"] = float(np.mean(np.where(ranks < 10, 1.0 / (ranks + 1), 0.0)))
    return out


def retrieval_metrics(
    text: np.ndarray, audio: np.ndarray, caption_clip: np.ndarray, labels: Sequence[set[str]]
) -> dict[str, float]:
    """text (C, D) captions, audio (N, D) clips, caption_clip (C,) the clip of each caption."""
    t2a = text @ audio.T  # (C, D) @ (D, N) -> (C, N)
    metrics = {f"t2a_{k}": v for k, v in _recall_map(_ranks(t2a, caption_clip)).items()}
    a2t = t2a.T  # (N, C)
    best, average_precision = [], []
    for clip in range(len(audio)):
        ranks = _own_ranks(a2t[clip], np.flatnonzero(caption_clip == clip))
        best.append(ranks[0])
        found = ranks[ranks < 10]
        hits = np.arange(1, len(found) + 1) / (found + 1)
        average_precision.append(hits.sum() / min(len(ranks), 10))
    best_ranks = np.asarray(best)
    metrics.update({f"a2t_R@{k}": float(np.mean(best_ranks < k)) for k in (1, 5, 10)})
    metrics["a2t_mAP@10"] = float(np.mean(average_precision))
    metrics["class_P@10"] = _class_precision(t2a, [labels[c] for c in caption_clip], labels)
    a2a = audio @ audio.T
    np.fill_diagonal(a2a, -np.inf)  # a clip is not its own neighbour
    metrics["a2a_class_P@10"] = _class_precision(a2a, labels, labels)
    return metrics


def _class_precision(
    scores: np.ndarray, query_labels: Sequence[set[str]], labels: Sequence[set[str]]
) -> float:
    k = min(10, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    shares = [
        np.mean([bool(query_labels[q] & labels[j]) for j in row]) for q, row in enumerate(top)
    ]
    return float(np.mean(shares))


def zero_shot_accuracy(
    model: ClapModel, audio: np.ndarray, labels: Sequence[set[str]]
) -> tuple[float, int]:
    """Share of clips whose best-matching class prompt names one of their labels."""
    classes = sorted(set().union(*labels))
    prompts = model.embed_text([ZERO_SHOT_PROMPT.format(label=c) for c in classes])
    predicted = np.argmax(audio @ prompts.T, axis=1)  # (N, D) @ (D, K) -> (N, K)
    return float(np.mean([classes[p] in labels[i] for i, p in enumerate(predicted)])), len(classes)


def embed_clips(model: ClapModel, clips: Sequence[Clip], chunk: int = 64) -> np.ndarray:
    out = np.zeros((len(clips), model.dim), dtype=np.float32)
    started = time.perf_counter()
    for start in range(0, len(clips), chunk):
        part = clips[start : start + chunk]
        out[start : start + len(part)] = model.embed_audio(
            [decode_clip(c.path, model.sample_rate) for c in part]
        )
        log.debug("embedded %d/%d clips (%.0f s)", start + len(part), len(clips),
                 time.perf_counter() - started)  # fmt: skip
    return out


def library_queries(labels: Sequence[set[str]]) -> tuple[list[str], np.ndarray]:
    """The library protocol's queries over clips with these `labels`: each distinct label
    phrase, sorted, and which clips are relevant to it, (Q, N) bool."""
    phrases = sorted(set().union(*labels))
    return phrases, np.asarray([[p in own for own in labels] for p in phrases])


def library_metrics(
    model: ClapModel, audio: np.ndarray, labels: Sequence[set[str]], expanded: bool = False
) -> dict[str, float]:
    """The library protocol over clips `audio` (N, D) with their `labels`; `expanded`: the
    queries as search asks them (`ClapModel.embed_query`), else their plain text vectors."""
    phrases, relevant = library_queries(labels)  # (Q,), (Q, N)
    queries = model.embed_query(phrases) if expanded else model.embed_text(phrases)
    scores = queries @ audio.T  # (Q, D) @ (D, N) -> (Q, N)
    return library_ranking(scores, relevant)


def library_ranking(scores: np.ndarray, relevant: np.ndarray) -> dict[str, float]:
    """scores (Q, N) and relevant (Q, N) bool -> per-query precision@10 and recall@50 against
    a random ranking, averaged over queries. Ties count against the relevant clips."""
    n = scores.shape[1]
    # Sort on (score, irrelevant first) so that a tie never helps a relevant clip.
    order = np.lexsort((relevant, -scores), axis=1)
    hits = np.take_along_axis(relevant, order, axis=1)  # (Q, N) relevance in ranked order
    k10, k50 = min(10, n), min(50, n)
    precision, random_precision = hits[:, :k10].mean(axis=1), relevant.mean(axis=1)
    recall = hits[:, :k50].sum(axis=1) / relevant.sum(axis=1)
    mean_p, mean_random = float(precision.mean()), float(random_precision.mean())
    return {
        "lib_P@10": mean_p,
        "lib_random_P@10": mean_random,
        "lib_P@10_x_random": mean_p / max(mean_random, 1e-9),
        "lib_R@50": float(recall.mean()),
        "lib_random_R@50": k50 / n,
        "lib_queries": float(len(scores)),
    }


def evaluate_model(
    model: ClapModel, clips: Sequence[Clip], audio: np.ndarray | None = None,
    expanded: bool = False,
) -> dict[str, float]:  # fmt: skip
    """Every metric of `model` on `clips` (their audio vectors embedded now unless given);
    `expanded`: captions and label phrases asked as search asks them (query expansion), the
    zero-shot prompts plain."""
    audio = embed_clips(model, clips) if audio is None else audio
    captions = [caption for clip in clips for caption in clip.captions]
    owner = np.asarray([i for i, clip in enumerate(clips) for _ in clip.captions])
    text = model.embed_query(captions) if expanded else model.embed_text(captions)
    labels = [set(clip.labels) for clip in clips]
    metrics = retrieval_metrics(text, audio, owner, labels)
    metrics["zero_shot_acc"], metrics["classes"] = zero_shot_accuracy(model, audio, labels)
    metrics.update(library_metrics(model, audio, labels, expanded))
    metrics["clips"], metrics["captions"] = len(clips), len(captions)
    return metrics


def evaluate_clap(
    corpus_dir: Path,
    checkpoint: Path,
    splits: Sequence[str] = EVAL_SPLITS,
    *,
    baseline: bool = True,
    max_clips: int | None = None,
) -> dict[str, Any]:
    """Metrics of `checkpoint` on each split, and of its architecture with random weights
    (seed 0) when `baseline` and the checkpoint is a compact folder. `max_clips` takes the
    first clips of each split (quick checks)."""
    from generative.clap.load import load_clap, read_compact_config
    from generative.clap.model import ClapModel, build_random_clap

    model = load_clap(checkpoint)
    models: dict[str, ClapModel] = {"trained": model}
    if baseline and Path(checkpoint).is_dir():
        config = read_compact_config(Path(checkpoint))
        models["random"] = ClapModel.from_module(build_random_clap(config, 0), config, "random")
    clips = read_manifest(corpus_dir)
    results: dict[str, Any] = {"model_id": model.model_id, "splits": {}}
    for split in splits:
        chosen = split_clips(clips, split)[:max_clips]
        if not chosen:
            log.warning("the corpus has no %s clips", split)
            continue
        audio = embed_clips(model, chosen)
        found = results["splits"][split] = {"trained": evaluate_model(model, chosen, audio)}
        if model.expansion is not None:  # the queries as search asks them
            found[EXPANDED] = evaluate_model(model, chosen, audio, expanded=True)
        if "random" in models:
            found["random"] = evaluate_model(models["random"], chosen)
    return results


def format_markdown(results: dict[str, Any]) -> str:
    """The results as a markdown table: one row per split and model, plus trained/random."""
    header = "| split | model | " + " | ".join(title for _, title in METRICS) + " |"
    lines = [header, "|" + "---|" * (len(METRICS) + 2)]
    for split, by_model in results["splits"].items():
        for name, metrics in by_model.items():
            cells = " | ".join(f"{metrics[key]:.3f}" for key, _ in METRICS)
            size = f"{metrics['clips']} clips, {metrics['captions']} captions"
            lines.append(f"| {split} ({size}) | {name} | {cells} |")
        if "random" in by_model:
            # A random model that never ranks the right one first has no ratio worth printing.
            cells = " | ".join(
                f"{by_model['trained'][key] / by_model['random'][key]:.1f}×"
                if by_model["random"][key] >= 1e-4
                else "—"
                for key, _ in METRICS
            )
            lines.append(f"| {split} | trained ÷ random | {cells} |")
    return "\n".join(lines) + "\n\n" + format_library(results)


def format_library(results: dict[str, Any]) -> str:
    """The library protocol as a markdown table: one row per split and model."""
    titles = " | ".join(title for _, title in LIBRARY_METRICS)
    lines = [f"| split | model | queries | {titles} |", "|" + "---|" * (len(LIBRARY_METRICS) + 3)]
    for split, by_model in results["splits"].items():
        for name, metrics in by_model.items():
            cells = " | ".join(
                f"{metrics[key]:.1f}×" if key.endswith("x_random") else f"{metrics[key]:.3f}"
                for key, _ in LIBRARY_METRICS
            )
            lines.append(f"| {split} | {name} | {int(metrics['lib_queries'])} | {cells} |")
    return "\n".join(lines) + "\n"
