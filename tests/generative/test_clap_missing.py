"""The `missing` threshold: chosen on val pairs (class present / class taken out), stored with
the CLAP it was measured for, and used by text search as the best CLAP cosine's cut-off."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from generative.clap.missing import (
    MISSING_FILE,
    best_scores,
    calibrate_missing,
    choose_threshold,
    decisions,
    read_missing,
)


def unit(*rows: list[float]) -> np.ndarray:
    out = np.asarray(rows, dtype=np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_best_scores_take_the_relevant_clips_out_for_the_absent_score() -> None:
    audio = unit([1, 0, 0], [0.8, 0.6, 0], [0, 0, 1])
    text = unit([1, 0, 0], [0, 0, 1])
    relevant = np.asarray([[True, False, False], [False, False, True]])
    pairs = best_scores(text, audio, relevant)
    assert pairs[:, 0] == pytest.approx([1.0, 1.0])  # its own clip
    assert pairs[:, 1] == pytest.approx([0.8, 0.0])  # the nearest clip of another class


def test_the_threshold_separates_present_from_missing() -> None:
    pairs = np.asarray([[0.9, 0.4], [0.8, 0.5], [0.7, 0.3], [0.45, 0.6]])
    threshold = choose_threshold(pairs)
    assert threshold == pytest.approx(0.65)  # only the present 0.45 is then called missing
    measured = decisions(pairs, threshold)
    assert measured["accuracy"] == pytest.approx(7 / 8)
    assert measured["recall"] == 1.0 and measured["precision"] == pytest.approx(4 / 5)
    # Below 0.55: three of the four absent scores, and the present 0.45.
    at = decisions(pairs, 0.55)
    assert at["recall"] == pytest.approx(3 / 4) and at["precision"] == pytest.approx(3 / 4)
    assert decisions(pairs, 0.0)["recall"] == 0.0  # nothing is called missing


def write_corpus(root: Path) -> Path:
    """Val and test clips of three tone classes (two clips each), in the corpus format."""
    import soundfile as sf

    from tests.sounds import SAMPLE_RATE, tone

    (root / "audio").mkdir(parents=True)
    lines = []
    for split in ("val", "test"):
        for i in range(6):
            path = f"audio/{split}{i}.flac"
            sf.write(root / path, tone(i // 2, seconds=0.5), SAMPLE_RATE)
            label = ["low tone", "middle tone", "high tone"][i // 2]
            entry = {"id": f"{split}{i}", "path": path, "captions": [label], "labels": [label]}
            lines.append(json.dumps({**entry, "split": split, "duration": 0.5}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_calibration_is_written_beside_its_clap_and_only_read_for_it(
    tmp_path: Path,
    tiny_clap_dir: Path,
    tiny_clap: Any,
) -> None:
    checkpoint = tmp_path / "clap"
    shutil.copytree(tiny_clap_dir, checkpoint)
    report = calibrate_missing(write_corpus(tmp_path / "corpus"), checkpoint)
    assert set(report["splits"]) == {"val", "test"}  # no ood-real clips in this corpus
    assert report["splits"]["val"]["queries"] == 3
    stored = json.loads((checkpoint / MISSING_FILE).read_text())
    assert stored["clap_model_id"] == tiny_clap.model_id
    found = read_missing(checkpoint, tiny_clap.model_id)
    assert found is not None and found.threshold == stored["threshold"]
    assert found.missing(found.threshold - 0.01) is True and found.missing(None) is None
    assert read_missing(checkpoint, "clap-compact:another") is None
    (checkpoint / MISSING_FILE).write_text("{not json")
    assert read_missing(checkpoint, tiny_clap.model_id) is None
