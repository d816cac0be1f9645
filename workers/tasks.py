"""Celery tasks. Each unpacks a job id and runs a plain function on it through
`core.jobs.execute`, which claims the job, keeps its lease, records progress and outcome.

Idempotent: a task delivered again for a job that finished does nothing; for a job another
attempt is running, it comes back when that attempt's lease would have run out.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import create_engine, text

from core import jobs
from core.jobs import TRANSIENT_ERRORS, JobBusy, JobFailed, JobKind, JobRun
from core.queue import UPLOAD_BATCH_TASK, JobQueue
from index_builder.captions import CaptionFollowUp, caption_sounds
from index_builder.generated import generate_sounds
from index_builder.library_scan import scan_library
from index_builder.scan_batches import index_batch as index_batch_body
from index_builder.uploads import ingest_upload, ingest_uploads
from workers.celery_app import WorkerContext, app, worker_context
from workers.sweeper import recover_jobs

log = logging.getLogger(__name__)

MAX_TRANSIENT_RETRIES = 5
BACKOFF_MAX_S = 120.0

Body = Callable[[WorkerContext, JobRun], dict[str, Any]]


def backoff_s(retries: int) -> float:
    """1, 2, 4 ... seconds up to two minutes, with jitter so retries don't arrive together."""
    return min(2.0**retries, BACKOFF_MAX_S) * random.uniform(0.5, 1.0)


class JobTask(Task):
    """A task that runs one job: claim, lease, progress, outcome, retries."""

    abstract = True
    max_retries = MAX_TRANSIENT_RETRIES
    kind: str = ""

    def run_job(self, job_id: str, body: Body) -> dict[str, Any]:
        retries = self.request.retries
        try:
            return self._run(job_id, body, retries)
        except TRANSIENT_ERRORS as exc:
            log.warning("job %s: transient error, retry %d: %s", job_id, retries + 1, exc)
            raise self.retry(exc=exc, countdown=backoff_s(retries)) from exc

    def _run(self, job_id: str, body: Body, retries: int) -> dict[str, Any]:
        context = worker_context()
        settings = context.settings
        limit = settings.job_time_limit_s

        def guarded(run: JobRun) -> dict[str, Any]:
            try:
                return body(context, run)
            except SoftTimeLimitExceeded:
                raise JobFailed(f"the job ran past its {limit} s time limit") from None

        try:
            outcome = jobs.execute(
                context.catalog,
                job_id,
                guarded,
                lease_s=settings.job_lease_s,
                retry_transient=retries < self.max_retries,
            )
        except JobBusy as busy:
            # Another attempt may still be alive: look again when its lease would end.
            JobQueue(settings, app=self.app).send(job_id, self.kind, countdown=busy.wait_s + 0.5)
            return {"job_id": job_id, "status": "busy"}
        return {"job_id": job_id, "status": outcome.status, "attempt": outcome.attempt}


@app.task(name="foley.ping", base=JobTask, bind=True, kind="ping")
def ping(self: JobTask, job_id: str) -> dict[str, Any]:
    return self.run_job(job_id, lambda context, run: jobs.ping(run))


@app.task(name="foley.upload", base=JobTask, bind=True, kind="upload")
def upload(self: JobTask, job_id: str) -> dict[str, Any]:
    return self.run_job(
        job_id,
        lambda c, run: ingest_upload(
            c.catalog, c.model, c.store, c.limits, run, captioner=c.captioner()[0]
        ),
    )


@app.task(name=UPLOAD_BATCH_TASK, bind=True)
def upload_batch(self: Task, job_ids: list[str]) -> dict[str, Any]:
    c = worker_context()
    resend = ingest_uploads(
        c.catalog, c.model, c.store, c.limits, job_ids,
        lease_s=c.settings.job_lease_s, captioner=c.captioner()[0],
    )  # fmt: skip
    queue = JobQueue(c.settings, app=self.app)
    for job_id, wait_s in resend.items():
        queue.send(job_id, JobKind.upload.value, countdown=wait_s)
    return {"job_ids": job_ids, "sent_again": sorted(resend)}


@app.task(name="foley.scan", base=JobTask, bind=True, kind="scan")
def scan(self: JobTask, job_id: str) -> dict[str, Any]:
    return self.run_job(
        job_id,
        lambda c, run: scan_library(
            c.catalog,
            c.model,
            c.limits,
            run,
            captions=_caption_follow_up(self, c),
            roots=c.settings.library_root_list,
            batch_files=c.settings.scan_batch_files,
            enqueue=JobQueue(c.settings, app=self.app).send,
        ),
    )


@app.task(name="foley.index_batch", base=JobTask, bind=True, kind="index_batch")
def index_batch(self: JobTask, job_id: str) -> dict[str, Any]:
    return self.run_job(
        job_id,
        lambda c, run: index_batch_body(
            c.catalog, c.model, c.limits, run, captions=_caption_follow_up(self, c)
        ),
    )


@app.task(name="foley.caption", base=JobTask, bind=True, kind="caption")
def caption(self: JobTask, job_id: str) -> dict[str, Any]:
    def body(c: WorkerContext, run: JobRun) -> dict[str, Any]:
        captioner, status = c.captioner()
        return caption_sounds(c.catalog, captioner, c.limits, run, unavailable=status)

    return self.run_job(job_id, body)


@app.task(name="foley.generate", base=JobTask, bind=True, kind="generate")
def generate(self: JobTask, job_id: str) -> dict[str, Any]:
    def body(c: WorkerContext, run: JobRun) -> dict[str, Any]:
        generator, status = c.generator()
        return generate_sounds(c.catalog, c.model, c.store, c.limits, run, generator,
                               captioner=c.captioner()[0], unavailable=status)  # fmt: skip

    return self.run_job(job_id, body)


def _caption_follow_up(task: Task, context: WorkerContext) -> CaptionFollowUp | None:
    """How a scan queues its caption jobs, per the settings (None: captions on scan are off)."""
    settings = context.settings
    if not settings.caption_on_scan:
        return None
    captioner, status = context.captioner()
    return CaptionFollowUp(
        enqueue=JobQueue(settings, app=task.app).send,
        batch_size=settings.caption_batch_size,
        unavailable=None if captioner is not None else status,
    )


@app.task(name="foley.recover", bind=True)
def recover(self: Task, queues: list[str], include_queued: bool = False) -> dict[str, Any]:
    """Send again the jobs of these queues whose message was lost (`workers.sweeper`); with
    `include_queued` (embedded queue, at start) every queued job."""
    context = worker_context()
    settings = context.settings
    if include_queued:
        _drop_taken_messages(settings.celery_broker_url)
    queue = JobQueue(settings, app=self.app)
    requeued = recover_jobs(context.catalog, queue, queues, include_queued=include_queued)
    return {"requeued": requeued}


def _drop_taken_messages(broker_url: str) -> None:
    """The embedded queue keeps every message a worker took, hidden; the jobs they carried
    were just re-sent or are running, so the hidden rows are only clutter."""
    engine = create_engine(broker_url.removeprefix("sqla+"), connect_args={"timeout": 30})
    try:
        with engine.begin() as connection:
            deleted = connection.execute(text("DELETE FROM kombu_message WHERE visible = 0"))
            log.info("dropped %d taken messages from the embedded queue", deleted.rowcount)
    except Exception:
        log.warning("could not tidy the embedded queue", exc_info=True)
    finally:
        engine.dispose()
