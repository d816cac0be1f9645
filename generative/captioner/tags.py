"""Tags: 3 to 10 Freesound-style tags per sound from a vocabulary built from the corpus labels.

A tag is a label lowercased with its words hyphenated (`gravel footstep` -> `gravel-footstep`).
Its score for a sound is CLAP zero-shot (the cosine of the sound's audio embedding with the
text embedding of "the sound of {label}") plus `caption_weight` times the share of the tag's
words that appear in the sound's caption. Each tag has its own threshold, calibrated on val
(the F1-best one where val has positives, a shared one elsewhere). A sound gets the tags over
their thresholds, best margin first, at most 10; when fewer than 3 pass, the best margins
fill up to 3.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

TAGS_FILE = "tags.json"
PROMPT = "the sound of {label}"
MIN_TAGS, MAX_TAGS = 3, 10
CAPTION_WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)


def tag_name(label: str) -> str:
    """`Gravel Footstep` -> `gravel-footstep`."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _words(text: str) -> set[str]:
    return {_stem(w) for w in re.findall(r"[a-z0-9]+", text.lower())}


def build_vocabulary(label_lists: Iterable[Iterable[str]], min_count: int = 3) -> list[str]:
    """Labels carried by at least `min_count` clips, as their readable phrase, sorted."""
    counts = Counter(" ".join(label.lower().split()) for labels in label_lists for label in labels)
    return sorted(label for label, n in counts.items() if n >= min_count and tag_name(label))


def caption_match(captions: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """(N, K): the share of each label's words that appear in each caption."""
    label_words = [_words(label) for label in labels]
    out = np.zeros((len(captions), len(labels)), dtype=np.float32)
    for i, caption in enumerate(captions):
        words = _words(caption)
        for k, needed in enumerate(label_words):
            if needed:
                out[i, k] = len(needed & words) / len(needed)
    return out


@dataclass
class TagScorer:
    labels: list[str]  # the readable phrases; the tag is `tag_name(label)`
    thresholds: list[float] = field(default_factory=list)
    caption_weight: float = 0.1
    prompt: str = PROMPT

    @property
    def tags(self) -> list[str]:
        return [tag_name(label) for label in self.labels]

    def prompts(self) -> list[str]:
        return [self.prompt.format(label=label) for label in self.labels]

    def scores(
        self, audio: np.ndarray, tag_text: np.ndarray, captions: Sequence[str]
    ) -> np.ndarray:
        """audio (N, D) and tag prompts' text (K, D) unit vectors, captions (N,) -> (N, K)."""
        zero_shot = audio @ tag_text.T  # (N, D) @ (D, K) -> (N, K)
        return zero_shot + self.caption_weight * caption_match(captions, self.labels)

    def select(self, scores: np.ndarray) -> list[list[str]]:
        """(N, K) scores -> each sound's tags, best margin over its threshold first."""
        thresholds = np.asarray(self.thresholds or [np.inf] * len(self.labels))
        margin = scores - thresholds[None, :]
        tags = self.tags
        out = []
        for row in margin:
            order = np.argsort(-row, kind="stable")
            passed = int((row > 0).sum())
            keep = order[: min(MAX_TAGS, max(MIN_TAGS, passed))]
            # Distinct labels can hyphenate alike; keep the first of each.
            chosen = list(dict.fromkeys(tags[k] for k in keep))
            out.append(chosen[:MAX_TAGS])
        return out

    def save(self, folder: Path) -> None:
        (Path(folder) / TAGS_FILE).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path) -> TagScorer:
        return cls(**json.loads((Path(folder) / TAGS_FILE).read_text()))


def label_matrix(clip_labels: Sequence[Iterable[str]], labels: Sequence[str]) -> np.ndarray:
    """(N, K) bool: clip i carries label k (labels compared lowercased, spaces normalised)."""
    column = {label: k for k, label in enumerate(labels)}
    out = np.zeros((len(clip_labels), len(labels)), dtype=bool)
    for i, carried in enumerate(clip_labels):
        for label in carried:
            k = column.get(" ".join(label.lower().split()))
            if k is not None:
                out[i, k] = True
    return out


def _best_threshold(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """The threshold (between sorted scores) with the best F1 of `scores > t`; and that F1."""
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(truth[order])  # true positives when the top j+1 pass
    taken = np.arange(1, len(scores) + 1)
    f1 = 2 * hits / (taken + truth.sum())
    j = int(np.argmax(f1))
    below = scores[order[j + 1]] if j + 1 < len(scores) else scores[order[j]] - 1e-3
    return float((scores[order[j]] + below) / 2), float(f1[j])


def calibrate(
    scorer: TagScorer,
    audio: np.ndarray,
    tag_text: np.ndarray,
    captions: Sequence[str],
    clip_labels: Sequence[Iterable[str]],
) -> dict[str, float]:
    """Choose `caption_weight` and per-tag thresholds on labelled clips (val); returns the
    micro precision, recall and F1 of the chosen tags on those same clips."""
    truth = label_matrix(clip_labels, scorer.labels)  # (N, K)
    best: tuple[float, float, list[float]] | None = None
    for weight in CAPTION_WEIGHTS:
        scorer.caption_weight = weight
        scores = scorer.scores(audio, tag_text, captions)
        shared, _ = _best_threshold(scores.ravel(), truth.ravel())
        thresholds = [
            _best_threshold(scores[:, k], truth[:, k])[0] if truth[:, k].sum() >= 2 else shared
            for k in range(len(scorer.labels))
        ]
        scorer.thresholds = thresholds
        f1 = tag_metrics(scorer.select(scores), clip_labels)["f1"]
        if best is None or f1 > best[0]:
            best = (f1, weight, thresholds)
    assert best is not None
    scorer.caption_weight, scorer.thresholds = best[1], [round(t, 5) for t in best[2]]
    return tag_metrics(scorer.select(scorer.scores(audio, tag_text, captions)), clip_labels)


def tag_metrics(predicted: Sequence[Sequence[str]], clip_labels: Sequence[Iterable[str]]) -> dict:
    """Micro precision, recall and F1 of predicted tags against the clips' labels (as tags)."""
    tp = n_pred = n_true = 0
    for tags, labels in zip(predicted, clip_labels, strict=True):
        truth = {tag_name(label) for label in labels}
        tp += len(set(tags) & truth)
        n_pred += len(set(tags))
        n_true += len(truth)
    precision = tp / max(1, n_pred)
    recall = tp / max(1, n_true)
    f1 = 2 * precision * recall / max(1e-12, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1}
