"""Micro-batched search under real concurrency: many threads, the batching workers, and every
caller gets the results its own query gets alone, in the same order."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.config import Settings
from search.api.main import create_app
from search.batching import BatchedSearches
from search.pipeline import find_text, start_query_batching
from search.results import SoundResult
from search.service import Foley
from tests.search.conftest import open_indexed

QUERIES = [
    "a metallic clang", "soft rain", "a low hum", "a bright chirp", "white noise burst",
    "a pulsing tone", "a siren far away", "footsteps", "a door slam", "wind",
    "a buzzing insect", "a bell", "glass", "an engine", "water", "a click",
]  # fmt: skip


@pytest.fixture
def foley(foley_with_reranker: Foley) -> Foley:
    return foley_with_reranker


def ranked(results: list[SoundResult]) -> tuple[list[int], np.ndarray]:
    return [r.id for r in results], np.asarray([r.score for r in results])


def alone(foley: Foley, mode: str) -> dict[str, tuple[list[int], np.ndarray]]:
    """Each query's results when it runs by itself, unbatched."""
    assert foley.searches is None
    return {q: ranked(find_text(foley, q, 10, rerank=True, mode=mode).results) for q in QUERIES}


def in_threads(threads: int, work) -> list[BaseException]:  # noqa: ANN001
    """Run work(i) in `threads` threads released together; the exceptions they raised."""
    start, errors = threading.Barrier(threads), []

    def body(i: int) -> None:
        start.wait()
        try:
            work(i)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    pool = [threading.Thread(target=body, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return errors


@pytest.mark.parametrize("mode", ["audio", "hybrid"])
def test_concurrent_searches_each_get_their_own_results_in_order(foley: Foley, mode: str) -> None:
    expected = alone(foley, mode)
    start_query_batching(foley)
    searches = foley.searches
    assert isinstance(searches, BatchedSearches)
    assert len(searches.batcher._threads) == foley.settings.search_workers == 2
    got: dict[tuple[int, int], tuple[str, tuple[list[int], np.ndarray]]] = {}

    def work(i: int) -> None:
        for n in range(4):  # each thread its own queries, in its own order
            query = QUERIES[(i * 5 + n * 3) % len(QUERIES)]
            got[i, n] = query, ranked(find_text(foley, query, 10, rerank=True, mode=mode).results)

    assert in_threads(24, work) == []
    assert len(got) == 24 * 4
    for query, (ids, scores) in got.values():
        want_ids, want_scores = expected[query]
        assert ids == want_ids, query
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
    # Every search went through the batcher, and batches held several.
    assert searches.batcher.items == 24 * 4
    assert searches.batcher.batches < 24 * 4


def test_concurrent_api_searches_and_a_full_queue(foley: Foley) -> None:
    expected = alone(foley, "hybrid")
    with TestClient(create_app(foley=foley)) as client:
        assert isinstance(foley.searches, BatchedSearches)
        got: dict[int, tuple[str, list[int]]] = {}

        def work(i: int) -> None:
            query = QUERIES[i % len(QUERIES)]
            response = client.get("/api/search", params={"q": query, "k": 10})
            assert response.status_code == 200, response.text
            got[i] = query, [hit["id"] for hit in response.json()["data"]]

        assert in_threads(32, work) == []
        assert all(ids == expected[query][0] for query, ids in got.values())
        health = client.get("/api/health").json()["search"]
        assert health["batching"] is True and health["in_flight"] == 0
        assert health["batched_calls"] >= 32

        # A full queue: the answer is a 503 naming the problem, with Retry-After.
        queue = client.app.state.search_queue  # type: ignore[attr-defined]
        queue.in_flight = queue.size
        try:
            busy = client.get("/api/search", params={"q": "a bell"})
        finally:
            queue.in_flight = 0
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["error"] == "busy" and "in flight" in busy.json()["detail"]
        assert client.get("/api/search", params={"q": "a bell"}).status_code == 200
        operation = client.get("/openapi.json").json()["paths"]["/api/search"]["get"]
        assert "Retry-After" in operation["responses"]["503"]["description"]
    assert foley.searches is None  # stopped with the app


def test_batching_can_be_turned_off(
    settings: Settings,
    library: Path,
    tiny_clap,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    monkeypatch.setenv("FOLEY_SEARCH_BATCHING", "false")
    from core.config import get_settings

    get_settings.cache_clear()
    opened = open_indexed(get_settings(), tiny_clap, library)
    try:
        with TestClient(create_app(foley=opened)) as client:
            assert client.get("/api/search", params={"q": "a bell"}).status_code == 200
            assert client.get("/api/health").json()["search"]["batching"] is False
    finally:
        opened.close()
