"""Generation jobs as plain functions: a request is checked, its sounds are made by a real
(tiny, untrained) generator over the tiny CLAP, stored, embedded and written with their
provenance on SQLite and PostgreSQL; the same request again is a duplicate; a cancel between
sampler steps leaves nothing behind."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import func, select

from core.audio import DecodeLimits
from core.catalog import Embedding, GenerationRecord, Job, OutboxEntry, Sound
from core.db import Catalog
from core.jobs import JobRun, cancel_job, execute, new_job
from core.store import FileStore
from index_builder.generated import GenerateRequest, generate_sounds
from index_builder.uploads import ingest_upload, receive_upload
from tests.sounds import SAMPLE_RATE, tone

torch = pytest.importorskip("torch")

LIMITS = DecodeLimits(
    max_bytes=10_000_000, max_duration_s=60, max_sample_rate=48_000, max_channels=2
)


@pytest.fixture(scope="module")
def generator(tiny_clap: Any) -> Any:
    from generative.generator.config import tiny_config
    from generative.generator.pipeline import build_random_generator

    made = build_random_generator(tiny_config(tiny_clap.dim), seed=0)
    made.clap = tiny_clap
    return made


def count(catalog: Catalog, model: type) -> int:
    with catalog.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def library_sound(catalog: Catalog, clap: Any, store: FileStore, kind: int) -> int:
    """A sound in the catalog, added the way an upload adds one."""
    buffer = io.BytesIO()
    sf.write(buffer, tone(kind, 1.0), SAMPLE_RATE, format="WAV")
    data = io.BytesIO(buffer.getvalue())
    job = receive_upload(catalog, store, LIMITS, f"bell {kind}.wav", data)
    body = lambda run: ingest_upload(catalog, clap, store, LIMITS, run)  # noqa: E731
    execute(catalog, job.id, body, lease_s=30)
    with catalog.session() as session:
        done = session.get(Job, job.id)
        assert done is not None and done.result is not None
        return int(done.result["sound_id"])


def run_generation(catalog: Catalog, clap: Any, store: FileStore, generator: Any,
                   request: GenerateRequest) -> Job:  # fmt: skip
    with catalog.session() as session:
        job_id = new_job(session, "generate", request.as_params()).id

    def body(run: JobRun) -> dict[str, Any]:
        return generate_sounds(catalog, clap, store, LIMITS, run, generator)

    execute(catalog, job_id, body, lease_s=30)
    with catalog.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"prompt": "   "}, "prompt is empty"),
        ({"seconds": 0.5}, "seconds must be 1 to 10"),
        ({"seconds": float("nan")}, "seconds must be 1 to 10"),
        ({"count": 5}, "count must be 1 to 4"),
        ({"neighbours": 11}, "neighbours must be 0 to 10"),
        ({"guidance_mode": "loud"}, "guidance_mode must be one of"),
        ({"seed": -1}, "seed must be"),
    ],
)
def test_unusable_requests_say_why(change: dict[str, Any], said: str) -> None:
    with pytest.raises(ValueError, match=said):
        GenerateRequest(**{"prompt": "rain on a tin roof", **change}).check()
    assert GenerateRequest("  rain   on a roof ").check().prompt == "rain on a roof"


def test_generated_sounds_are_real_sounds_with_provenance(
    catalog: Catalog, tiny_clap: Any, generator: Any, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "store")
    neighbours = [library_sound(catalog, tiny_clap, store, kind) for kind in (1, 4)]
    request = GenerateRequest("a bell rings twice", seconds=1.0, count=2, seed=7, steps=2,
                              neighbours=2, neighbour_ids=tuple(neighbours))  # fmt: skip
    job = run_generation(catalog, tiny_clap, store, generator, request)
    assert job.status == "succeeded", job.error
    assert job.result is not None and job.result["neighbour_ids"] == neighbours
    made = job.result["sounds"]
    assert [m["seed"] for m in made] == [7, 8] and not any(m["duplicate"] for m in made)
    with catalog.session() as session:
        for entry in made:
            sound = session.get(Sound, entry["sound_id"])
            assert sound is not None and sound.source == "generated"
            assert sound.title == "a bell rings twice" and sound.duration == pytest.approx(1.0)
            (location,) = sound.locations
            wave, rate = sf.read(location.path)
            assert rate == generator.sample_rate and len(wave) == rate
            record = session.scalar(
                select(GenerationRecord).where(GenerationRecord.sound_id == sound.id)
            )
            assert record is not None and record.job_id == job.id
            assert (record.prompt, record.seed) == ("a bell rings twice", entry["seed"])
            assert record.neighbour_ids == neighbours
            assert record.settings["steps"] == 2 and record.settings["neighbours"] == 2
            assert record.models == {"generator": generator.model_id, "clap": tiny_clap.model_id}
            vectors = session.scalars(select(Embedding).where(Embedding.sound_id == sound.id))
            assert np.isclose(np.linalg.norm(next(iter(vectors)).as_array()), 1.0, atol=1e-4)
            assert session.scalar(
                select(func.count()).where(OutboxEntry.sound_id == sound.id)
            ) == 1  # fmt: skip
    # The same request makes the same bytes: the same sounds, no second provenance.
    again = run_generation(catalog, tiny_clap, store, generator, request)
    assert again.status == "succeeded" and again.result is not None
    assert [m["sound_id"] for m in again.result["sounds"]] == [m["sound_id"] for m in made]
    assert all(m["duplicate"] for m in again.result["sounds"])
    assert count(catalog, GenerationRecord) == 2 and count(catalog, Sound) == 4
    # Without retrieval, another seed: a new sound whose record names no neighbours.
    lone = GenerateRequest("a bell", seconds=1.0, seed=1, steps=2, neighbours=0)
    alone = run_generation(catalog, tiny_clap, store, generator, lone)
    assert alone.status == "succeeded" and alone.result is not None
    assert alone.result["neighbour_ids"] == [] and count(catalog, GenerationRecord) == 3


def test_a_cancel_between_steps_leaves_nothing(
    catalog: Catalog, tiny_clap: Any, generator: Any, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "store")
    request = GenerateRequest("wind howls", seconds=1.0, count=2, steps=4, neighbours=0)
    with catalog.session() as session:
        job_id = new_job(session, "generate", request.as_params()).id
    steps_seen: list[str] = []

    def body(run: JobRun) -> dict[str, Any]:
        original = run.progress

        def progress(fraction: float, message: str = "") -> None:
            steps_seen.append(message)
            if message.endswith("step 2/4"):
                with catalog.session() as session:
                    cancel_job(session, job_id)
            original(fraction, message)

        run.progress = progress  # type: ignore[method-assign]
        return generate_sounds(catalog, tiny_clap, store, LIMITS, run, generator)

    execute(catalog, job_id, body, lease_s=30)
    with catalog.session() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "cancelled"
    assert steps_seen[-1] == "sound 1 of 2: step 2/4"  # stopped at the step it was cancelled
    assert count(catalog, Sound) == 0 and count(catalog, GenerationRecord) == 0
    assert not [p for p in store.root.rglob("*") if p.is_file()]


def test_a_worker_without_a_generator_fails_the_job_saying_why(
    catalog: Catalog, tiny_clap: Any, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "store")
    with catalog.session() as session:
        job_id = new_job(session, "generate", GenerateRequest("rain").as_params()).id

    def body(run: JobRun) -> dict[str, Any]:
        return generate_sounds(catalog, tiny_clap, store, LIMITS, run, None,
                               unavailable="no generator checkpoint at /x")  # fmt: skip

    execute(catalog, job_id, body, lease_s=30)
    with catalog.session() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "failed"
        assert job.error == "this worker cannot generate: no generator checkpoint at /x"
