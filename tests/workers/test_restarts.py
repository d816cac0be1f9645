"""Faults, injected: the catalog's PostgreSQL and the queue's Redis stopped and started again
while a real worker process runs upload jobs.

The test starts its own `postgres` and `redis-server` (tests/workers/servers.py) on spare
ports, so the shared test servers are never touched. Each round queues uploads, waits until
the worker is inside a job, stops one server, keeps it down for a while (uploads and job
reads meanwhile get a 503 naming the problem), then starts it again. At the end every job
has finished or failed with a reason, and nothing is half-written: each succeeded upload is
one sound with one location, one embedding and one outbox entry; every stored file belongs
to a sound; no failed upload left anything; the index holds exactly the catalog's sounds.

Default run: the PostgreSQL restart (fast shutdown) and a Redis restart, a few uploads each.
Slow run: more uploads, immediate (crash-like) stops too, and outages longer than the
workers' retries, so the "gave up, then failed with the reason" path runs. The table (faults
injected, survived, lost) is printed (`pytest -s`) and written to restarts.json.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from sqlalchemy import func, select

from core.catalog import Embedding, Job, Location, OutboxEntry, Sound
from core.jobs import FINISHED
from tests.sounds import SAMPLE_RATE, tone
from tests.workers.deployment import API_KEY, Deployment, open_deployment
from tests.workers.servers import OwnPostgres, OwnRedis, own_servers

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

SETTLE_TIMEOUT_S = 600.0
RESEND_S = 10.0


@dataclass
class Fault:
    server: str  # postgresql or redis
    mode: str  # how it was stopped
    down_s: float
    jobs_in_flight: int = 0  # unfinished jobs when it stopped
    running: int = 0  # of which running
    refused_while_down: dict[str, int] = field(default_factory=dict)  # status code -> requests


@dataclass
class RestartReport:
    faults: list[Fault] = field(default_factory=list)
    jobs: int = 0
    succeeded: int = 0
    failed_with_reason: int = 0
    unfinished: int = 0
    failed_without_reason: int = 0
    half_written: int = 0
    survived: int = 0  # faults after which every job in flight finished or failed with a reason
    lost: int = 0  # jobs unfinished, failed with no reason, or half-written


@pytest.fixture(scope="module")
def restartable(
    tmp_path_factory: pytest.TempPathFactory, tiny_clap_dir: Path, tiny_clap: Any
) -> Iterator[tuple[Deployment, OwnPostgres, OwnRedis]]:
    root = tmp_path_factory.mktemp("restarts")
    with own_servers(root) as (postgres, redis):
        backend = {
            "FOLEY_DATABASE_URL": postgres.url,
            "FOLEY_BROKER_URL": redis.url,
            "FOLEY_BROKER_KEY_PREFIX": "foley-restarts:",
        }
        with open_deployment(
            "restarts",
            root,
            backend,
            tiny_clap_dir,
            tiny_clap,
            captioner=root / "no-captioner",
            library_roots=root,
            # Queued jobs whose message a restart lost are sent again after this long.
            extra_env={"FOLEY_JOB_RESEND_S": str(RESEND_S)},
        ) as dep:
            yield dep, postgres, redis


def wav(kind: int, seconds: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(kind, seconds), SAMPLE_RATE, format="WAV")
    return buffer.getvalue()


class Run:
    def __init__(self, dep: Deployment, postgres: OwnPostgres, redis: OwnRedis) -> None:
        self.dep, self.postgres, self.redis = dep, postgres, redis
        self.job_ids: list[str] = []
        self.report = RestartReport()
        self._kind = 1000

    def upload(self, count: int, seconds: float) -> list[str]:
        files = []
        for _ in range(count):
            self._kind += 1
            files.append(("files", (f"take-{self._kind}.wav", wav(self._kind, seconds))))
        response = self.dep.client.post("/api/uploads", files=files, headers=self.dep.headers)
        assert response.status_code == 202, response.text
        ids = [job["id"] for job in response.json()["data"]]
        self.job_ids += ids
        return ids

    def statuses(self, ids: list[str]) -> dict[str, str]:
        with self.dep.foley.catalog.session() as session:
            rows = session.execute(select(Job.id, Job.status).where(Job.id.in_(ids)))
            return dict(rows.tuples().all())

    def wait_until_running(self, ids: list[str]) -> None:
        """Until the worker is inside these jobs (after the earlier rounds' jobs, which can take
        minutes on a loaded machine). One request's files run as one upload batch, so they are
        running together rather than one running while the others wait."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while time.monotonic() < deadline:
            states = list(self.statuses(ids).values())
            if "running" in states:
                return
            if all(s in FINISHED for s in states):
                break
            time.sleep(0.02)
        raise AssertionError(f"never caught a job running: {self.statuses(ids)}")

    def inject(self, server: str, mode: str, down_s: float, ids: list[str]) -> None:
        fault = Fault(server, mode, down_s)
        states = list(self.statuses(ids).values())
        fault.jobs_in_flight = sum(s not in FINISHED for s in states)
        fault.running = states.count("running")
        target = self.postgres if server == "postgresql" else self.redis
        target.stop(mode)
        refused: dict[str, int] = {}
        until = time.monotonic() + down_s
        while time.monotonic() < until:
            for code, error in self._requests_while_down(server, ids[0]):
                key = f"{code} {error}"
                refused[key] = refused.get(key, 0) + 1
            time.sleep(min(1.0, max(0.0, until - time.monotonic())))
        target.start()
        fault.refused_while_down = refused
        self.report.faults.append(fault)

    def _requests_while_down(self, server: str, job_id: str) -> list[tuple[int, str]]:
        """What a client gets while the server is down: a 503 naming the problem, never a 500."""
        client, headers = self.dep.client, {"X-API-Key": API_KEY}
        if server == "postgresql":
            response = client.get(f"/api/jobs/{job_id}")
        else:
            files = [("files", ("while-down.wav", wav(1, 0.5)))]
            response = client.post("/api/uploads", files=files, headers=headers)
        error = response.json().get("error", "") if response.status_code >= 400 else ""
        return [(response.status_code, error)]

    def settle(self) -> None:
        """Wait for every job to finish; those that never do are counted as lost."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while time.monotonic() < deadline:
            if all(s in FINISHED for s in self.statuses(self.job_ids).values()):
                return
            time.sleep(0.2)


def check_nothing_half_written(run: Run) -> RestartReport:
    dep, report = run.dep, run.report
    dep.foley.sync()
    with dep.foley.catalog.session() as session:
        jobs = list(session.scalars(select(Job).where(Job.kind == "upload")))
        sounds = {s.content_hash: s for s in session.scalars(select(Sound))}
        locations = list(session.execute(select(Location.sound_id, Location.path)).tuples())
        embeddings = dict(
            session.execute(select(Embedding.sound_id, func.count()).group_by(Embedding.sound_id))
            .tuples()
            .all()
        )
        upserts = dict(
            session.execute(
                select(OutboxEntry.sound_id, func.count()).group_by(OutboxEntry.sound_id)
            )
            .tuples()
            .all()
        )
    report.jobs = len(jobs)
    half: list[str] = []
    located: dict[int, list[str]] = {}
    for sound_id, path in locations:
        located.setdefault(sound_id, []).append(path)
    for job in jobs:
        digest = job.params.get("content_hash")
        if job.status == "succeeded":
            report.succeeded += 1
            sound = sounds.get(digest)
            if sound is None or job.result["sound_id"] != sound.id:
                half.append(f"{job.id}: succeeded without its sound")
            elif embeddings.get(sound.id) != 1 or upserts.get(sound.id) != 1:
                half.append(f"{job.id}: {embeddings.get(sound.id)} embeddings, outbox {upserts}")
            elif len(located.get(sound.id, [])) != 1:
                half.append(f"{job.id}: locations {located.get(sound.id)}")
        elif job.status == "failed":
            if job.error:
                report.failed_with_reason += 1
            else:
                report.failed_without_reason += 1
            if digest in sounds:
                half.append(f"{job.id}: failed but its sound exists")
        else:
            report.unfinished += 1
    stored = {str(p) for p in dep.settings.store_path.rglob("*") if p.is_file()}
    every_location = {path for _, path in locations}
    half += [f"stored without a sound: {path}" for path in sorted(stored - every_location)]
    half += [f"located but not stored: {path}" for path in sorted(every_location - stored)]
    diff = dep.foley.syncer.diff()
    if not diff.clean or diff.pending:
        half.append(f"index and catalog differ: {diff}")
    report.half_written = len(half)
    report.lost = report.unfinished + report.failed_without_reason + len(half)
    report.survived = len(report.faults) if report.lost == 0 else 0
    assert not half, "\n".join(half[:20])
    return report


def write_report(report: RestartReport, folder: Path) -> None:
    (folder / "restarts.json").write_text(json.dumps(asdict(report), indent=1))
    lines = [
        "| fault | how | down | jobs in flight (running) | while down | survived |",
        "|---|---|---|---|---|---|",
    ]
    for f in report.faults:
        refused = ", ".join(f"{k}: {v}" for k, v in sorted(f.refused_while_down.items()))
        lines.append(
            f"| {f.server} stopped | {f.mode} | {f.down_s:.0f} s | {f.jobs_in_flight} "
            f"({f.running}) | {refused} | {'yes' if report.lost == 0 else 'no'} |"
        )
    lines.append(
        f"\njobs {report.jobs}: succeeded {report.succeeded}, failed with a reason "
        f"{report.failed_with_reason}, unfinished {report.unfinished}, failed without a reason "
        f"{report.failed_without_reason}, half-written {report.half_written}; faults "
        f"{len(report.faults)}, survived {report.survived}, lost {report.lost}"
    )
    print("\n" + "\n".join(lines))  # noqa: T201 - the table is this test's report


def run_restarts(
    restartable: tuple[Deployment, OwnPostgres, OwnRedis],
    plan: list[tuple[str, str, float]],
    uploads: int,
    folder: Path,
) -> RestartReport:
    run = Run(*restartable)
    for server, mode, down_s in plan:
        ids = run.upload(uploads, seconds=20.0)
        run.wait_until_running(ids)
        run.inject(server, mode, down_s, ids)
    # A job in flight at a fault may give up with a reason; one sent after the faults must not.
    after = run.upload(2, seconds=1.0)
    run.settle()
    try:
        report = check_nothing_half_written(run)
    finally:
        write_report(run.report, folder)
    for fault in report.faults:
        assert fault.jobs_in_flight >= 2 and fault.running >= 1  # stopped mid-run
        # While a server was down, clients were told so (503), never a 500.
        assert fault.refused_while_down, fault
        assert all(key.startswith("503 ") for key in fault.refused_while_down), fault
    assert report.unfinished == report.failed_without_reason == 0
    assert set(run.statuses(after).values()) == {"succeeded"}, run.statuses(after)
    # Every failure is a job in flight when a server went down, or an upload refused (503)
    # while the broker was down, whose job records why.
    refused_uploads = sum(
        sum(f.refused_while_down.values()) for f in report.faults if f.server == "redis"
    )
    in_flight = sum(f.jobs_in_flight for f in report.faults)
    assert report.failed_with_reason <= in_flight + refused_uploads, report
    return report


def test_postgres_and_redis_restarted_mid_run(
    restartable: tuple[Deployment, OwnPostgres, OwnRedis], tmp_path: Path
) -> None:
    plan = [("postgresql", "fast", 4.0), ("redis", "term", 4.0)]
    report = run_restarts(restartable, plan, uploads=3, folder=tmp_path)
    assert report.succeeded == report.jobs - report.failed_with_reason
    assert report.survived == 2 and report.lost == 0


@pytest.mark.slow
def test_postgres_and_redis_restarted_again_and_again(
    restartable: tuple[Deployment, OwnPostgres, OwnRedis], tmp_path: Path
) -> None:
    plan = [
        ("postgresql", "fast", 5.0),
        ("redis", "term", 5.0),
        ("postgresql", "immediate", 10.0),
        ("redis", "kill", 10.0),
        ("postgresql", "fast", 45.0),  # longer than the workers' transient retries
        ("redis", "term", 30.0),
    ]
    report = run_restarts(restartable, plan, uploads=4, folder=tmp_path)
    assert report.survived == len(plan) and report.lost == 0
