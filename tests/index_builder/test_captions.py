"""Captions as plain functions: an upload captioned with its sound, caption jobs after a scan,
and people's words surviving every re-captioning."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from sqlalchemy import select

from core.audio import DecodeLimits
from core.catalog import Job, Location, Sound
from core.db import Catalog
from core.jobs import JobKind, JobRun, execute, new_job
from core.store import FileStore
from core.words import edit_words, words_search
from index_builder.captions import (
    CaptionFollowUp,
    caption_sounds,
    plan_caption_jobs,
    sound_metadata,
)
from index_builder.library_scan import scan_library
from index_builder.uploads import ingest_upload, receive_upload
from tests.captioners import ScriptedCaptioner, tiny_model_captioner
from tests.sounds import SAMPLE_RATE, tone

LIMITS = DecodeLimits(
    max_bytes=10_000_000, max_duration_s=60, max_sample_rate=48_000, max_channels=2
)


def flac_bytes(kind: int, seconds: float = 1.5) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(kind, seconds), SAMPLE_RATE, format="FLAC")
    return buffer.getvalue()


def run_job(catalog: Catalog, job_id: str, body: Any) -> Job:
    execute(catalog, job_id, body, lease_s=30)
    with catalog.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def upload(catalog: Catalog, clap: Any, captioner: Any, tmp_path: Path, name: str, data: bytes):  # noqa: ANN201
    store = FileStore(tmp_path / "store")
    job = receive_upload(catalog, store, LIMITS, name, io.BytesIO(data))

    def body(run: JobRun) -> dict[str, Any]:
        return ingest_upload(catalog, clap, store, LIMITS, run, captioner=captioner)

    return run_job(catalog, job.id, body)


def caption_job(catalog: Catalog, captioner: Any, sound_ids: list[int], force: bool) -> Job:
    with catalog.session() as session:
        job_id = new_job(
            session, JobKind.caption.value, {"sound_ids": sound_ids, "force": force}
        ).id
    return run_job(
        catalog,
        job_id,
        lambda run: caption_sounds(catalog, captioner, LIMITS, run, unavailable="none here"),
    )


def test_an_upload_is_captioned_with_its_sound(
    catalog: Catalog, tiny_clap: Any, tmp_path: Path
) -> None:
    captioner = ScriptedCaptioner()
    done = upload(catalog, tiny_clap, captioner, tmp_path, "Kettle_01.flac", flac_bytes(3, 25.0))
    assert done.status == "succeeded", done.error
    assert done.result is not None
    assert done.result["caption"] == "a whistling kettle, filed as Kettle 01"
    assert done.result["tags"] == ["kettle", "whistle", "kitchen-sounds"]
    assert captioner.seen == [{"title": "Kettle 01", "file_name": "Kettle_01.flac"}]
    with catalog.session() as session:
        sound = session.get(Sound, done.result["sound_id"])
        assert sound is not None
        assert (sound.caption_by, sound.tags_by, sound.title_by) == (
            "captioner",
            "captioner",
            "metadata",
        )
        assert sound.caption_model == captioner.model_id
        # A 25 s file: three 10 s segments, each with its own caption.
        assert sound.caption_segments is not None
        assert [(s["start_s"], s["end_s"]) for s in sound.caption_segments] == [
            (0.0, 10.0),
            (10.0, 20.0),
            (20.0, 25.0),
        ]
        assert [i for i, _ in words_search(session, "whistling", 5)] == [sound.id]


def test_an_upload_without_a_captioner_is_still_written(
    catalog: Catalog, tiny_clap: Any, tmp_path: Path
) -> None:
    done = upload(catalog, tiny_clap, None, tmp_path, "a.flac", flac_bytes(4))
    assert done.status == "succeeded" and done.result is not None
    assert (done.result["caption"], done.result["tags"]) == (None, [])


def test_an_upload_gets_a_caption_and_tags_from_the_captioner_model(
    catalog_url: str, tiny_clap: Any, tmp_path: Path
) -> None:
    captioner = tiny_model_captioner(tiny_clap)
    catalog = Catalog(catalog_url)
    try:
        done = upload(catalog, tiny_clap, captioner, tmp_path, "bell.flac", flac_bytes(6))
        assert done.status == "succeeded", done.error
        assert done.result is not None
        assert done.result["caption"] and len(done.result["tags"]) >= 3
        with catalog.session() as session:
            sound = session.get(Sound, done.result["sound_id"])
            assert sound is not None and sound.caption_model == captioner.model_id
            assert sound.caption_segments and sound.caption_by == "captioner"
    finally:
        catalog.dispose()


def test_a_scan_queues_caption_jobs_that_caption_its_sounds(
    catalog: Catalog, tiny_clap: Any, tmp_path: Path
) -> None:
    root = tmp_path / "lib"
    (root / "Kitchen").mkdir(parents=True)
    (root / "Kitchen" / "kettle.flac").write_bytes(flac_bytes(1))
    (root / "loose.flac").write_bytes(flac_bytes(2))
    (root / "other.flac").write_bytes(flac_bytes(5))
    from index_builder.runner import register_library

    library_id = register_library(catalog, root)
    sent: list[tuple[str, str]] = []
    follow = CaptionFollowUp(enqueue=lambda job_id, kind: sent.append((job_id, kind)), batch_size=2)
    with catalog.session() as session:
        scan_id = new_job(session, JobKind.scan.value, {"library_id": library_id}).id
    scanned = run_job(
        catalog, scan_id, lambda run: scan_library(catalog, tiny_clap, LIMITS, run, captions=follow)
    )
    assert scanned.status == "succeeded", scanned.error
    assert scanned.result is not None
    assert scanned.result["captions"]["sounds"] == 3
    assert len(sent) == 2 and {kind for _, kind in sent} == {"caption"}
    assert scanned.result["captions"]["jobs"] == [job_id for job_id, _ in sent]
    # Queued again while those jobs wait: nothing new.
    assert plan_caption_jobs(catalog, [1, 2, 3], 2) == []

    captioner = ScriptedCaptioner()
    for job_id, _ in sent:
        done = run_job(catalog, job_id, lambda run: caption_sounds(catalog, captioner, LIMITS, run))
        assert done.status == "succeeded", done.error
    with catalog.session() as session:
        sounds = {s.title: s for s in session.scalars(select(Sound))}
        kettle = sounds["kettle"]
        # The folder name is the library's own tag: the captioner's tags do not replace it.
        assert (kettle.tags, kettle.tags_by) == (["kitchen"], "metadata")
        assert kettle.caption == "a whistling kettle, filed as kettle"
        assert sounds["loose"].tags == ["kettle", "whistle", "kitchen-sounds"]
    assert {"title": "kettle", "folder": "Kitchen", "file_name": "kettle.flac"} in captioner.seen
    # Nothing left to caption: a second scan queues nothing.
    with catalog.session() as session:
        again = new_job(session, JobKind.scan.value, {"library_id": library_id}).id
    rescanned = run_job(
        catalog, again, lambda run: scan_library(catalog, tiny_clap, LIMITS, run, captions=follow)
    )
    assert rescanned.result is not None and rescanned.result["captions"]["jobs"] == []


def test_a_persons_words_survive_recaptioning(
    catalog: Catalog, tiny_clap: Any, tmp_path: Path
) -> None:
    done = upload(catalog, tiny_clap, ScriptedCaptioner(), tmp_path, "k.flac", flac_bytes(7))
    assert done.result is not None
    sound_id = done.result["sound_id"]
    with catalog.session() as session:
        sound = session.get(Sound, sound_id)
        assert sound is not None
        edit_words(session, sound, caption="my grandmother's kettle", tags=["heirloom"])
    again = caption_job(catalog, ScriptedCaptioner(model_id="scripted-2"), [sound_id], True)
    assert again.status == "succeeded" and again.result is not None
    assert again.result["captioned"] == [sound_id]
    with catalog.session() as session:
        sound = session.get(Sound, sound_id)
        assert sound is not None
        assert (sound.caption, sound.tags) == ("my grandmother's kettle", ["heirloom"])
        assert sound.caption_model == "scripted-2"
    # Without `force`, a sound this captioner already captioned is left alone.
    skip = caption_job(catalog, ScriptedCaptioner(model_id="scripted-2"), [sound_id], False)
    assert skip.result is not None and skip.result["skipped"] == [sound_id]


def test_caption_jobs_say_why_they_cannot_run(
    catalog: Catalog, tiny_clap: Any, tmp_path: Path
) -> None:
    none = caption_job(catalog, None, [1], True)
    assert none.status == "failed" and none.error == "no captioner here: none here"
    done = upload(catalog, tiny_clap, None, tmp_path, "x.flac", flac_bytes(8))
    assert done.result is not None
    with catalog.session() as session:
        for location in session.scalars(select(Location)):
            Path(location.path).unlink()
    gone = caption_job(catalog, ScriptedCaptioner(), [done.result["sound_id"]], True)
    assert gone.status == "failed" and "none of its files can be read" in (gone.error or "")


def test_sound_metadata_names_the_folder_inside_the_library(tmp_path: Path) -> None:
    path = tmp_path / "lib" / "Vehicles" / "Sirens" / "x.wav"
    assert sound_metadata("x", path, tmp_path / "lib")["folder"] == "Vehicles/Sirens"
    assert sound_metadata("x", path, None)["folder"] == ""


@pytest.mark.parametrize("rate", [16_000, 48_000])
def test_uploads_reach_the_captioner_at_its_rate(
    rate: int, catalog: Catalog, tiny_clap: Any, tmp_path: Path
) -> None:
    captioner = ScriptedCaptioner(sample_rate=rate)
    done = upload(catalog, tiny_clap, captioner, tmp_path, "r.flac", flac_bytes(9, 12.0))
    assert done.result is not None
    with catalog.session() as session:
        sound = session.get(Sound, done.result["sound_id"])
        assert sound is not None and sound.caption_segments is not None
        # 12 s at the captioner's rate: the scripted captioner measures it from the samples.
        assert sound.caption_segments[-1]["end_s"] == pytest.approx(12.0, abs=0.01)
