"""Captioners for tests: a scripted one (any test), and the captioner model's own tiny random
one when this build has it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest


@dataclass
class Segment:
    start_s: float
    end_s: float
    caption: str


@dataclass
class Result:
    caption: str
    tags: list[str]
    segments: list[Segment] = field(default_factory=list)


@dataclass
class ScriptedCaptioner:
    """Says what a captioner would: a caption naming the title, three tags, and one segment
    caption per 10 s. Records what it was shown."""

    model_id: str = "scripted-captioner-1"
    sample_rate: int = 16_000
    seen: list[Mapping[str, Any]] = field(default_factory=list)
    rates: list[int] = field(default_factory=list)

    def caption(
        self, waves: Sequence[np.ndarray], metadata: Sequence[Mapping[str, Any] | None]
    ) -> list[Result]:
        out = []
        for wave, meta in zip(waves, metadata, strict=True):
            meta = dict(meta or {})
            self.seen.append(meta)
            seconds = len(wave) / self.sample_rate
            starts = np.arange(0.0, max(seconds, 1e-9), 10.0)
            segments = [
                Segment(float(s), float(min(s + 10.0, seconds)), f"part {i} of a whistle")
                for i, s in enumerate(starts)
            ]
            out.append(
                Result(
                    f"a whistling kettle, filed as {meta.get('title', '')}",
                    ["Kettle", "whistle", "kitchen sounds"],
                    segments,
                )
            )
        return out


def tiny_model_captioner(clap: Any) -> Any:
    """The captioner model's tiny random Captioner over `clap`, or skip the test."""
    try:
        from generative.captioner.pipeline import build_random_captioner  # type: ignore
    except ImportError as exc:
        pytest.skip(
            f"the captioner model is not in this build yet ({exc}): "
            "the upload-with-a-real-captioner test needs generative.captioner.pipeline"
        )
    return build_random_captioner(clap, seed=0)
