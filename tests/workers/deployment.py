"""A real deployment for queue tests: a `foley worker` process beside the API in the test
process, sharing a data dir, a catalog and a broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bench.services import drop_redis_keys, fresh_postgres_database
from core.catalog import Job
from core.config import Settings
from core.db import Catalog
from core.jobs import new_job
from core.queue import JobQueue
from search.api.main import create_app
from search.service import Foley

API_KEY = "test-key-7f3a"
LEASE_S = 2.0
FINISHED = ("succeeded", "failed", "cancelled")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Deployment:
    name: str
    settings: Settings
    env: dict[str, str]
    log_path: Path
    foley: Foley
    client: TestClient
    queue: JobQueue
    worker: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    headers = {"X-API-Key": API_KEY}

    # --- the worker process -------------------------------------------------------------
    def start_worker(self) -> None:
        self._log = self.log_path.open("ab")
        self.worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "foley",
                "worker",
                "--queues=cpu,gpu",
                f"--hostname=test-{uuid.uuid4().hex[:8]}@%h",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def pool_pids(self) -> list[int]:
        assert self.worker is not None
        return children_of(self.worker.pid)

    def busy_pool_pid(self, samples: int = 20) -> int:
        """The pool process that is computing (the others wait for a task): over `samples`
        looks 5 ms apart, the one that gained the most CPU time, then was found running most
        often (a loaded machine can leave the busy one waiting for a core at every look)."""
        pids = self.pool_pids()
        ticks = {pid: cpu_ticks(pid) for pid in pids}
        running = dict.fromkeys(pids, 0)
        for _ in range(samples):
            for pid in pids:
                running[pid] += process_state(pid) == "R"
            time.sleep(0.005)
        return max(pids, key=lambda pid: (cpu_ticks(pid) - ticks[pid], running[pid]))

    def kill_worker(self) -> None:
        """SIGKILL the worker's main process and its pool processes at once."""
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=10)

    def stop_worker(self) -> None:
        if self.worker is None or self.worker.poll() is not None:
            return
        self.worker.send_signal(signal.SIGTERM)
        try:
            self.worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.wait()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    # --- jobs ---------------------------------------------------------------------------
    def submit(self, kind: str, **params: Any) -> str:
        with self.foley.catalog.session() as session:
            job_id = new_job(session, kind, params).id
        self.queue.send(job_id, kind)
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/jobs/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait(
        self, job_id: str, until: Any = FINISHED, timeout: float = 90.0, **extra: Any
    ) -> dict[str, Any]:
        """Poll until the job's status is in `until` (and `extra(job)` holds, if given)."""
        check = extra.get("where", lambda job: True)
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in until and check(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"job {job_id} stuck at {job}\n--- worker log ---\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def raw_job(self, job_id: str) -> Job:
        with self.foley.catalog.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job


@contextmanager
def open_deployment(
    name: str,
    root: Path,
    backend: dict[str, str],
    clap_dir: Path,
    clap: Any,
    *,
    captioner: Path,
    library_roots: Path,
    lease_s: float = LEASE_S,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Deployment]:
    """The API (in this process, syncing the index) and one worker process, on `backend`
    (empty: the embedded queue and a SQLite catalog in `root`), ready for jobs."""
    values = {
        "FOLEY_DATA_DIR": str(root / "data"),
        "FOLEY_CLAP_CHECKPOINT": str(clap_dir),
        "FOLEY_CAPTIONER_CHECKPOINT": str(captioner),
        "FOLEY_GENERATOR_CHECKPOINT": str(root / "no-generator"),
        "FOLEY_API_KEYS": API_KEY,
        "FOLEY_JOB_LEASE_S": str(lease_s),
        "FOLEY_LIBRARY_ROOTS": str(library_roots),
        **backend,
        **(extra_env or {}),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOLEY_")}
    env.update(values, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    settings = Settings(
        data_dir=Path(values["FOLEY_DATA_DIR"]),
        clap_checkpoint=clap_dir,
        captioner_checkpoint=captioner,
        generator_checkpoint=Path(values["FOLEY_GENERATOR_CHECKPOINT"]),
        api_keys=API_KEY,
        job_lease_s=lease_s,
        library_roots=values["FOLEY_LIBRARY_ROOTS"],
        database_url=backend.get("FOLEY_DATABASE_URL"),
        broker_url=backend.get("FOLEY_BROKER_URL"),
        broker_key_prefix=backend.get("FOLEY_BROKER_KEY_PREFIX", ""),
        qdrant_url=None,
    )
    settings.ensure_dirs()
    Catalog(settings.catalog_url).dispose()  # migrated before the worker starts
    foley = Foley.open(settings, clap=clap)
    foley.start_background_sync(0.2)
    try:
        with TestClient(create_app(foley=foley)) as client:
            dep = Deployment(
                name=name,
                settings=settings,
                env=env,
                log_path=root / "worker.log",
                foley=foley,
                client=client,
                queue=client.app.state.queue,  # type: ignore[attr-defined]
            )
            dep.start_worker()
            try:
                # A loaded machine takes minutes to start a worker (torch, the models).
                dep.wait(dep.submit("ping"), until=("succeeded",), timeout=600)
                yield dep
            finally:
                dep.stop_worker()
    finally:
        foley.close()


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...); none once the
    process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def process_state(pid: int) -> str:
    """A process's state letter (R running, S sleeping, ...); empty once it is gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields else ""


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process, in clock ticks (0 once it is gone)."""
    fields = _stat_fields(pid)
    return int(fields[11]) + int(fields[12]) if fields else 0


def children_of(pid: int) -> list[int]:
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and (fields := _stat_fields(entry.name)) and int(fields[1]) == pid
    ]


def backends(kind: str) -> Iterator[dict[str, str]]:
    if kind == "embedded":
        yield {}
        return
    redis_url = os.environ.get("FOLEY_TEST_REDIS_URL")
    postgres_url = os.environ.get("FOLEY_TEST_POSTGRES_URL")
    missing = [
        name
        for name, value in (
            ("FOLEY_TEST_REDIS_URL", redis_url),
            ("FOLEY_TEST_POSTGRES_URL", postgres_url),
        )
        if not value
    ]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not set: scale-out (Redis + PostgreSQL) skipped")
    assert redis_url and postgres_url
    prefix = f"foley-test-{uuid.uuid4().hex[:10]}:"
    with fresh_postgres_database(postgres_url, "foley_jobs") as database_url:
        try:
            yield {
                "FOLEY_DATABASE_URL": database_url,
                "FOLEY_BROKER_URL": redis_url,
                "FOLEY_BROKER_KEY_PREFIX": prefix,
            }
        finally:
            drop_redis_keys(redis_url, prefix)
