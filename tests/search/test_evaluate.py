"""The search evaluation hook on a tiny corpus: a throw-away library, the library protocol
per mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from core.config import Settings
from search.evaluate import EvalClip, evaluate_search, evaluate_split, format_table
from tests.sounds import SAMPLE_RATE, tone

LABELS = ("church bell", "rain", "door")


def tiny_corpus(root: Path) -> list[EvalClip]:
    """Twelve clips, four per label; the generated words name the label for all but the
    last clip of each label, which a captioner mistook for the next label."""
    clips = []
    for i in range(12):
        label = LABELS[i % 3]
        path = root / "audio" / f"{i:04d}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone(i, 1.0), SAMPLE_RATE)
        said = label if i < 9 else LABELS[(i + 1) % 3]
        clips.append(EvalClip(f"c{i}", path, (label,), f"the sound of {said}", (said.split()[-1],)))
    return clips


def test_the_library_protocol_in_each_mode(
    settings: Settings, tiny_clap: Any, tmp_path: Path
) -> None:
    clips = tiny_corpus(tmp_path / "corpus")
    results = evaluate_search(clips, tiny_clap, settings=settings, workdir=tmp_path)
    assert list(results) == ["audio", "words", "hybrid"]
    for metrics in results.values():
        assert metrics["lib_queries"] == 3 and metrics["lib_sounds"] == 12
        assert metrics["lib_random_P@10"] == pytest.approx(4 / 12)
        # Four relevant clips in the top ten at best.
        assert 0.0 <= metrics["lib_P@10"] <= 0.4 + 1e-9
    # Words: three of each label's four clips say it, and only those are found.
    assert results["words"]["lib_P@10"] == pytest.approx(0.3)
    # Hybrid: those three come first (in both lists), the rest in CLAP order.
    assert results["hybrid"]["lib_P@10"] >= 0.3
    assert list(tmp_path.glob("foley-eval-*")) == []  # the throw-away library is gone
    table = format_table(results)
    assert table.count("\n") == 4 and "| words | 0.300 |" in table


def test_a_split_of_a_corpus_with_generated_captions(
    settings: Settings, tiny_clap: Any, tmp_path: Path
) -> None:
    root = tmp_path / "corpus"
    clips = tiny_corpus(root)
    with (root / "manifest.jsonl").open("w") as handle:
        for i, clip in enumerate(clips):
            row = {
                "id": clip.id,
                "path": str(clip.path.relative_to(root)),
                "captions": ["unused"],
                "labels": list(clip.labels),
                "split": "test" if i < 6 else "train",
            }
            handle.write(json.dumps(row) + "\n")
    captions = {c.id: {"caption": c.caption, "tags": list(c.tags)} for c in clips}
    results = evaluate_split(root, "test", tiny_clap, captions, settings=settings, modes=["words"])
    assert list(results) == ["words"]
    assert results["words"]["lib_sounds"] == 6
    # Two clips per label, both described correctly and both found; six sounds in all, so
    # "@10" looks at six of them: P@10 = 2/6.
    assert results["words"]["lib_P@10"] == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="no clips"):
        evaluate_split(root, "val", tiny_clap, captions, settings=settings)
