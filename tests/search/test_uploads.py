"""The write API without a worker: checks made before a job is queued, API keys, listing.

Jobs submitted here wait in the embedded queue; tests/workers/ runs them.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import soundfile as sf
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.config import Settings
from search.api.main import create_app
from search.service import Foley
from tests.sounds import SAMPLE_RATE, tone

KEY = "k-0123456789"


def wav_bytes(kind: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(kind), SAMPLE_RATE, format="WAV")
    return buffer.getvalue()


def stored_files(settings: Settings) -> list[Path]:
    return sorted(p for p in settings.store_path.rglob("*") if p.is_file())


def app_settings(client: TestClient) -> Settings:
    settings: Settings = cast(FastAPI, client.app).state.foley.settings
    return settings


def make_client(settings: Settings, clap: Any) -> Iterator[TestClient]:
    foley = Foley.open(settings, clap=clap)
    try:
        with TestClient(create_app(foley=foley)) as client:
            yield client
    finally:
        foley.close()


@pytest.fixture
def keyed(settings: Settings, tiny_clap: Any) -> Iterator[TestClient]:
    yield from make_client(
        settings.model_copy(
            update={
                "api_keys": f"{KEY}, other-key",
                "max_file_bytes": 200_000,
                "library_roots": str(settings.data_dir.parent),  # the test's tmp_path
            }
        ),
        tiny_clap,
    )


def test_writes_need_a_key_reads_do_not(keyed: TestClient) -> None:
    files = {"files": ("a.wav", wav_bytes(1))}
    missing = keyed.post("/api/uploads", files=files)
    assert missing.status_code == 401
    assert missing.json()["error"] == "unauthorized" and "X-API-Key" in missing.json()["detail"]
    wrong = keyed.post("/api/uploads", files=files, headers={"X-API-Key": "guess"})
    assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"
    ok = keyed.post("/api/uploads", files=files, headers={"X-API-Key": KEY})
    assert ok.status_code == 202
    bearer = keyed.post("/api/uploads", files=files, headers={"Authorization": "Bearer other-key"})
    assert bearer.status_code == 202
    for method, path in (
        ("post", "/api/libraries"),
        ("post", "/api/libraries/1/scan"),
        ("delete", f"/api/jobs/{ok.json()['data'][0]['id']}"),
    ):
        assert keyed.request(method, path).status_code == 401, path
    assert keyed.get("/api/jobs").status_code == 200
    assert keyed.get("/api/search", params={"q": "rain"}).status_code == 200


def test_reads_can_require_a_key(settings: Settings, tiny_clap: Any) -> None:
    closed = settings.model_copy(update={"api_keys": KEY, "read_requires_key": True})
    for client in make_client(closed, tiny_clap):
        assert client.get("/api/jobs").status_code == 401
        assert client.get("/api/search", params={"q": "rain"}).status_code == 401
        assert client.get("/api/sounds").status_code == 401
        assert client.get("/api/jobs", headers={"X-API-Key": KEY}).status_code == 200
        assert client.get("/api/health").status_code == 200


def test_without_keys_writes_are_open_and_a_warning_is_logged(
    settings: Settings, tiny_clap: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="search.api.main"):
        for client in make_client(settings, tiny_clap):
            response = client.post("/api/uploads", files={"files": ("a.wav", wav_bytes(2))})
            assert response.status_code == 202
    assert any("FOLEY_API_KEYS is empty" in r.getMessage() for r in caplog.records)


def test_upload_returns_a_job_per_file_with_location(keyed: TestClient) -> None:
    files = [
        ("files", ("Rain On Tin.wav", wav_bytes(3))),
        ("files", ("notes.wav", b"these are not samples " * 40)),
    ]
    response = keyed.post("/api/uploads", files=files, headers={"X-API-Key": KEY})
    assert response.status_code == 202
    body = response.json()
    assert body["count"] == 2
    good, bad = body["data"]
    assert response.headers["location"] == f"/api/jobs/{good['id']}" == good["url"]
    assert (good["kind"], good["status"], good["params"]["filename"]) == (
        "upload",
        "queued",
        "Rain On Tin.wav",
    )
    assert bad["status"] == "failed" and bad["error"].startswith("notes.wav is not a WAV")
    # Only the good file is stored, under its hash.
    (stored,) = stored_files(app_settings(keyed))
    assert stored.name == f"{good['params']['content_hash']}.wav"
    polled = keyed.get(good["url"]).json()
    assert polled["id"] == good["id"] and polled["status"] == "queued"


def test_too_large_is_413_and_nothing_is_kept(keyed: TestClient) -> None:
    big = b"\0" * 200_001
    response = keyed.post(
        "/api/uploads",
        files=[("files", ("small.wav", wav_bytes(4))), ("files", ("big.wav", big))],
        headers={"X-API-Key": KEY},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "too_large" and "big.wav" in response.json()["detail"]
    assert keyed.get("/api/jobs").json()["count"] == 0
    assert stored_files(app_settings(keyed)) == []


def test_job_listing_filters_and_validates(keyed: TestClient) -> None:
    headers = {"X-API-Key": KEY}
    files = [("files", (f"c{i}.wav", wav_bytes(10 + i))) for i in range(3)]
    files.append(("files", ("bad.wav", b"nope" * 100)))
    assert keyed.post("/api/uploads", files=files, headers=headers).status_code == 202
    queued = keyed.get("/api/jobs", params={"status": "queued", "kind": "upload"}).json()
    assert queued["count"] == 3 and all(j["status"] == "queued" for j in queued["data"])
    failed = keyed.get("/api/jobs", params={"status": "failed"}).json()
    assert failed["count"] == 1 and failed["data"][0]["params"]["filename"] == "bad.wav"
    assert keyed.get("/api/jobs", params={"kind": "scan"}).json() == {"data": [], "count": 0}
    page = keyed.get("/api/jobs", params={"limit": 2}).json()
    assert page["count"] == 4 and len(page["data"]) == 2
    invalid = keyed.get("/api/jobs", params={"status": "sleeping"})
    assert invalid.status_code == 422 and invalid.json()["error"] == "invalid_request"
    unknown = keyed.get("/api/jobs/00000000-0000-0000-0000-000000000000")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"


def test_cancel_a_queued_job_then_conflict(keyed: TestClient) -> None:
    headers = {"X-API-Key": KEY}
    job = keyed.post(
        "/api/uploads", files={"files": ("x.wav", wav_bytes(7))}, headers=headers
    ).json()["data"][0]
    cancelled = keyed.delete(job["url"], headers=headers)
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert keyed.get(job["url"]).json()["finished_at"] is not None
    again = keyed.delete(job["url"], headers=headers)
    assert again.status_code == 409 and again.json()["error"] == "job_finished"
    assert "already cancelled" in again.json()["detail"]


def test_library_registration_checks_the_path(
    keyed: TestClient, library: Path, tmp_path: Path
) -> None:
    headers = {"X-API-Key": KEY}
    missing = keyed.post("/api/libraries", json={"path": str(tmp_path / "nope")}, headers=headers)
    assert missing.status_code == 400 and "does not exist" in missing.json()["detail"]
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    not_dir = keyed.post("/api/libraries", json={"path": str(a_file)}, headers=headers)
    assert not_dir.status_code == 400 and not_dir.json()["error"] == "not_a_folder"
    relative = keyed.post("/api/libraries", json={"path": "sounds"}, headers=headers)
    assert relative.status_code == 400 and "absolute" in relative.json()["detail"]
    created = keyed.post("/api/libraries", json={"path": str(library)}, headers=headers)
    assert created.status_code == 201 and created.json()["path"] == str(library.resolve())
    same = keyed.post("/api/libraries", json={"path": str(library)}, headers=headers)
    assert same.status_code == 200 and same.json()["id"] == created.json()["id"]
    listed = keyed.get("/api/libraries").json()
    assert listed["count"] == 1 and listed["data"][0]["sounds"] == 0
    lib_id = created.json()["id"]
    scan = keyed.post(f"/api/libraries/{lib_id}/scan", headers=headers)
    assert scan.status_code == 202 and scan.headers["location"] == f"/api/jobs/{scan.json()['id']}"
    # A scan already waiting is returned rather than queued twice.
    twice = keyed.post(f"/api/libraries/{lib_id}/scan", headers=headers)
    assert twice.json()["id"] == scan.json()["id"]
    assert keyed.post("/api/libraries/999/scan", headers=headers).status_code == 404
