"""Uploads as plain functions: receive (check + store), then ingest as a job body."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import func, select

from core.audio import DecodeLimits
from core.catalog import Embedding, Job, Location, OutboxEntry, Sound
from core.db import Catalog
from core.jobs import JobRun, execute
from core.store import FileStore
from index_builder.uploads import client_filename, ingest_upload, receive_upload
from tests.sounds import SAMPLE_RATE, tone

LIMITS = DecodeLimits(
    max_bytes=10_000_000, max_duration_s=60, max_sample_rate=48_000, max_channels=2
)


def flac_bytes(kind: int, seconds: float = 1.5) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(kind, seconds), SAMPLE_RATE, format="FLAC")
    return buffer.getvalue()


def stored_files(store: FileStore) -> list[Path]:
    return sorted(p for p in store.root.rglob("*") if p.is_file())


def ingest(catalog: Catalog, clap: Any, store: FileStore, job_id: str) -> Job:
    def body(run: JobRun) -> dict[str, Any]:
        return ingest_upload(catalog, clap, store, LIMITS, run)

    execute(catalog, job_id, body, lease_s=30)
    with catalog.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def count(catalog: Catalog, model: type) -> int:
    with catalog.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_an_upload_becomes_one_sound_and_again_is_a_duplicate(
    catalog: Catalog, tiny_clap: Any, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "store")
    data = flac_bytes(3)
    job = receive_upload(catalog, store, LIMITS, "Door_Creak-01.flac", io.BytesIO(data))
    assert job.status == "queued" and job.params["filename"] == "Door_Creak-01.flac"
    done = ingest(catalog, tiny_clap, store, job.id)
    assert done.status == "succeeded", done.error
    assert done.result is not None and done.result["duplicate"] is False
    sound_id = done.result["sound_id"]
    with catalog.session() as session:
        sound = session.get(Sound, sound_id)
        assert sound is not None
        assert (sound.source, sound.title, sound.format) == ("upload", "Door Creak 01", "flac")
        (location,) = sound.locations
        assert location.library_id is None and Path(location.path) == stored_files(store)[0]
        assert Path(location.path).read_bytes() == data
        assert session.scalar(select(func.count()).where(Embedding.sound_id == sound_id)) == 1
        seqs = session.scalars(select(OutboxEntry.seq).where(OutboxEntry.sound_id == sound_id))
        assert list(seqs) == [done.result["outbox_seq"]]

    again = receive_upload(catalog, store, LIMITS, "copy.flac", io.BytesIO(data))
    repeat = ingest(catalog, tiny_clap, store, again.id)
    assert repeat.status == "succeeded"
    assert repeat.result is not None
    assert (repeat.result["sound_id"], repeat.result["duplicate"]) == (sound_id, True)
    assert count(catalog, Sound) == 1 and count(catalog, OutboxEntry) == 1
    assert count(catalog, Location) == 1 and len(stored_files(store)) == 1


def test_a_file_refused_by_its_header_is_never_stored(catalog: Catalog, tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    job = receive_upload(catalog, store, LIMITS, "notes.wav", io.BytesIO(b"plain text " * 100))
    assert job.status == "failed" and job.finished_at is not None
    assert job.error is not None and job.error.startswith("notes.wav is not a WAV, FLAC")
    assert stored_files(store) == [] and count(catalog, Sound) == 0


def test_a_file_that_fails_to_decode_leaves_nothing(
    catalog: Catalog, tiny_clap: Any, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "store")
    data = flac_bytes(5, seconds=3.0)
    cut = data[: len(data) // 2]  # its header still promises 3 s
    job = receive_upload(catalog, store, LIMITS, "cut.flac", io.BytesIO(cut))
    assert job.status == "queued" and len(stored_files(store)) == 1
    done = ingest(catalog, tiny_clap, store, job.id)
    assert done.status == "failed"
    assert done.error is not None and done.error.startswith("cut.flac is damaged or cut off")
    assert stored_files(store) == []
    assert count(catalog, Sound) == 0 and count(catalog, OutboxEntry) == 0


def test_client_file_names_lose_their_folders() -> None:
    assert client_filename("../../etc/passwd") == "passwd"
    assert client_filename("C:\\Users\\me\\rain.wav") == "rain.wav"
    assert client_filename("") == client_filename(None) == "upload"


def test_uploads_in_one_batch_keep_a_status_each_and_a_bad_file_loses_nothing(
    catalog: Catalog, tiny_clap: Any, tmp_path: Path
) -> None:
    from index_builder.embed import Decoded, decode_for
    from index_builder.uploads import ingest_uploads

    store = FileStore(tmp_path / "store")
    good = {f"clip-{kind}.flac": flac_bytes(kind) for kind in (11, 12, 13, 14)}
    whole = flac_bytes(15, seconds=3.0)
    files = [
        *good.items(),
        ("cut.flac", whole[: len(whole) // 2]),
        ("again.flac", good["clip-12.flac"]),
    ]
    jobs = [receive_upload(catalog, store, LIMITS, name, io.BytesIO(data)) for name, data in files]
    assert [job.status for job in jobs] == ["queued"] * 6

    resend = ingest_uploads(catalog, tiny_clap, store, LIMITS, [job.id for job in jobs], lease_s=30)

    assert resend == {}
    with catalog.session() as session:
        done = {job.params["filename"]: session.get(Job, job.id) for job in jobs}
    statuses = {name: job.status for name, job in done.items() if job is not None}
    assert statuses == {
        **dict.fromkeys(good, "succeeded"),
        "cut.flac": "failed",
        "again.flac": "succeeded",
    }
    assert done["cut.flac"].error.startswith("cut.flac is damaged or cut off")  # type: ignore[union-attr]
    results = {name: job.result for name, job in done.items() if job is not None and job.result}
    # Each good file is its own sound, embedded as it would be alone; the copy is a duplicate.
    sounds = {name: results[name]["sound_id"] for name in good}
    assert len(set(sounds.values())) == 4 and count(catalog, Sound) == 4
    assert results["again.flac"]["sound_id"] == sounds["clip-12.flac"]
    assert {results["again.flac"]["duplicate"], results["clip-12.flac"]["duplicate"]} == {
        True,
        False,
    }
    with catalog.session() as session:
        for name, sound_id in sounds.items():
            row = session.scalar(select(Embedding).where(Embedding.sound_id == sound_id))
            assert row is not None
            decoded = decode_for(tiny_clap, good[name], name, LIMITS)
            assert isinstance(decoded, Decoded)
            alone = tiny_clap.embed_audio([decoded.wave])[0]
            np.testing.assert_allclose(row.as_array(), alone, atol=1e-6)


def test_a_batch_of_uploads_is_embedded_and_captioned_in_one_pass(
    catalog: Catalog, tiny_clap: Any, tmp_path: Path
) -> None:
    """With the captioner model, each upload of a batch gets its caption and tags in its own
    job, and the embedding a library scan would give it, bit for bit."""
    from index_builder.embed import Decoded, decode_for
    from index_builder.uploads import ingest_uploads
    from tests.captioners import tiny_model_captioner

    captioner = tiny_model_captioner(tiny_clap)
    store = FileStore(tmp_path / "store")
    files = {f"Bell_{kind}.flac": flac_bytes(kind, seconds=1.0 + kind / 4) for kind in (1, 2, 3)}
    jobs = [receive_upload(catalog, store, LIMITS, n, io.BytesIO(d)) for n, d in files.items()]

    resend = ingest_uploads(
        catalog, tiny_clap, store, LIMITS, [j.id for j in jobs], lease_s=30, captioner=captioner
    )

    assert resend == {}
    with catalog.session() as session:
        for job in jobs:
            done = session.get(Job, job.id)
            assert done is not None and done.status == "succeeded", done and done.error
            assert done.result is not None and done.result["caption"]
            sound = session.get(Sound, done.result["sound_id"])
            assert sound is not None and sound.caption_model == captioner.model_id
            assert len(sound.tags) >= 3 and sound.caption_segments
            name = job.params["filename"]
            decoded = decode_for(tiny_clap, files[name], name, LIMITS)
            assert isinstance(decoded, Decoded)
            row = session.scalar(select(Embedding).where(Embedding.sound_id == sound.id))
            assert row is not None
            assert np.array_equal(row.as_array(), tiny_clap.embed_audio([decoded.wave])[0])


def _fails_on_broken(kind: str, clap: Any) -> Any:
    """A captioner that raises whenever a file titled "Broken" is among those it captions:
    the scripted one, or the captioner model (whose one-pass path then fails too)."""
    from tests.captioners import ScriptedCaptioner, tiny_model_captioner

    def broken(metadata: Any) -> bool:
        return any("Broken" in (meta or {}).get("title", "") for meta in metadata)

    if kind == "scripted":

        class Scripted(ScriptedCaptioner):
            def caption(self, waves, metadata):  # noqa: ANN001, ANN202
                if broken(metadata):
                    raise RuntimeError("the captioner cannot read this one")
                return super().caption(waves, metadata)

        return Scripted()
    real = tiny_model_captioner(clap)

    class Model(type(real)):  # type: ignore[misc]
        def caption_segments(self, per_wave, metadata, num_beams=None):  # noqa: ANN001, ANN202
            if broken(metadata):
                raise RuntimeError("the captioner cannot read this one")
            return super().caption_segments(per_wave, metadata, num_beams)

    model = Model.__new__(Model)
    model.__dict__.update(real.__dict__)
    return model


@pytest.mark.parametrize("kind", ["scripted", "model"])
def test_a_captioner_failing_on_one_upload_leaves_only_that_one_uncaptioned(
    catalog: Catalog, tiny_clap: Any, tmp_path: Path, kind: str
) -> None:
    from index_builder.uploads import ingest_uploads

    captioner = _fails_on_broken(kind, tiny_clap)
    store = FileStore(tmp_path / "store")
    files = {
        "Kettle.flac": flac_bytes(21),
        "Broken.flac": flac_bytes(22),
        "Door.flac": flac_bytes(23),
    }
    jobs = [receive_upload(catalog, store, LIMITS, n, io.BytesIO(d)) for n, d in files.items()]

    resend = ingest_uploads(
        catalog, tiny_clap, store, LIMITS, [j.id for j in jobs], lease_s=30, captioner=captioner
    )

    assert resend == {}
    with catalog.session() as session:
        results = {j.params["filename"]: session.get(Job, j.id) for j in jobs}
    assert {name: job.status for name, job in results.items() if job} == dict.fromkeys(
        files, "succeeded"
    )
    captions = {name: job.result["caption"] for name, job in results.items() if job and job.result}
    assert captions["Broken.flac"] is None  # written, found by its audio and title
    if kind == "scripted":
        assert captions["Kettle.flac"] == "a whistling kettle, filed as Kettle"
        assert captions["Door.flac"] == "a whistling kettle, filed as Door"
    assert captions["Kettle.flac"] and captions["Door.flac"]
    assert count(catalog, Sound) == 3 and len(stored_files(store)) == 3
