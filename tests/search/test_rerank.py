"""Search with DiffATR reranking: a tiny random checkpoint fitted to the tiny CLAP, a real
catalog and Qdrant Edge index, through the pipeline and the API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.config import Settings
from index_builder.runner import index_library
from search.api.main import create_app
from search.pipeline import find_text
from search.rerank import rerank_results, text_reranker
from search.service import Foley
from tests.search.conftest import settings_with


@pytest.fixture
def foley(foley_with_reranker: Foley) -> Foley:
    return foley_with_reranker


def test_rerank_keeps_every_candidate_once(foley: Foley) -> None:
    reranker, status = text_reranker(foley)
    assert reranker is not None, status
    plain = find_text(foley, "a metallic clang", 30, rerank=False, mode="audio").results
    query = foley.clap.embed_text(["a metallic clang"])[0]
    reranked = rerank_results(foley, reranker, query, plain)
    assert sorted(r.id for r in reranked) == sorted(r.id for r in plain)
    assert len({r.id for r in reranked}) == len(plain) == 30
    scores = [r.score for r in reranked]
    assert scores == sorted(scores, reverse=True)
    clap = {r.id: r.clap_score for r in plain}
    assert all(r.clap_score == clap[r.id] for r in reranked)
    # final = CLAP + alpha x probability; the probabilities over the 30 sum to one.
    boost = sum(r.score - (r.clap_score or 0.0) for r in reranked)
    assert boost == pytest.approx(reranker.config.alpha, abs=1e-4)

    from search.rerank import rerank_scores

    rng = np.random.default_rng(0)
    audio = rng.standard_normal((12, foley.clap.dim)).astype(np.float32)
    audio /= np.linalg.norm(audio, axis=1, keepdims=True)
    clap_scores = audio @ audio[3]
    final = rerank_scores(reranker, audio[3], audio, clap_scores)
    probs = (final - clap_scores) / reranker.config.alpha
    assert probs.min() > 0 and probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert rerank_scores(reranker, audio[3], audio[:0], clap_scores[:0]).shape == (0,)


def test_search_with_and_without_rerank(client: TestClient, foley: Foley) -> None:
    audio = {"mode": "audio"}
    plain = client.get("/api/search", params={"q": "rain", "k": 30, "rerank": "false", **audio})
    plain = plain.json()
    assert plain["count"] == 30
    assert all(hit["score"] == hit["clap_score"] for hit in plain["data"])
    assert [h["score"] for h in plain["data"]] == sorted(
        (h["score"] for h in plain["data"]), reverse=True
    )

    body = client.get("/api/search", params={"q": "rain", "k": 8, **audio}).json()
    assert body["count"] == 8
    hits = body["data"]
    assert all(hit["score"] > hit["clap_score"] for hit in hits)  # every probability > 0
    finals = [hit["score"] for hit in hits]
    assert finals == sorted(finals, reverse=True)
    clap = {hit["id"]: hit["clap_score"] for hit in plain["data"]}
    assert all(hit["clap_score"] == pytest.approx(clap[hit["id"]]) for hit in hits)
    # The k results are the best of the reranked top N, not the CLAP top k reordered.
    everything = client.get("/api/search", params={"q": "rain", "k": 30, **audio}).json()["data"]
    assert [h["id"] for h in everything[:8]] == [h["id"] for h in hits]
    assert len({h["id"] for h in everything}) == 30
    # Hybrid (the default) fuses the reranked CLAP list: no sound's words say "rain", so its
    # order is exactly the reranked one, each hit keeping its CLAP score and rank.
    hybrid = client.get("/api/search", params={"q": "rain", "k": 8}).json()["data"]
    assert [h["id"] for h in hybrid] == [h["id"] for h in hits]
    assert [h["audio_rank"] for h in hybrid] == list(range(1, 9))
    assert all(h["words_rank"] is None for h in hybrid)
    assert [h["clap_score"] for h in hybrid] == [h["clap_score"] for h in hits]

    reranker = client.get("/api/health").json()["reranker"]
    assert reranker["loaded"] is True
    assert reranker["alpha"] == 0.5 and reranker["steps"] == 2
    assert reranker["checkpoint"] == str(foley.settings.diffatr_checkpoint)


def test_search_works_without_a_checkpoint(
    settings: Settings,
    library: Path,
    tiny_clap,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    missing = settings_with(monkeypatch, tmp_path / "no-such-folder")
    opened = Foley.open(missing, clap=tiny_clap)
    try:
        index_library(opened.catalog, tiny_clap, library, opened.limits)
        opened.sync()
        with TestClient(create_app(foley=opened)) as client:
            health = client.get("/api/health").json()
            params = {"q": "rain", "k": 5, "mode": "audio"}
            hits = client.get("/api/search", params=params).json()["data"]
    finally:
        opened.close()
    assert health["reranker"]["loaded"] is False
    assert "no checkpoint" in health["reranker"]["status"]
    assert health["status"] == "ok"
    assert len(hits) == 5 and all(h["score"] == h["clap_score"] for h in hits)


def test_a_reranker_for_another_clap_is_not_used(
    settings: Settings,
    tiny_clap,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    from generative.diffatr.model import DiffATRConfig, build_denoiser, save_diffatr

    config = DiffATRConfig(feature_dim=tiny_clap.dim, width=8, heads=2, clap_model_id="other")
    checkpoint = save_diffatr(build_denoiser(config), config, tmp_path / "other")
    opened = Foley.open(settings_with(monkeypatch, checkpoint), clap=tiny_clap)
    try:
        reranker, status = text_reranker(opened)
    finally:
        opened.close()
    assert reranker is None and "other" in status
