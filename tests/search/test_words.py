"""Search that reads words: modes, rank fusion, and editing a sound's words through the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.catalog import Location, Sound
from core.config import Settings
from search.api.main import create_app
from search.fusion import reciprocal_rank_fusion, rrf_scores
from search.results import Ranked, SoundResult
from search.service import Foley
from tests.search.conftest import open_indexed

KEY = "words-key-1"


def hit(sound_id: int, **scores: float) -> SoundResult:
    return SoundResult(sound_id, 0.0, f"s{sound_id}", 1.0, [], "library", None, "wav", "", **scores)


def test_rank_fusion_on_a_known_example() -> None:
    audio = [hit(10, clap_score=0.9), hit(20, clap_score=0.8), hit(30, clap_score=0.7)]
    words = [hit(30, words_score=5.0), hit(40, words_score=2.0)]
    fused = reciprocal_rank_fusion(audio, words)
    # 30: 1/63 + 1/61; 10: 1/61; 20 and 40: 1/62 each, the tie going to the CLAP-ranked one.
    assert [r.id for r in fused] == [30, 10, 20, 40]
    assert fused[0].score == pytest.approx(1 / 63 + 1 / 61)
    assert (fused[0].audio_rank, fused[0].words_rank) == (3, 1)
    assert (fused[0].clap_score, fused[0].words_score) == (0.7, 5.0)
    assert (fused[3].audio_rank, fused[3].words_rank, fused[3].clap_score) == (None, 2, None)
    # A limit builds only the best; ids and scores alone (the pipeline's) fuse the same way.
    assert reciprocal_rank_fusion(audio, words, limit=2) == fused[:2]
    ranked = reciprocal_rank_fusion(
        [Ranked(r.id, r.score, clap_score=r.clap_score) for r in audio],
        [Ranked(r.id, r.score, words_score=r.words_score) for r in words],
    )
    assert [(r.id, r.score, r.audio_rank, r.words_rank, r.clap_score, r.words_score)
            for r in ranked] == [
        (r.id, r.score, r.audio_rank, r.words_rank, r.clap_score, r.words_score) for r in fused
    ]  # fmt: skip
    # Agreement beats a lone first place: 20th in both lists outranks 1st in one.
    scores = rrf_scores(list(range(1, 21)), list(range(100, 119)) + [20])
    assert scores[20] == pytest.approx(2 / 80) and scores[20] > scores[1] == scores[100]


@pytest.fixture
def foley(settings: Settings, library: Path, tiny_clap: Any) -> Iterator[Foley]:
    keyed = settings.model_copy(update={"api_keys": KEY})
    opened = open_indexed(keyed, tiny_clap, library)
    yield opened
    opened.close()


def sound_at(foley: Foley, path: Path) -> int:
    with foley.catalog.session() as session:
        location = session.scalar(select(Location).where(Location.path == str(path)))
        assert location is not None
        return location.sound_id


def patch(client: TestClient, sound_id: int, body: dict[str, Any], key: str | None = KEY) -> Any:
    headers = {"X-API-Key": key} if key else {}
    return client.patch(f"/api/sounds/{sound_id}", json=body, headers=headers)


def search(client: TestClient, q: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/api/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def test_an_edited_caption_is_found_at_once_in_every_mode(
    client: TestClient, foley: Foley, library: Path
) -> None:
    door = sound_at(foley, library / "Impacts" / "clip_04.wav")
    assert search(client, "squeaky door", mode="words") == []
    edited = patch(client, door, {"caption": "a squeaky wooden door", "tags": ["door", "squeak"]})
    assert edited.status_code == 200, edited.text
    body = edited.json()
    assert body["caption"] == "a squeaky wooden door" and body["tags"] == ["door", "squeak"]
    assert (body["caption_by"], body["tags_by"], body["title_by"]) == (
        "person",
        "person",
        "metadata",
    )
    words = search(client, "squeaky door", mode="words")
    assert [h["id"] for h in words] == [door]
    assert words[0]["words_score"] > 0 and words[0]["clap_score"] is None
    hybrid = search(client, "squeaky door", k=30)  # hybrid is the default
    first = next(h for h in hybrid if h["id"] == door)
    assert first["words_rank"] == 1 and first["audio_rank"] is not None
    # The sound is in both lists, every other one in the CLAP list only: it comes first.
    assert hybrid[0]["id"] == door
    audio = search(client, "squeaky door", k=30, mode="audio")
    assert all(h["words_score"] is None and h["words_rank"] is None for h in audio)
    assert [h["score"] for h in audio] == sorted((h["score"] for h in audio), reverse=True)


def test_filters_hold_in_every_mode(client: TestClient, foley: Foley, library: Path) -> None:
    tone = sound_at(foley, library / "Tones" / "clip_05.flac")
    other = sound_at(foley, library / "Ambience" / "clip_00.wav")
    for sound_id in (tone, other):
        assert patch(client, sound_id, {"caption": "a soft hum"}).status_code == 200
    for mode in ("words", "hybrid", "audio"):
        found = search(client, "hum", mode=mode, tag="tones", k=50)
        assert found and all(h["tags"] == ["tones"] for h in found), mode
        assert search(client, "hum", mode=mode, min_duration=5.0) == [], mode
    assert [h["id"] for h in search(client, "hum", mode="words", tag="tones")] == [tone]


def test_edited_tags_reach_the_index_filter(
    client: TestClient, foley: Foley, library: Path
) -> None:
    sound_id = sound_at(foley, library / "Tones" / "clip_02.wav")
    assert patch(client, sound_id, {"tags": ["drone"]}).status_code == 200
    foley.sync()  # the API's background syncer does this within a second
    found = search(client, "anything", mode="audio", tag="drone")
    assert [h["id"] for h in found] == [sound_id]


def test_a_bad_mode_is_a_json_422(client: TestClient) -> None:
    response = client.get("/api/search", params={"q": "rain", "mode": "telepathy"})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request" and "mode" in response.json()["detail"]


def test_editing_needs_a_key_and_good_words(client: TestClient, foley: Foley) -> None:
    with foley.catalog.session() as session:
        sound_id = session.scalars(select(Sound.id)).first()
    assert patch(client, sound_id, {"title": "x"}, key=None).status_code == 401
    wrong = patch(client, sound_id, {"title": "x"}, key="guess")
    assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"
    missing = patch(client, 424242, {"title": "x"})
    assert missing.status_code == 404 and "424242" in missing.json()["detail"]
    for body, says in (
        ({"tags": ["Door"]}, "lowercase"),
        ({"tags": ["two words"]}, "hyphens"),
        ({"tags": ["door", "door"]}, "repeat"),
        ({"tags": [f"t{i}" for i in range(31)]}, "30"),
        ({"tags": None}, "[]"),
        ({"title": ""}, "title"),
        ({"title": None}, "title"),
        ({"caption": "x" * 2001}, "caption"),
        ({"colour": "red"}, "colour"),
        ({}, "at least one"),
    ):
        response = patch(client, sound_id, body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"] == "invalid_request" and says in response.json()["detail"]
    with foley.catalog.session() as session:
        sound = session.get(Sound, sound_id)
        assert sound is not None and sound.title_by == "metadata"  # nothing was written


def test_sound_records_say_who_wrote_the_words(client: TestClient, foley: Foley) -> None:
    with foley.catalog.session() as session:
        sound_id = session.scalars(select(Sound.id)).first()
    record = client.get(f"/api/sounds/{sound_id}").json()
    assert (record["title_by"], record["tags_by"], record["caption_by"]) == (
        "metadata",
        "metadata",
        None,
    )
    assert patch(client, sound_id, {"title": "Rain on tin", "caption": "rain"}).status_code == 200
    assert patch(client, sound_id, {"caption": None}).status_code == 200
    record = client.get(f"/api/sounds/{sound_id}").json()
    assert (record["title"], record["title_by"], record["caption"], record["caption_by"]) == (
        "Rain on tin",
        "person",
        None,
        None,
    )


def test_app_without_keys_accepts_edits(settings: Settings, tiny_clap: Any, library: Path) -> None:
    opened = open_indexed(settings, tiny_clap, library)
    try:
        with TestClient(create_app(foley=opened)) as client:
            assert patch(client, 1, {"tags": ["x"]}, key=None).status_code == 200
    finally:
        opened.close()


def test_reindexing_keeps_a_persons_words(client: TestClient, foley: Foley, library: Path) -> None:
    import os

    from index_builder.runner import index_library

    path = library / "Ambience" / "clip_03.flac"
    sound_id = sound_at(foley, path)
    body = {"title": "Harbour at dawn", "caption": "gulls over a harbour", "tags": ["harbour"]}
    assert patch(client, sound_id, body).status_code == 200
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    summary = index_library(foley.catalog, foley.clap, library, foley.limits)
    assert summary.files == 30 and summary.unchanged == 29  # the touched file was read again
    record = client.get(f"/api/sounds/{sound_id}").json()
    assert (record["title"], record["caption"], record["tags"]) == (
        "Harbour at dawn",
        "gulls over a harbour",
        ["harbour"],
    )
    assert [h["id"] for h in search(client, "gulls harbour", mode="words")] == [sound_id]
