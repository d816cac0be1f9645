"""Distributed indexing through real worker processes, Redis and PostgreSQL: a scan fans out
into batch jobs, a worker is SIGKILLed in the middle of a batch, another takes over, and
every file ends up in the catalog once and in the index after sync.

Needs FOLEY_TEST_REDIS_URL and FOLEY_TEST_POSTGRES_URL (the scale-out deployment of
conftest.py); skipped, saying so, without them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.catalog import Job, Location, OutboxEntry, Sound
from tests.sounds import write_library
from tests.workers.deployment import ROOT, Deployment

pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.parametrize("deployment", ["scale-out"], indirect=True),
]

FILES = 16
BATCH_FILES = 4


def register(dep: Deployment, root: Path) -> int:
    created = dep.client.post("/api/libraries", json={"path": str(root)}, headers=dep.headers)
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def batches_of(dep: Deployment, scan_id: str) -> list[Job]:
    with dep.foley.catalog.session() as session:
        scan = session.get(Job, scan_id)
        assert scan is not None
        ids = scan.params.get("fan_out", {}).get("batches", [])
        return list(session.scalars(select(Job).where(Job.id.in_(ids))))


def running_mid_batch(dep: Deployment, scan_id: str) -> Job | None:
    """A batch job with some of its files written and some not."""
    for batch in batches_of(dep, scan_id):
        if batch.status == "running" and 0 < batch.progress < 1:
            return batch
    return None


def in_catalog(dep: Deployment, root: Path) -> tuple[list[str], int, int]:
    """The library's location paths, its sounds, and the outbox upserts for them."""
    with dep.foley.catalog.session() as session:
        paths = list(
            session.scalars(select(Location.path).where(Location.path.startswith(str(root))))
        )
        sound_ids = select(Location.sound_id).where(Location.path.startswith(str(root)))
        sounds = session.scalar(select(func.count()).where(Sound.id.in_(sound_ids))) or 0
        upserts = (
            session.scalar(
                select(func.count()).where(
                    OutboxEntry.sound_id.in_(sound_ids), OutboxEntry.op == "upsert"
                )
            )
            or 0
        )
    return paths, sounds, upserts


def assert_index_matches_catalog(dep: Deployment) -> None:
    dep.foley.sync()
    diff = dep.foley.syncer.diff()
    assert diff.pending == 0 and diff.clean, diff


def test_a_killed_workers_batch_is_run_again_without_duplicates(
    deployment: Deployment, tmp_path: Path
) -> None:
    dep = deployment
    root = tmp_path / "big"
    files = write_library(root, count=FILES, seconds=20.0)
    library_id = register(dep, root)
    # One file per transaction, so a batch can be caught half written.
    scan_id = dep.submit("scan", library_id=library_id, batch_files=BATCH_FILES, batch_size=1)
    deadline = time.monotonic() + 300
    while (victim := running_mid_batch(dep, scan_id)) is None:
        status = dep.job(scan_id)["status"]
        assert status in ("queued", "running"), f"no batch caught half written: {status}"
        assert time.monotonic() < deadline, dep.log_tail()
        time.sleep(0.01)
    dep.kill_worker()
    killed = dep.raw_job(victim.id)
    assert killed.status == "running" and killed.attempts == 1
    written_before = in_catalog(dep, root)[1]
    assert 0 < written_before < FILES
    dep.start_worker()

    scan = dep.wait(scan_id, timeout=600)
    assert scan["status"] == "succeeded", f"{scan}\n{dep.log_tail()}"
    assert (scan["result"]["files"], scan["result"]["batches"]) == (FILES, FILES // BATCH_FILES)
    rerun = dep.raw_job(victim.id)
    assert rerun.status == "succeeded" and rerun.attempts == 2
    assert rerun.result is not None and rerun.result["unchanged"] > 0  # its first part stayed

    paths, sounds, upserts = in_catalog(dep, root)
    assert sorted(paths) == sorted(str(p) for p in files)  # every file, each once
    assert sounds == FILES and upserts == FILES  # nothing embedded or written twice
    assert_index_matches_catalog(dep)


def test_foley_index_jobs_waits_for_the_workers(deployment: Deployment, tmp_path: Path) -> None:
    dep = deployment
    root = tmp_path / "cli"
    files = write_library(root, count=9, seconds=1.0)
    done = subprocess.run(
        [sys.executable, "-m", "foley", "index", str(root), "--jobs", "--batch-files", "2"],
        cwd=ROOT,
        env={**dep.env, "FOLEY_CAPTION_ON_SCAN": "false"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr + dep.log_tail()
    assert f"{root}: 9 audio files (0 unchanged), 9 new sounds" in done.stdout
    assert "5 batch jobs" in done.stdout
    paths, sounds, upserts = in_catalog(dep, root)
    assert sorted(paths) == sorted(str(p) for p in files)
    assert sounds == upserts == 9
    assert_index_matches_catalog(dep)
