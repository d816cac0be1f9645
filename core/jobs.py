"""Job records: long operations that clients submit and poll.

The `jobs` row is the truth about a job; the queue only carries its id. Every change of
status is a compare-and-set on (status, attempts), so a message delivered twice, a worker
that died and whose job was picked up again, or a cancel racing a finish can never leave
two runs of one job both taking effect:

- `claim` turns a queued job into a running one and numbers the attempt. A job already
  running is claimed again only when its lease ran out (its worker stopped heartbeating).
- A `JobRun` is one attempt. Its progress reports, heartbeats and final status only apply
  while the row still says "running, attempt N"; when they don't, the attempt learns that
  it was cancelled (`JobCancelled`) or superseded (`JobSuperseded`) and stops.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from core.catalog import Job, JobStatus, utcnow
from core.db import Catalog

log = logging.getLogger(__name__)

ACTIVE = frozenset({JobStatus.queued.value, JobStatus.running.value})
FINISHED = frozenset({JobStatus.succeeded.value, JobStatus.failed.value, JobStatus.cancelled.value})
# Errors that pass: the database restarting or locked for a moment, a dropped connection.
# Everything else is a property of the job's input and fails it at once.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
)


class JobKind(enum.StrEnum):
    ping = "ping"  # does nothing: measures the queue's round trip
    upload = "upload"
    scan = "scan"
    caption = "caption"  # caption and tag sounds already in the catalog
    index_batch = "index_batch"  # one batch of a library scan fanned out over workers
    generate = "generate"  # new sounds from a description (and the library's nearest sounds)


class JobStop(Exception):
    """This attempt must stop: the job is no longer its to run."""


class JobCancelled(JobStop):
    """The job was cancelled while this attempt ran."""


class JobSuperseded(JobStop):
    """Another attempt owns the job now (this one's lease ran out)."""


class JobDelegated(Exception):
    """The attempt handed the job's work to other jobs: the row stays running, and the last
    of them to finish finishes it (a library scan fanned out into `index_batch` jobs)."""


class JobFailed(Exception):
    """The job cannot succeed: `str()` is the sentence its `error` field shows."""


class JobBusy(Exception):
    """Another attempt holds a fresh lease on the job; try again in `wait_s` seconds."""

    def __init__(self, job_id: str, wait_s: float) -> None:
        super().__init__(f"job {job_id} is running elsewhere; retry in {wait_s:.1f} s")
        self.wait_s = wait_s


class JobFinishedError(Exception):
    """The job already finished, so it cannot be cancelled."""


def _aware(moment: datetime) -> datetime:
    # SQLite hands timestamps back without a zone; Foley writes them in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def new_job(
    session: Session,
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    status: str = JobStatus.queued.value,
    error: str | None = None,
) -> Job:
    """Add a job row; a job refused before it was queued is created already `failed`."""
    now = utcnow()
    job = Job(
        id=str(uuid.uuid4()),
        kind=kind,
        status=status,
        progress=0.0,
        message="",
        params=dict(params or {}),
        error=error,
        attempts=0,
        created_at=now,
        updated_at=now,
        finished_at=now if status in FINISHED else None,
    )
    session.add(job)
    session.flush()
    return job


def list_jobs(
    session: Session,
    *,
    status: str | None = None,
    kind: str | None = None,
    skip: int = 0,
    limit: int = 100,
) -> tuple[list[Job], int]:
    """Jobs, newest first, and how many match in all."""
    query = select(Job)
    if status is not None:
        query = query.where(Job.status == status)
    if kind is not None:
        query = query.where(Job.kind == kind)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    jobs = session.scalars(
        query.order_by(Job.created_at.desc(), Job.id).offset(skip).limit(limit)
    ).all()
    return list(jobs), count


def cancel_job(session: Session, job_id: str) -> Job:
    """Cancel a queued or running job. LookupError if unknown, JobFinishedError if done."""
    now = utcnow()
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE))
        .values(status=JobStatus.cancelled.value, finished_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise LookupError(f"no job with id {job_id}")
    if not done.rowcount:  # type: ignore[attr-defined]
        raise JobFinishedError(
            f"job {job_id} already {job.status}; only queued or running jobs can be cancelled"
        )
    return job


def claim(catalog: Catalog, job_id: str, lease_s: float) -> JobRun | None:
    """Start an attempt at the job, or None when there is nothing to do (unknown or finished).

    Raises JobBusy while another attempt holds a fresh lease.
    """
    for _ in range(5):
        with catalog.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                log.warning("job %s is not in the catalog; dropping its task", job_id)
                return None
            if job.status in FINISHED:
                return None
            now = utcnow()
            if job.status == JobStatus.running.value:
                age = (now - _aware(job.updated_at)).total_seconds()
                if age < lease_s:
                    raise JobBusy(job_id, lease_s - age)
            taken = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == job.status, Job.attempts == job.attempts)
                .values(
                    status=JobStatus.running.value,
                    attempts=job.attempts + 1,
                    started_at=now,
                    updated_at=now,
                    message="started" if job.attempts == 0 else "started again",
                )
                .execution_options(synchronize_session=False)
            )
            if taken.rowcount:  # type: ignore[attr-defined]
                return JobRun(catalog, job.id, job.kind, dict(job.params), job.attempts + 1)
        # Lost a race with another claim or a cancel: look again.
    return None


