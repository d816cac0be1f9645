"""The search API over a real catalog, Qdrant Edge index and tiny CLAP."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.catalog import Location, Sound
from core.config import Settings
from search.service import Foley
from tests.search.conftest import open_indexed
from tests.sounds import SAMPLE_RATE, tone


@pytest.fixture
def foley(settings: Settings, library: Path, tiny_clap) -> Iterator[Foley]:  # noqa: ANN001
    opened = open_indexed(settings, tiny_clap, library)
    yield opened
    opened.close()


def sound_id_at(foley: Foley, path: Path) -> int:
    with foley.catalog.session() as session:
        location = session.scalar(select(Location).where(Location.path == str(path)))
        assert location is not None
        return location.sound_id


def test_text_search_returns_ranked_results(client: TestClient) -> None:
    response = client.get("/api/search", params={"q": "a low rumbling engine", "k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 5 == len(body["data"])
    scores = [hit["score"] for hit in body["data"]]
    assert scores == sorted(scores, reverse=True)
    first = body["data"][0]
    assert set(first) >= {"id", "score", "title", "duration", "tags", "audio_url"}
    assert first["audio_url"] == f"/api/sounds/{first['id']}/audio"


def test_text_search_filters(client: TestClient) -> None:
    tones = client.get("/api/search", params={"q": "beep", "k": 30, "tag": "tones"}).json()
    assert tones["count"] == 10 and all(h["tags"] == ["tones"] for h in tones["data"])
    none = client.get("/api/search", params={"q": "beep", "min_duration": 2.0}).json()
    assert none["count"] == 0
    uploads = client.get("/api/search", params={"q": "beep", "source": "upload"}).json()
    assert uploads["count"] == 0
    library = client.get("/api/search", params={"q": "beep", "k": 50, "source": "library"}).json()
    assert library["count"] == 30


def test_search_errors_are_json(client: TestClient) -> None:
    empty = client.get("/api/search", params={"q": "   "})
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]
    too_many = client.get("/api/search", params={"q": "rain", "k": 10_000})
    assert too_many.status_code == 422 and too_many.json()["error"] == "invalid_request"
    swapped = client.get("/api/search", params={"q": "rain", "min_duration": 3, "max_duration": 1})
    assert swapped.status_code == 422 and "min_duration" in swapped.json()["detail"]


def test_audio_search_finds_the_clip_itself(
    client: TestClient, foley: Foley, library: Path
) -> None:
    path = library / "Impacts" / "clip_07.flac"
    with path.open("rb") as handle:
        response = client.post(
            "/api/search/audio", files={"file": ("q.flac", handle)}, data={"k": 3}
        )
    assert response.status_code == 200, response.text
    best = response.json()["data"][0]
    assert best["id"] == sound_id_at(foley, path)
    assert best["score"] == pytest.approx(1.0, abs=1e-3)


def test_audio_search_by_sound_id_leaves_it_out(
    client: TestClient, foley: Foley, library: Path
) -> None:
    sound_id = sound_id_at(foley, library / "Tones" / "clip_05.flac")
    response = client.post("/api/search/audio", data={"sound_id": str(sound_id), "k": 5})
    assert response.status_code == 200
    ids = [hit["id"] for hit in response.json()["data"]]
    assert len(ids) == 5 and sound_id not in ids
    missing = client.post("/api/search/audio", data={"sound_id": "424242"})
    assert missing.status_code == 404 and "424242" in missing.json()["detail"]


def test_audio_search_rejects_bad_uploads(client: TestClient) -> None:
    text = client.post("/api/search/audio", files={"file": ("notes.wav", b"hello, not audio" * 50)})
    assert text.status_code == 422 and text.json()["error"] == "not_audio"
    assert "notes.wav" in text.json()["detail"]
    empty = client.post("/api/search/audio", files={"file": ("empty.wav", b"")})
    assert empty.status_code == 422 and empty.json()["error"] == "empty_file"
    neither = client.post("/api/search/audio", data={"k": 3})
    assert neither.status_code == 422 and "exactly one" in neither.json()["detail"]


def test_sound_record_and_audio_ranges(client: TestClient, foley: Foley, library: Path) -> None:
    path = library / "Ambience" / "clip_00.wav"
    sound_id = sound_id_at(foley, path)
    record = client.get(f"/api/sounds/{sound_id}").json()
    assert record["title"] == "clip 00" and record["locations"] == [str(path)]
    assert client.get("/api/sounds/999999").status_code == 404

    data = path.read_bytes()
    full = client.get(f"/api/sounds/{sound_id}/audio")
    assert full.status_code == 200 and full.content == data
    assert full.headers["content-type"].startswith("audio/")
    part = client.get(f"/api/sounds/{sound_id}/audio", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = client.get(f"/api/sounds/{sound_id}/audio", headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]
    bad = client.get(f"/api/sounds/{sound_id}/audio", headers={"Range": f"bytes={len(data)}-"})
    assert bad.status_code == 416 and bad.json()["error"] == "bad_range"


def test_audio_never_served_outside_the_library(
    client: TestClient, foley: Foley, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.wav"
    buffer = io.BytesIO()
    sf.write(buffer, tone(3), SAMPLE_RATE, format="WAV")
    secret.write_bytes(buffer.getvalue())
    with foley.catalog.session() as session:
        sound = session.scalars(select(Sound).order_by(Sound.id)).first()
        assert sound is not None
        # A location that resolves outside every library root, as a tampered catalog might hold.
        for loc in list(sound.locations):
            loc.path = str(secret.parent / "library" / ".." / "secret.wav")
        sound_id = sound.id
    response = client.get(f"/api/sounds/{sound_id}/audio")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    traversal = client.get("/api/sounds/..%2F..%2Fetc%2Fpasswd/audio")
    assert traversal.status_code in (404, 422) and b"root:" not in traversal.content


def test_health_reports_each_part(client: TestClient, foley: Foley) -> None:
    body = client.get("/api/health").json()
    assert body["status"] == "ok"
    assert body["catalog"]["sounds"] == 30 and body["index"]["points"] == 30
    assert body["index"]["pending_changes"] == 0
    assert body["model"]["model_id"] == foley.clap.model_id
    captioner = body["captioner"]
    assert captioner["checkpoint"] == str(foley.settings.captioner_checkpoint)
    if not captioner["loaded"]:  # says why, and the service is still healthy
        assert captioner["status"] and "model_id" not in captioner


def test_search_page_is_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in page.text
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "/api/search" in script.text


def test_a_serving_app_tunes_the_garbage_collector_once_started(foley: Foley) -> None:
    import gc

    from search.api.main import SERVING_GC_THRESHOLDS, create_app

    before = gc.get_threshold()
    try:
        with TestClient(create_app(foley=foley, serving=True)) as client:
            assert client.get("/api/health").status_code == 200
            assert gc.get_threshold() == SERVING_GC_THRESHOLDS
            assert gc.get_freeze_count() > 0  # what start-up loaded is out of the collector's way
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    with TestClient(create_app(foley=foley)):
        assert gc.get_threshold() == before  # tests and embedding apps keep the defaults
