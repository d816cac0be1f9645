"""Scans fanned out as batch jobs, run here as plain functions through `core.jobs.execute`
(the queue itself is tested with real workers in tests/workers/test_index_jobs.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from core.audio import DecodeLimits
from core.catalog import Job, Location, OutboxEntry, Sound
from core.db import Catalog
from core.jobs import execute, new_job
from core.vector_index import EdgeVectorIndex
from index_builder.library_scan import scan_library
from index_builder.runner import register_library
from index_builder.scan_batches import index_batch
from index_builder.syncer import IndexSyncer
from tests.sounds import write_library

LIMITS = DecodeLimits(
    max_bytes=5_000_000, max_duration_s=30.0, max_sample_rate=96_000, max_channels=2
)
LEASE_S = 30.0


class Queue:
    """Messages sent, in order: what a broker would hand the workers."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, job_id: str, kind: str) -> None:
        self.sent.append((job_id, kind))


def count(catalog: Catalog, model: type) -> int:
    with catalog.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def job(catalog: Catalog, job_id: str) -> Job:
    with catalog.session() as session:
        row = session.get(Job, job_id)
        assert row is not None
        return row


def start_scan(catalog: Catalog, clap: Any, root: Path, queue: Queue, batch_files: int) -> str:
    with catalog.session() as session:
        params = {"library_id": register_library(catalog, root), "batch_files": batch_files}
        scan_id = new_job(session, "scan", params).id
    outcome = execute(
        catalog,
        scan_id,
        lambda run: scan_library(catalog, clap, LIMITS, run, batch_size=2, enqueue=queue.send),
        lease_s=LEASE_S,
    )
    assert outcome.status == "delegated"
    return scan_id


def run_batch(catalog: Catalog, clap: Any, batch_id: str) -> str:
    body = lambda run: index_batch(catalog, clap, LIMITS, run)  # noqa: E731
    return execute(catalog, batch_id, body, lease_s=LEASE_S).status


def test_scan_fans_out_and_the_last_batch_finishes_it(
    catalog: Catalog, tiny_clap: Any, tmp_path: Path
) -> None:
    root = tmp_path / "library"
    write_library(root, count=10, seconds=1.0)
    queue = Queue()
    scan_id = start_scan(catalog, tiny_clap, root, queue, batch_files=4)
    batches = [job_id for job_id, kind in queue.sent]
    assert [kind for _, kind in queue.sent] == ["index_batch"] * 3
    scan = job(catalog, scan_id)
    assert scan.status == "running" and scan.params["fan_out"]["batches"] == batches
    assert [len(job(catalog, b).params["paths"]) for b in batches] == [4, 4, 2]
    assert count(catalog, Sound) == 0  # the scan itself indexed nothing

    assert run_batch(catalog, tiny_clap, batches[2]) == "succeeded"
    assert job(catalog, scan_id).progress == pytest.approx(0.2)
    assert job(catalog, scan_id).message == "1 of 3 batches done (2 of 10 files)"
    for batch_id in batches[:2]:
        assert run_batch(catalog, tiny_clap, batch_id) == "succeeded"
    done = job(catalog, scan_id)
    assert done.status == "succeeded", done.error
    assert done.result is not None
    assert (done.result["files"], done.result["added"], done.result["batches"]) == (10, 10, 3)
    assert count(catalog, Sound) == count(catalog, Location) == count(catalog, OutboxEntry) == 10


def test_a_batch_run_twice_writes_nothing_twice(
    catalog: Catalog, tiny_clap: Any, tmp_path: Path
) -> None:
    root = tmp_path / "library"
    write_library(root, count=6, seconds=1.0)
    # Same bytes at another path, in another batch: one sound, two locations.
    (root / "Copies").mkdir()
    (root / "Copies" / "again.wav").write_bytes((root / "Ambience" / "clip_00.wav").read_bytes())
    queue = Queue()
    scan_id = start_scan(catalog, tiny_clap, root, queue, batch_files=3)
    first, *rest = [job_id for job_id, _ in queue.sent]
    assert run_batch(catalog, tiny_clap, first) == "succeeded"
    with catalog.session() as session:  # as if its worker died after the write
        session.get(Job, first).status = "queued"  # type: ignore[union-attr]
    assert run_batch(catalog, tiny_clap, first) == "succeeded"
    again = job(catalog, first)
    assert again.attempts == 2 and again.result is not None
    assert (again.result["unchanged"], again.result["added"]) == (3, 0)
    for batch_id in rest:
        assert run_batch(catalog, tiny_clap, batch_id) == "succeeded"
    assert job(catalog, scan_id).status == "succeeded"
    assert count(catalog, Location) == 7
    assert count(catalog, Sound) == count(catalog, OutboxEntry) == 6


def test_a_scan_run_again_resends_its_queued_batches(
    catalog: Catalog, tiny_clap: Any, tmp_path: Path
) -> None:
    root = tmp_path / "library"
    write_library(root, count=5, seconds=1.0)
    queue = Queue()
    scan_id = start_scan(catalog, tiny_clap, root, queue, batch_files=2)
    batches = [job_id for job_id, _ in queue.sent]
    assert run_batch(catalog, tiny_clap, batches[0]) == "succeeded"
    with catalog.session() as session:  # recovery: its lease ran out
        session.get(Job, scan_id).status = "queued"  # type: ignore[union-attr]
    again = Queue()
    body = lambda run: scan_library(catalog, tiny_clap, LIMITS, run, enqueue=again.send)  # noqa: E731
    assert execute(catalog, scan_id, body, lease_s=LEASE_S).status == "delegated"
    assert [job_id for job_id, _ in again.sent] == batches[1:]
    for batch_id in batches[1:]:
        assert run_batch(catalog, tiny_clap, batch_id) == "succeeded"
    assert job(catalog, scan_id).status == "succeeded"
    assert count(catalog, Sound) == 5


def test_index_matches_the_catalog_after_sync(
    catalog: Catalog, tiny_clap: Any, tmp_path: Path
) -> None:
    root = tmp_path / "library"
    write_library(root, count=7, seconds=1.0)
    queue = Queue()
    start_scan(catalog, tiny_clap, root, queue, batch_files=2)
    for batch_id, _ in queue.sent:
        run_batch(catalog, tiny_clap, batch_id)
    index = EdgeVectorIndex(tmp_path / "index", tiny_clap.dim)
    try:
        syncer = IndexSyncer(catalog, index, tiny_clap.model_id)
        assert syncer.sync() == 7
        assert index.count() == 7 and syncer.diff().clean
    finally:
        index.close()