@dataclass
class JobRun:
    """One attempt at a job. Only its own attempt's writes ever reach the row."""

    catalog: Catalog
    id: str
    kind: str
    params: dict[str, Any]
    attempt: int
    finished: bool = False
    # False on the last try: a transient error then fails the job instead of a retry, so the
    # body must clean up as for any failure.
    may_retry: bool = True
    _lost: str | None = field(default=None, repr=False)

    def _mine(self) -> Any:
        return (
            (Job.id == self.id)
            & (Job.status == JobStatus.running.value)
            & (Job.attempts == self.attempt)
        )

    def _set(self, session: Session, **values: Any) -> bool:
        values.setdefault("updated_at", utcnow())
        result = session.execute(
            update(Job)
            .where(self._mine())
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def _raise_lost(self, session: Session | None = None) -> None:
        if session is None:
            with self.catalog.session() as own:
                status = own.scalar(select(Job.status).where(Job.id == self.id))
        else:
            status = session.scalar(select(Job.status).where(Job.id == self.id))
        if status == JobStatus.cancelled.value:
            raise JobCancelled(f"job {self.id} was cancelled")
        raise JobSuperseded(f"job {self.id} attempt {self.attempt} is no longer the live one")

    def check(self) -> None:
        """Raise JobCancelled/JobSuperseded if a heartbeat found the job taken away."""
        if self._lost is not None:
            self._raise_lost()

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress (0..1); stops the attempt if the job was cancelled meanwhile."""
        fraction = min(max(float(fraction), 0.0), 1.0)
        with self.catalog.session() as session:
            if self._set(session, progress=fraction, message=message):
                return
            self._raise_lost(session)

    def heartbeat(self) -> bool:
        """Refresh the lease; False once the job is no longer this attempt's."""
        with self.catalog.session() as session:
            alive = self._set(session)
        if not alive:
            self._lost = "lost"
        return alive

    @contextmanager
    def heartbeating(self, interval_s: float) -> Iterator[None]:
        """Refresh the lease every `interval_s` from a thread while the body runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval_s):
                try:
                    if not self.heartbeat():
                        return
                except Exception:  # the next beat or the body's own writes report it
                    log.warning("heartbeat for job %s failed", self.id, exc_info=True)

        thread = threading.Thread(target=beat, name=f"job-heartbeat-{self.id[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=interval_s + 5)

    def hand_off_in(self, session: Session, params: dict[str, Any], message: str) -> None:
        """Record, inside `session`, the params of a job whose work now runs as other jobs
        (then raise JobDelegated). Raises JobCancelled/JobSuperseded if it is not ours."""
        if not self._set(session, params=params, message=message):
            self._raise_lost(session)
        self.params = params

    def succeed_in(self, session: Session, result: dict[str, Any], message: str = "done") -> None:
        """Mark the job succeeded inside `session`, so it commits with the job's own writes.

        Raises JobCancelled/JobSuperseded (and the caller's transaction rolls back) when the
        job is no longer this attempt's.
        """
        now = utcnow()
        ok = self._set(
            session,
            status=JobStatus.succeeded.value,
            progress=1.0,
            message=message,
            result=result,
            error=None,
            finished_at=now,
        )
        if not ok:
            self._raise_lost(session)
        self.finished = True

    def succeed(self, result: dict[str, Any], message: str = "done") -> None:
        with self.catalog.session() as session:
            self.succeed_in(session, result, message)

    def fail(self, error: str) -> bool:
        now = utcnow()
        with self.catalog.session() as session:
            done = self._set(session, status=JobStatus.failed.value, error=error, finished_at=now)
        self.finished = done
        return done

    def release(self, message: str) -> bool:
        """Hand the job back to the queue (a retry follows) without waiting for the lease."""
        with self.catalog.session() as session:
            return self._set(session, status=JobStatus.queued.value, message=message)


JobBody = Callable[[JobRun], dict[str, Any]]


@dataclass(frozen=True)
class Outcome:
    """What one delivery of a job's task did: the job's status after it, or "skipped"."""

    status: str
    job_id: str
    attempt: int = 0


def execute(
    catalog: Catalog,
    job_id: str,
    body: JobBody,
    *,
    lease_s: float,
    retry_transient: bool = True,
) -> Outcome:
    """Claim the job and run `body` on it, recording how it ended.

    `body` reports progress through the run and returns the job's result (or marks the job
    succeeded itself with `run.succeed_in`). A transient error is re-raised after handing
    the job back to the queue when `retry_transient`; otherwise it fails the job.
    Raises JobBusy when another attempt is live.
    """
    run = claim(catalog, job_id, lease_s)
    if run is None:
        return Outcome("skipped", job_id)
    run.may_retry = retry_transient
    log.info("job %s (%s) attempt %d started", job_id, run.kind, run.attempt)
    started = time.monotonic()
    with run.heartbeating(max(lease_s / 4, 0.05)):
        status = _run_body(run, body, retry_transient)
    log.info(
        "job %s attempt %d: %s in %.2f s", job_id, run.attempt, status, time.monotonic() - started
    )
    return Outcome(status, job_id, run.attempt)


def _run_body(run: JobRun, body: JobBody, retry_transient: bool) -> str:
    try:
        result = body(run)
        if not run.finished:
            run.succeed(result)
        return JobStatus.succeeded.value
    except JobCancelled:
        return JobStatus.cancelled.value
    except JobSuperseded:
        return "superseded"
    except JobDelegated:
        return "delegated"
    except JobFailed as exc:
        run.fail(str(exc))
        return JobStatus.failed.value
    except TRANSIENT_ERRORS as exc:
        if not retry_transient:
            run.fail(f"gave up after repeated transient errors: {exc}")
            return JobStatus.failed.value
        try:
            run.release(f"waiting to retry after a transient error: {type(exc).__name__}")
        except Exception as release_error:  # the lease runs out instead; the retry claims it
            log.warning("could not hand job %s back to the queue: %s", run.id, release_error)
        raise
    except Exception as exc:
        log.exception("job %s failed", run.id)
        run.fail(f"internal error: {type(exc).__name__}: {exc}")
        return JobStatus.failed.value


def requeue_orphans(
    catalog: Catalog,
    kinds: Sequence[str],
    stale_before: datetime,
    *,
    include_queued: bool,
    queued_before: datetime | None = None,
) -> list[tuple[str, str]]:
    """Jobs to send to the queue again, as (id, kind): running jobs whose lease ended before
    `stale_before` (their worker died or lost its broker; each is put back to queued); queued
    jobs untouched since `queued_before` (their message may be gone; each is touched, so it
    is sent at most once per period); and, when the broker can lose a message a dead worker
    had taken (`include_queued`), every queued job.
    """
    found: list[tuple[str, str]] = []
    # SQLite compares the stored UTC text, so the bound values must be UTC too.
    stale_before = _aware(stale_before).astimezone(UTC)
    if queued_before is not None:
        queued_before = _aware(queued_before).astimezone(UTC)
    with catalog.session() as session:
        rows = session.execute(
            select(Job.id, Job.kind, Job.status, Job.attempts).where(
                Job.kind.in_(list(kinds)), Job.status.in_(ACTIVE)
            )
        ).all()
        for job_id, kind, status, attempts in rows:
            if status == JobStatus.queued.value:
                if include_queued or _touch_if_idle(session, job_id, attempts, queued_before):
                    found.append((job_id, kind))
                continue
            reset = session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.status == JobStatus.running.value,
                    Job.attempts == attempts,
                    Job.updated_at < stale_before,
                )
                .values(
                    status=JobStatus.queued.value,
                    message="its worker stopped; queued again",
                    updated_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
            if reset.rowcount:  # type: ignore[attr-defined]
                found.append((job_id, kind))
    return found


def _touch_if_idle(
    session: Session, job_id: str, attempts: int, idle_before: datetime | None
) -> bool:
    if idle_before is None:
        return False
    touched = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.status == JobStatus.queued.value,
            Job.attempts == attempts,
            Job.updated_at < idle_before,
        )
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(touched.rowcount)  # type: ignore[attr-defined]


def lease_cutoff(lease_s: float) -> datetime:
    return utcnow() - timedelta(seconds=lease_s)


def ping(run: JobRun) -> dict[str, Any]:
    """The trivial job: optionally waits `seconds`, reporting progress (and so noticing a
    cancel) ten times a second."""
    seconds = float(run.params.get("seconds", 0.0))
    started = time.monotonic()
    while (waited := time.monotonic() - started) < seconds:
        time.sleep(min(0.1, seconds - waited))
        run.progress((time.monotonic() - started) / seconds, "waiting")
    return {"pong": True, "attempt": run.attempt}
