"""Property-based tests (Hypothesis): whatever a client sends as query parameters, file names
or library paths, the API answers 2xx or 4xx with `{error, detail}`, never 500, and never
lets a path lead outside where it belongs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench.services import fresh_postgres_database
from core.config import Settings
from core.roots import PathRefused, check_library_folder
from index_builder.uploads import client_filename
from search.api.main import create_app
from tests.search.conftest import open_indexed
from tests.search.test_uploads import wav_bytes
from tests.sounds import write_library

KEY = "prop-key-0123456789"
# The machine may be busy: judge answers, not speed.
PROPERTIES = settings(
    max_examples=60,
    # the same examples in every run, so CI is repeatable; new finds become @example lines
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The catalog back end: PostgreSQL refuses some text SQLite takes (NUL characters)."""
    if request.param == "sqlite":
        yield None
        return
    base = os.environ.get("FOLEY_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("FOLEY_TEST_POSTGRES_URL is not set: PostgreSQL property tests skipped")
    with fresh_postgres_database(base) as url:
        yield url


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_clap_dir: Path,
    tiny_clap: Any,
    database_url: str | None,
) -> Any:
    """An API over a small indexed library, with a library root holding two folders."""
    base = tmp_path_factory.mktemp("properties")
    root = base / "root"
    write_library(root / "lib", count=6, seconds=0.5)
    (root / "other").mkdir()
    (root / "escape").symlink_to(base, target_is_directory=True)
    configured = Settings(
        data_dir=base / "data",
        clap_checkpoint=tiny_clap_dir,
        api_keys=KEY,
        library_roots=str(root),
        rate_limit_search="",
        rate_limit_uploads="",
        database_url=database_url,
    )
    foley = open_indexed(configured, tiny_clap, root / "lib")
    with TestClient(create_app(foley=foley)) as client:
        yield client, root
    foley.close()


def assert_answer(response: Any, allowed: set[int]) -> None:
    assert response.status_code in allowed, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error", "detail"} and body["error"] and body["detail"]


junk = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", " ", "nan", "-0", "1e309", "0x10", "true", "%00", "\x00", "10;drop"]),
)


@PROPERTIES
@given(
    q=st.text(max_size=1200),
    k=st.one_of(st.integers(min_value=-5, max_value=500), junk),
    mode=st.one_of(st.sampled_from(["hybrid", "audio", "words"]), junk),
    min_duration=st.one_of(st.none(), st.floats(allow_nan=True), junk),
    max_duration=st.one_of(st.none(), st.floats(allow_nan=True), junk),
    source=st.one_of(st.none(), st.sampled_from(["library", "upload"]), junk),
    tags=st.lists(st.text(max_size=20), max_size=4),
    rerank=st.one_of(st.booleans().map(str), junk),
)
def test_search_parameters(
    world: Any,
    q: str,
    k: Any,
    mode: Any,
    min_duration: Any,
    max_duration: Any,
    source: Any,
    tags: list[str],
    rerank: str,
) -> None:
    client, _ = world
    params: dict[str, Any] = {"q": q, "k": k, "mode": mode, "rerank": rerank, "tag": tags}
    for name, value in (("min_duration", min_duration), ("max_duration", max_duration)):
        if value is not None:
            params[name] = value
    if source is not None:
        params["source"] = source
    response = client.get("/api/search", params=params)
    assert_answer(response, {200, 422})
    if response.status_code == 200:
        body = response.json()
        assert body["count"] == len(body["data"]) <= int(k)
        scores = [hit["score"] for hit in body["data"]]
        assert scores == sorted(scores, reverse=True)


