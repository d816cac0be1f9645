"""Rate limits: separate budgets per key (or address), 429 with Retry-After, shared in Redis."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.config import Settings
from tests.search.test_uploads import make_client, wav_bytes

KEY_A, KEY_B = "key-a-0123456789", "key-b-0123456789"


def limited(settings: Settings, **limits: str) -> Settings:
    return settings.model_copy(update={"api_keys": f"{KEY_A},{KEY_B}", **limits})


@pytest.fixture
def tight(settings: Settings, tiny_clap: Any) -> Iterator[TestClient]:
    yield from make_client(
        limited(
            settings,
            rate_limit_search="3/minute",
            rate_limit_uploads="2/minute",
            rate_limit_generation="1/minute",
        ),
        tiny_clap,
    )


def search(client: TestClient, key: str | None = None) -> Any:
    headers = {"X-API-Key": key} if key else {}
    return client.get("/api/search", params={"q": "rain", "mode": "words"}, headers=headers)


def assert_limited(response: Any, budget: str) -> int:
    assert response.status_code == 429
    body = response.json()
    assert body["error"] == "rate_limited" and budget in body["detail"]
    wait = int(response.headers["retry-after"])
    assert 1 <= wait <= 60
    return wait


def test_search_budget_then_429_with_retry_after(tight: TestClient) -> None:
    assert [search(tight).status_code for _ in range(3)] == [200, 200, 200]
    assert_limited(search(tight), "search")
    audio = tight.post("/api/search/audio", files={"file": ("a.wav", wav_bytes(1))})
    assert_limited(audio, "search")  # one budget for both kinds of search
    # The other budgets are untouched.
    upload = tight.post(
        "/api/uploads", files={"files": ("a.wav", wav_bytes(1))}, headers={"X-API-Key": KEY_A}
    )
    assert upload.status_code == 202
    assert tight.get("/api/jobs").status_code == 200  # listing is not limited


def test_each_key_has_its_own_budget_and_invented_keys_spend_the_address(
    tight: TestClient,
) -> None:
    assert [search(tight, KEY_A).status_code for _ in range(3)] == [200] * 3
    assert_limited(search(tight, KEY_A), "search")
    assert search(tight, KEY_B).status_code == 200
    assert search(tight).status_code == 200  # the address's own budget
    # A key the server does not know counts against the address, not a fresh budget.
    assert [search(tight, f"invented-{i}").status_code for i in range(3)] == [200, 200, 429]


def test_upload_and_generation_budgets(tight: TestClient) -> None:
    headers = {"X-API-Key": KEY_A}
    files = {"files": ("a.wav", wav_bytes(2))}
    statuses = [tight.post("/api/uploads", files=files, headers=headers).status_code]
    statuses.append(tight.post("/api/uploads", files=files, headers=headers).status_code)
    assert statuses == [202, 202]
    assert_limited(tight.post("/api/uploads", files=files, headers=headers), "uploads")
    # Library scans add sounds too: same budget.
    assert_limited(tight.post("/api/libraries/1/scan", headers=headers), "uploads")
    assert tight.post("/api/sounds/999/caption", headers=headers).status_code == 404
    assert_limited(tight.post("/api/sounds/999/caption", headers=headers), "generation")
    other = {"X-API-Key": KEY_B}
    assert tight.post("/api/uploads", files=files, headers=other).status_code == 202


def test_waiting_retry_after_is_enough(settings: Settings, tiny_clap: Any) -> None:
    # A window long enough that a busy machine still fits three requests in it.
    for client in make_client(limited(settings, rate_limit_search="2/30 seconds"), tiny_clap):
        assert [search(client).status_code for _ in range(2)] == [200, 200]
        wait = assert_limited(search(client), "search")
        time.sleep(wait)
        assert search(client).status_code == 200


def test_an_empty_limit_means_no_limit(settings: Settings, tiny_clap: Any) -> None:
    for client in make_client(limited(settings, rate_limit_search=""), tiny_clap):
        assert {search(client).status_code for _ in range(30)} == {200}


def test_bad_limit_settings_are_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="300/minute"):
        Settings(data_dir=settings.data_dir, rate_limit_search="lots")
    with pytest.raises(ValueError, match="memory://"):
        Settings(data_dir=settings.data_dir, rate_limit_storage="postgresql://x/y")


def test_unreachable_storage_lets_requests_through(settings: Settings, tiny_clap: Any) -> None:
    down = limited(
        settings, rate_limit_search="1/minute", rate_limit_storage="redis://127.0.0.1:1/0"
    )
    for client in make_client(down, tiny_clap):
        assert [search(client).status_code for _ in range(3)] == [200, 200, 200]


def test_redis_budget_is_shared_by_api_processes(settings: Settings, tiny_clap: Any) -> None:
    redis_url = os.environ.get("FOLEY_TEST_REDIS_URL")
    if not redis_url:
        pytest.skip("FOLEY_TEST_REDIS_URL is not set: the shared Redis budget is not tested")
    shared = limited(
        settings,
        rate_limit_search="4/minute",
        rate_limit_storage=redis_url,
        broker_key_prefix=f"test-{uuid.uuid4().hex[:8]}-",
    )
    with ExitStack() as stack:
        # Two apps, as two API processes behind one address would be.
        first = stack.enter_context(_client(shared, tiny_clap))
        second = stack.enter_context(_client(shared.model_copy(), tiny_clap, first))
        statuses = [search(c, KEY_A).status_code for c in (first, second, first, second)]
        assert statuses == [200] * 4
        assert_limited(search(second, KEY_A), "search")
        assert_limited(search(first, KEY_A), "search")


def _client(settings: Settings, clap: Any, share: TestClient | None = None) -> Any:
    from contextlib import contextmanager

    from search.api.main import create_app

    @contextmanager
    def opened() -> Iterator[TestClient]:
        if share is None:
            yield from make_client(settings, clap)
            return
        # A second app over the same Foley: the embedded index belongs to one process.
        with TestClient(create_app(foley=share.app.state.foley)) as client:  # type: ignore[attr-defined]
            yield client

    return opened()
