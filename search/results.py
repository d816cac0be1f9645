"""What a search returns: one row per sound, with its final and first-stage scores."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SoundResult:
    id: int
    score: float
    title: str
    duration: float
    tags: list[str]
    source: str
    caption: str | None
    format: str
    audio_url: str
    extra: dict[str, float] = field(default_factory=dict)
    # The first-stage CLAP similarity; `score` is the final one (equal without reranking).
    clap_score: float | None = None
