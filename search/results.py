"""What a search returns: one row per sound, with its final and first-stage scores."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Ranked:
    """A sound's place in a ranking, before its catalog row is read: ranking, reranking and
    fusion work on these, and only the k that are returned become `SoundResult`s."""

    id: int
    score: float
    clap_score: float | None = None
    words_score: float | None = None
    audio_rank: int | None = None
    words_rank: int | None = None


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
    # The full-text relevance (BM25 or ts_rank) when the sound's words matched the query.
    words_score: float | None = None
    # In a fused (hybrid) list: the sound's rank in each list it was in (1 = first).
    audio_rank: int | None = None
    words_rank: int | None = None