@PROPERTIES
@given(
    skip=st.one_of(st.integers(min_value=-10, max_value=2**40), junk),
    limit=st.one_of(st.integers(min_value=-10, max_value=2**40), junk),
    status=st.one_of(st.sampled_from(["queued", "failed"]), junk),
)
def test_listing_parameters(world: Any, skip: Any, limit: Any, status: Any) -> None:
    client, _ = world
    assert_answer(client.get("/api/sounds", params={"skip": skip, "limit": limit}), {200, 422})
    jobs = client.get("/api/jobs", params={"skip": skip, "limit": limit, "status": status})
    assert_answer(jobs, {200, 422})


segment = st.one_of(
    st.sampled_from(
        ["..", ".", "lib", "other", "escape", "etc", "%2e%2e", "%2F", "..%2F", "\\..", "~", ""]
    ),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
)


@PROPERTIES
@given(
    parts=st.lists(segment, max_size=6),
    start=st.sampled_from(["root", "/", "/etc", "relative", "//", "~"]),
    nul=st.booleans(),
)
def test_library_paths_never_lead_out(world: Any, parts: list[str], start: str, nul: bool) -> None:
    client, root = world
    head = {"root": str(root), "relative": "lib"}.get(start, start)
    path = "/".join([head, *parts]) + ("\x00" if nul else "")
    response = client.post("/api/libraries", json={"path": path}, headers={"X-API-Key": KEY})
    assert_answer(response, {200, 201, 400, 403, 422})
    if response.status_code in (200, 201):
        registered = Path(response.json()["path"])
        assert registered.resolve().is_relative_to(root.resolve())
        assert registered.is_dir() and not nul


@PROPERTIES
@given(raw=st.text(max_size=60))
def test_sound_paths(world: Any, raw: str) -> None:
    client, _ = world
    from urllib.parse import quote

    for url in (f"/api/sounds/{quote(raw, safe='')}", f"/api/sounds/{quote(raw, safe='')}/audio"):
        response = client.get(url)
        assert_answer(response, {200, 206, 404, 405, 422})
        if response.headers["content-type"].startswith("audio/"):
            int(raw)  # only a real sound id serves a file


@PROPERTIES
@given(
    title=st.one_of(st.none(), st.text(max_size=600)),
    caption=st.one_of(st.none(), st.text(max_size=50)),
    tags=st.one_of(st.none(), st.lists(st.text(max_size=12), max_size=35)),
)
def test_word_edits(world: Any, title: Any, caption: Any, tags: Any) -> None:
    client, _ = world
    body = {
        name: value
        for name, value in (("title", title), ("caption", caption), ("tags", tags))
        if value is not None
    }
    response = client.patch("/api/sounds/1", json=body, headers={"X-API-Key": KEY})
    assert_answer(response, {200, 422})


@PROPERTIES
@given(raw=st.one_of(st.none(), st.text(max_size=400)))
def test_client_filenames_are_base_names(raw: str | None) -> None:
    name = client_filename(raw)
    assert name and len(name) <= 255
    assert "/" not in name and "\\" not in name and name not in (".", "..")
    assert all(ch.isprintable() for ch in name)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.text(max_size=300))
def test_upload_names_never_place_files(world: Any, name: str) -> None:
    client, _ = world
    files = {"files": (name or "x", wav_bytes(4))}
    response = client.post("/api/uploads", files=files, headers={"X-API-Key": KEY})
    assert_answer(response, {202, 422})
    if response.status_code == 202:
        job = response.json()["data"][0]
        stored = client.app.state.foley.settings.store_path  # type: ignore[attr-defined]
        assert (stored / job["params"]["stored"]).resolve().is_relative_to(stored.resolve())
        assert "/" not in job["params"]["filename"]


@PROPERTIES
@given(raw=st.text(max_size=80))
@example(raw="~0")  # a user this machine does not have: once a RuntimeError from pathlib
def test_check_library_folder_total(raw: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.getbasetemp()
    try:
        folder = check_library_folder(raw, [root])
    except PathRefused as refused:
        assert refused.status in (400, 403)
    else:
        assert folder.is_dir() and folder.is_relative_to(root.resolve())
