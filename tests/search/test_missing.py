"""Text search says how well its best sound fits (`best_score`, the best CLAP cosine) and
whether the library seems to lack the sound (`missing`); `generate_if_missing` then starts a
generation job. Jobs wait in the embedded queue here; tests/workers/ runs them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.config import Settings
from search.api.main import create_app
from search.pipeline import find_text
from search.service import Foley
from tests.search.conftest import open_indexed

KEY = "k-0123456789"
QUERY = "a high tone"


def open_with(settings: Settings, clap: Any, library: Path, **update: Any) -> Foley:
    return open_indexed(settings.model_copy(update={"api_keys": KEY, **update}), clap, library)


@pytest.fixture
def foley(settings: Settings, library: Path, tiny_clap: Any) -> Iterator[Foley]:
    opened = open_with(settings, tiny_clap, library)
    yield opened
    opened.close()


def test_best_score_is_the_best_clap_cosine_in_the_filtered_library(foley: Foley) -> None:
    found = find_text(foley, QUERY, 3, rerank=False, mode="audio")
    vector = foley.clap.embed_text([QUERY])[0]
    with foley.catalog.session() as session:
        from core.catalog import Embedding

        rows = session.query(Embedding).all()
        cosines = [float(np.dot(vector, row.as_array())) for row in rows]
    assert found.best_score == pytest.approx(max(cosines), abs=1e-5)
    assert found.results[0].clap_score == pytest.approx(found.best_score)
    # Hybrid and reranked searches report the same first-stage score.
    assert find_text(foley, QUERY, 3).best_score == pytest.approx(found.best_score)
    assert find_text(foley, QUERY, 3, mode="words").best_score is None
    # The tiny CLAP has no calibrated threshold: nothing is said about missing.
    assert found.missing is None and foley.missing_threshold is None


def test_missing_follows_the_threshold(settings: Settings, library: Path, tiny_clap: Any) -> None:
    for threshold, expected in ((1.5, True), (-1.5, False)):
        opened = open_with(settings, tiny_clap, library, missing_threshold=threshold)
        try:
            assert find_text(opened, QUERY, 5).missing is expected
        finally:
            opened.close()


def test_generate_if_missing_queues_one_generation_job(
    settings: Settings, library: Path, tiny_clap: Any
) -> None:
    headers = {"X-API-Key": KEY}
    params = {"q": QUERY, "generate_if_missing": "true"}
    for threshold, generates in ((1.5, True), (-1.5, False)):
        foley = open_with(settings, tiny_clap, library, missing_threshold=threshold)
        try:
            with TestClient(create_app(foley=foley)) as client:
                assert client.get("/api/search", params=params).status_code == 401
                words = client.get("/api/search", params={**params, "mode": "words"},
                                   headers=headers)  # fmt: skip
                assert words.status_code == 422 and "mode" in words.text
                response = client.get("/api/search", params=params, headers=headers)
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["missing"] is generates and body["count"] > 0
                if not generates:
                    assert body["job"] is None and "location" not in response.headers
                    continue
                job = body["job"]
                assert response.headers["location"] == f"/api/jobs/{job['id']}"
                assert (job["kind"], job["status"]) == ("generate", "queued")
                assert job["params"]["prompt"] == QUERY and len(job["params"]["neighbour_ids"]) == 5
                # Without generate_if_missing the same search queues nothing.
                plain = client.get("/api/search", params={"q": QUERY}, headers=headers).json()
                assert plain["missing"] is True and plain["job"] is None
                jobs = client.get("/api/jobs", params={"kind": "generate"}, headers=headers)
                assert jobs.json()["count"] == 1
        finally:
            foley.close()
