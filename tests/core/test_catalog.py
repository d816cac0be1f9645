"""The catalog schema on SQLite and PostgreSQL: migrations, identity by hash, cascades."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError

from core.catalog import Embedding, Job, Location, OutboxEntry, Sound
from core.db import Catalog


def make_sound(content_hash: str) -> Sound:
    return Sound(
        content_hash=content_hash,
        size=10,
        duration=1.0,
        sample_rate=16000,
        channels=1,
        format="wav",
        title="t",
        tags=["a"],
    )


def test_migrations_create_every_table(catalog: Catalog) -> None:
    tables = set(inspect(catalog.engine).get_table_names())
    assert tables >= {
        "sounds",
        "locations",
        "embeddings",
        "outbox",
        "index_state",
        "jobs",
        "libraries",
        "scan_errors",
        "generations",
        "alembic_version",
    }
    Catalog(catalog.url).dispose()  # migrating an up-to-date catalog again is a no-op


def test_same_bytes_are_one_sound(catalog: Catalog) -> None:
    with catalog.session() as session:
        session.add(make_sound("ab" * 32))
    with pytest.raises(IntegrityError), catalog.session() as session:
        session.add(make_sound("ab" * 32))
    with catalog.session() as session:
        assert session.scalar(select(func.count()).select_from(Sound)) == 1


def test_deleting_a_sound_removes_its_locations_and_embeddings(catalog: Catalog) -> None:
    vector = np.arange(4, dtype=np.float32)
    with catalog.session() as session:
        sound = make_sound("cd" * 32)
        session.add(sound)
        session.flush()
        session.add(Location(sound_id=sound.id, path="/x/a.wav", size=10, mtime_ns=1))
        session.add(
            Embedding(sound_id=sound.id, model_id="m", dim=4, vector=Embedding.pack(vector))
        )
        session.add(OutboxEntry(sound_id=sound.id, op="upsert"))
        sound_id = sound.id
    with catalog.session() as session:
        embedding = session.scalar(select(Embedding))
        assert embedding is not None and np.array_equal(embedding.as_array(), vector)
        session.delete(session.get(Sound, sound_id))
    with catalog.session() as session:
        assert session.scalar(select(func.count()).select_from(Location)) == 0
        assert session.scalar(select(func.count()).select_from(Embedding)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxEntry)) == 1


def test_jobs_keep_json_results(catalog: Catalog) -> None:
    with catalog.session() as session:
        session.add(Job(id="j1", kind="scan", params={"library": 1}))
    with catalog.session() as session:
        job = session.get(Job, "j1")
        assert job is not None and job.status == "queued" and job.progress == 0.0
        assert job.params == {"library": 1} and job.result is None


def test_sqlite_writers_in_one_process_take_turns(tmp_path) -> None:  # noqa: ANN001
    """Concurrent writing threads hand the write lock over; reads never take it, and it is
    given back however a transaction ends."""
    import threading

    from sqlalchemy import update

    from core.db import SQLiteWriterLock

    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    lock = SQLiteWriterLock()
    lock.attach(catalog.engine)
    try:
        with catalog.session() as session:
            session.add(make_sound("a" * 64))
            session.flush()
            assert lock.held
        assert not lock.held
        with catalog.session() as session:
            session.scalar(select(func.count()).select_from(Sound))
            assert not lock.held  # a read does not take it
        with pytest.raises(IntegrityError), catalog.session() as session:
            session.add(make_sound("a" * 64))  # the same hash again
        assert not lock.held  # rolled back

        errors: list[BaseException] = []

        def writer(n: int) -> None:
            try:
                for i in range(20):
                    with catalog.session() as session:
                        session.execute(update(Sound).values(title=f"{n}-{i}"))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and not lock.held
    finally:
        catalog.dispose()


def _connections_opened_by_two_bursts(catalog: Catalog, threads: int) -> list[int]:
    """Connections opened during each of two bursts of `threads` sessions held at once."""
    import threading

    from sqlalchemy import event, text

    opened = [0]

    def on_connect(*_: object) -> None:
        opened[0] += 1

    event.listen(catalog.engine, "connect", on_connect)
    counts = []
    for _ in range(2):
        before = opened[0]
        barrier = threading.Barrier(threads)

        def hold(barrier: threading.Barrier = barrier) -> None:
            with catalog.session() as session:
                session.execute(text("SELECT 1"))
                barrier.wait(timeout=30)  # every thread holds its connection at once

        workers = [threading.Thread(target=hold) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        counts.append(opened[0] - before)
    return counts


def test_a_serving_catalog_keeps_its_connections_across_bursts(tmp_path) -> None:  # noqa: ANN001
    serving = Catalog(f"sqlite:///{tmp_path / 'serving.db'}", serving=True)
    plain = Catalog(f"sqlite:///{tmp_path / 'plain.db'}")
    try:
        # 32 concurrent searches: the serving pool opens what it lacks once and keeps it (the
        # migration's connection is already there); the default pool (5 kept) closes most
        # and opens them again for the next burst.
        first, second = _connections_opened_by_two_bursts(serving, 32)
        assert 31 <= first <= 32 and second == 0
        first, second = _connections_opened_by_two_bursts(plain, 15)
        assert first >= 14 and second >= 10
    finally:
        serving.dispose()
        plain.dispose()
