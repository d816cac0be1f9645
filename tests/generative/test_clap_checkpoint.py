"""The committed compact CLAP: it loads, and describes synthesized sounds by their class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.audio import DecodeLimits, decode
from core.config import DEFAULT_MODELS_DIR
from generative.corpus.build import build_corpus

CHECKPOINT = DEFAULT_MODELS_DIR / "clap-compact"
# Candidates: the first clip of each class in the small corpus. Prompts: classes the card's
# zero-shot numbers say the model knows, asked as a library search asks (the label phrase
# alone, as in `foley eval clap`'s library protocol); each must rank its own clip first of all
# twelve.
CANDIDATES = (
    "siren",
    "applause",
    "ocean waves",
    "car engine",
    "doorbell",
    "whistle",
    "sawing",
    "gunshot",
    "rain",
    "church bell",
    "speech",
    "drums",
)
PROMPTS = (
    "siren",
    "applause",
    "ocean waves",
    "car engine",
    "whistle",
    "sawing",
    "gunshot",
    "speech",
)
LIMITS = DecodeLimits(max_bytes=10**8, max_duration_s=60, max_sample_rate=48_000, max_channels=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small-corpus")
    build_corpus(out, "small", seed=0, progress=False)
    return out


def test_committed_checkpoint_ranks_the_prompts_classes_first(corpus: Path) -> None:
    from generative.clap.load import load_clap

    model = load_clap(CHECKPOINT)
    assert model.model_id.startswith("clap-compact:") and model.sample_rate == 16_000
    rows = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]
    first = {}
    for row in rows:
        first.setdefault(row["labels"][0], row)
    waves = [
        decode(corpus / first[name]["path"], target_sr=model.sample_rate, limits=LIMITS)[0]
        for name in CANDIDATES
    ]
    audio = model.embed_audio(waves)  # (12, D)
    text = model.embed_text(list(PROMPTS))  # (8, D)
    sims = text @ audio.T  # (8, D) @ (D, 12) -> (8, 12)
    ranked_first = [CANDIDATES[i] for i in sims.argmax(axis=1)]
    # CPUs with native bfloat16 run the audio branch in bf16, others in float32; a close call
    # may flip between the two, so one prompt may rank its class second, never lower.
    hits = sum(got == want for got, want in zip(ranked_first, PROMPTS, strict=True))
    assert hits >= len(PROMPTS) - 1, ranked_first
    rank = [(sims[p] > sims[p, CANDIDATES.index(name)]).sum() for p, name in enumerate(PROMPTS)]
    assert max(rank) <= 1, dict(zip(PROMPTS, rank, strict=True))
    assert np.allclose(np.linalg.norm(audio, axis=1), 1.0, atol=1e-5)
