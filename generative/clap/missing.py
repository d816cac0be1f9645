"""Does the library hold what a description asks for? The threshold behind `missing`.

The score is the best CLAP cosine similarity between the query and any sound of the library
(after filters, before reranking). DiffATR's final score cannot say it: it spreads relevance
over the candidates it was given, so its best candidate scores high even when none fits. The
cosine is absolute: how near the best sound is, whatever the others are.

Calibration (`foley calibrate missing`) on the val split, as a library search sees it: the
split's clips (variants of a recording left out) are a library and each distinct label phrase
is a query. Each query is asked twice: against the whole library (its class is there) and
against the library without every clip carrying that label (its class is missing). The
threshold is the best score that separates the two (most decisions right; both sets have one
entry per query). Precision and recall of `missing: true` are reported on val and, with the
same threshold, on test and ood-real, which did not choose it.

The queries are embedded as search embeds them (`ClapModel.embed_query`: with the checkpoint's
query expansion when it has one), so calibrate again after `foley train query-expansion`.
The threshold belongs to the CLAP that made the scores: it is written beside the checkpoint's
weights (`missing.json`) with that CLAP's model id, and ignored under any other CLAP.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from generative.clap.eval import Clip
    from generative.clap.model import ClapModel

log = logging.getLogger(__name__)

MISSING_FILE = "missing.json"
CALIBRATION_SPLIT = "val"
CHECK_SPLITS = ("test", "ood-real")


@dataclass(frozen=True)
class MissingThreshold:
    """`missing` is true when the best CLAP cosine is below `threshold`."""

    threshold: float
    clap_model_id: str

    def missing(self, best_score: float | None) -> bool | None:
        return None if best_score is None else bool(best_score < self.threshold)


def read_missing(checkpoint: Path, clap_model_id: str) -> MissingThreshold | None:
    """The threshold stored with a CLAP checkpoint, if it was calibrated for this CLAP."""
    path = Path(checkpoint) / MISSING_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        found = MissingThreshold(float(data["threshold"]), str(data["clap_model_id"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None
    if found.clap_model_id != clap_model_id:
        log.warning("ignoring %s: calibrated for CLAP %s, not %s", path, found.clap_model_id,
                    clap_model_id)  # fmt: skip
        return None
    return found


def best_scores(text: np.ndarray, audio: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """(Q, 2) per query: its best cosine over the whole library, and over the library without
    its relevant clips (-1 when nothing is left). text (Q, D), audio (N, D), relevant (Q, N)."""
    scores = text @ audio.T
    present = scores.max(axis=1)
    absent = np.where(relevant, -1.0, scores).max(axis=1)
    return np.stack([present, absent], axis=1)


def decisions(pairs: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision and recall of `missing` (score < threshold) over (present, absent) pairs."""
    said_missing = np.concatenate([pairs[:, 0], pairs[:, 1]]) < threshold
    truly_missing = np.concatenate([np.zeros(len(pairs), bool), np.ones(len(pairs), bool)])
    hits = float(np.sum(said_missing & truly_missing))
    return {
        "precision": hits / max(float(said_missing.sum()), 1.0),
        "recall": hits / max(float(truly_missing.sum()), 1.0),
        "accuracy": float(np.mean(said_missing == truly_missing)),
        "queries": float(len(pairs)),
        "present_median": float(np.median(pairs[:, 0])),
        "absent_median": float(np.median(pairs[:, 1])),
    }


def choose_threshold(pairs: np.ndarray) -> float:
    """The threshold that gets most decisions right; between two scores, their midpoint."""
    values = np.unique(pairs)
    cuts = np.concatenate([[values[0] - 1e-3], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-3]])
    accuracy = [decisions(pairs, float(cut))["accuracy"] for cut in cuts]
    return float(cuts[int(np.argmax(accuracy))])


def library_pairs(model: ClapModel, clips: Sequence[Clip]) -> np.ndarray:
    """The (present, absent) best scores of every label phrase of `clips` as a library."""
    from generative.clap.eval import embed_clips, library_queries

    library = [c for c in clips if c.variant in ("", "plain")]
    phrases, relevant = library_queries([set(c.labels) for c in library])
    keep = relevant.sum(axis=1) < len(library)  # a label every clip has cannot go missing
    audio = embed_clips(model, library)
    # As search asks them: expanded when the CLAP ships a query expansion.
    text = model.embed_query([p for p, k in zip(phrases, keep, strict=True) if k])
    return best_scores(text, audio, relevant[keep])


def calibrate_missing(
    corpus_dir: Path, checkpoint: Path, *, check_splits: Sequence[str] = CHECK_SPLITS
) -> dict[str, Any]:
    """Choose the threshold on val, measure it there and on `check_splits`, and write it
    beside the checkpoint. Returns what was written."""
    from generative.clap.eval import read_manifest, split_clips
    from generative.clap.load import load_clap

    model = load_clap(checkpoint)
    clips = read_manifest(corpus_dir)
    val = split_clips(clips, CALIBRATION_SPLIT)
    if not val:
        raise ValueError(f"the corpus in {corpus_dir} has no {CALIBRATION_SPLIT} clips")
    log.info("calibrating on %d %s clips", len(val), CALIBRATION_SPLIT)
    pairs = library_pairs(model, val)
    threshold = choose_threshold(pairs)
    report: dict[str, Any] = {
        **asdict(MissingThreshold(round(threshold, 4), model.model_id)),
        "score": "best CLAP cosine between the query and a library sound",
        "splits": {CALIBRATION_SPLIT: decisions(pairs, threshold)},
    }
    for split in check_splits:
        chosen = split_clips(clips, split)
        if chosen:
            log.info("checking on %d %s clips", len(chosen), split)
            report["splits"][split] = decisions(library_pairs(model, chosen), threshold)
    (Path(checkpoint) / MISSING_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"missing when the best CLAP cosine < {report['threshold']:.4f} "
        f"(chosen on {CALIBRATION_SPLIT}; CLAP {report['clap_model_id']})",
        "",
        "| split | queries | precision | recall | accuracy | median best, class present "
        "| median best, class missing |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for split, row in report["splits"].items():
        lines.append(
            f"| {split} | {row['queries']:.0f} | {row['precision']:.3f} | {row['recall']:.3f} "
            f"| {row['accuracy']:.3f} | {row['present_median']:.3f} | {row['absent_median']:.3f} |"
        )
    return "\n".join(lines)
