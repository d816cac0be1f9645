"""Sending jobs to the queue: which task runs each kind of job, on which queue, and the Celery
settings both sides of the queue share.

The API, the benchmark and the workers' own recovery send through a `JobQueue`; a message
carries only the job's id (also used as the Celery task id), the row carries the rest. The
workers (`workers.celery_app`) build their app from the same `make_celery`, naming their tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from core.config import QUEUES, Settings, get_settings
from core.jobs import JobKind

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

TASK_FOR_KIND: dict[str, str] = {
    JobKind.ping.value: "foley.ping",
    JobKind.upload.value: "foley.upload",
    JobKind.scan.value: "foley.scan",
    JobKind.caption.value: "foley.caption",
    JobKind.index_batch.value: "foley.index_batch",
    JobKind.generate.value: "foley.generate",
}
# Uploads and scans embed with CLAP, which is light enough for CPU workers; captions too
# (the compact AutoCap, and uploads caption inside their own job on "cpu" anyway);
# generation goes to "gpu" (a worker started with `--queues cpu,gpu`, the default, takes it
# when no GPU worker runs).
QUEUE_FOR_KIND: dict[str, str] = {
    JobKind.ping.value: "cpu",
    JobKind.upload.value: "cpu",
    JobKind.scan.value: "cpu",
    JobKind.caption.value: "cpu",
    JobKind.index_batch.value: "cpu",
    JobKind.generate.value: "gpu",
}
# Several upload jobs in one task, their embeddings batched; each job keeps its own row.
UPLOAD_BATCH_TASK = "foley.upload_batch"
RECOVER_TASK = "foley.recover"


def kinds_on(queues: list[str]) -> list[str]:
    return [kind for kind, queue in QUEUE_FOR_KIND.items() if queue in queues]


EMBEDDED_TRANSPORT = "core.queue_transport:Transport"
# Soft limit first, so a job that runs too long fails with a message rather than a kill.
SOFT_LIMIT_MARGIN_S = 60
POOL_PROCESS_START_S = 300.0


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for a deployment."""
    from kombu import Exchange, Queue

    time_limit = settings.job_time_limit_s
    conf: dict[str, Any] = {
        "result_backend": settings.celery_result_backend,
        "result_expires": 24 * 3600,
        # The job row holds every outcome and nothing reads Celery's results: workers store
        # none, and senders don't subscribe to them (`ignore_result` on each send), so an API
        # process keeps no connection to the result store that a Redis restart could break.
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": time_limit,
        "task_soft_time_limit": max(time_limit - SOFT_LIMIT_MARGIN_S, time_limit // 2),
        "task_queues": [Queue(name, Exchange("foley"), routing_key=name) for name in QUEUES],
        "task_default_queue": "cpu",
        "task_default_exchange": "foley",
        "task_default_routing_key": "cpu",
        "task_routes": {
            **{TASK_FOR_KIND[k]: {"queue": q} for k, q in QUEUE_FOR_KIND.items()},
            UPLOAD_BATCH_TASK: {"queue": QUEUE_FOR_KIND[JobKind.upload.value]},
        },
        "broker_connection_retry_on_startup": True,
        # Keep reconnecting while the broker is down, however long: Celery's default gives up
        # after 100 tries (about 16 minutes) and the worker exits.
        "broker_connection_max_retries": None,
        # A pool process loads the models before it reports in (`worker_process_init`);
        # Celery's 4 s default kills one still loading on a busy machine, then the next...
        "worker_proc_alive_timeout": POOL_PROCESS_START_S,
        # With late acks a task whose broker connection dropped would run twice otherwise.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # How long to wait for a result from a pool process that died before calling the
        # task lost (and requeueing it); the job row, not the result, is what counts here.
        "worker_lost_wait": 1.0,
        "enable_utc": True,
    }
    broker = settings.celery_broker_url
    if broker.startswith("sqla+sqlite"):
        conf["broker_url"] = broker.removeprefix("sqla+")
        conf["broker_transport"] = EMBEDDED_TRANSPORT
    else:
        conf["broker_url"] = broker
        options: dict[str, Any] = {"visibility_timeout": settings.broker_visibility_timeout_s}
        if settings.broker_key_prefix:
            options["global_keyprefix"] = settings.broker_key_prefix
        conf["broker_transport_options"] = options
        if conf["result_backend"].startswith(("redis://", "rediss://")):
            conf["result_backend_transport_options"] = dict(options)
    return conf


def make_celery(
    settings: Settings | None = None, include: Sequence[str] = (), pool: str | None = None
) -> Celery:
    """A Celery app for `settings`, or for the process's settings, read on first use. A client
    (the API, a benchmark) includes no task modules and runs no pool; the worker names its
    own tasks and its pool class ("module:Class")."""
    from celery import Celery

    def config(settings: Settings) -> dict[str, Any]:
        return celery_config(settings) | ({"worker_pool": pool} if pool else {})

    celery = Celery("foley", include=list(include), set_as_current=settings is None)
    if settings is not None:
        celery.conf.update(config(settings))
    else:
        celery.add_defaults(lambda: config(get_settings()))
    return celery


class QueueUnavailableError(Exception):
    """The broker could not take the message."""


class JobQueue:
    """A Celery client for one deployment's settings (no tasks of its own are imported)."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        self.settings = settings
        self.app = app if app is not None else make_celery(settings)

    def send(self, job_id: str, kind: str, *, countdown: float | None = None) -> None:
        try:
            self.app.send_task(
                TASK_FOR_KIND[kind],
                args=[job_id],
                task_id=job_id,
                queue=QUEUE_FOR_KIND[kind],
                countdown=countdown,
                ignore_result=True,
            )
        except KeyError:
            raise ValueError(f"no task runs jobs of kind {kind!r}") from None
        except Exception as exc:  # kombu and redis raise their own connection errors
            raise QueueUnavailableError(f"the job queue is unavailable: {exc}") from exc

    def send_uploads(self, job_ids: Sequence[str]) -> None:
        """Upload jobs to run in one task, their CLAP embeddings in one batch (one job still
        runs alone, as `send` would)."""
        if len(job_ids) == 1:
            self.send(job_ids[0], JobKind.upload.value)
            return
        try:
            self.app.send_task(
                UPLOAD_BATCH_TASK,
                args=[list(job_ids)],
                queue=QUEUE_FOR_KIND[JobKind.upload.value],
            )
        except Exception as exc:  # kombu and redis raise their own connection errors
            raise QueueUnavailableError(f"the job queue is unavailable: {exc}") from exc

    def revoke(self, job_id: str) -> None:
        """Tell workers to drop the job's message. Best effort: the job row's status is what
        stops it (a running task checks it at every progress report)."""
        if self.settings.broker_is_embedded:
            return  # the SQLite transport has no broadcast for remote control
        try:
            self.app.control.revoke(job_id)
        except Exception:
            log.warning("could not broadcast the revocation of job %s", job_id, exc_info=True)

    def close(self) -> None:
        self.app.close()
