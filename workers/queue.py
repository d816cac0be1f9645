"""Sending jobs to the queue: which task runs each kind of job, and on which queue.

The API, the benchmark and the workers' own recovery send through a `JobQueue`; a message
carries only the job's id (also used as the Celery task id), the row carries the rest.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from core.config import Settings
from core.jobs import JobKind

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

TASK_FOR_KIND: dict[str, str] = {
    JobKind.ping.value: "foley.ping",
    JobKind.upload.value: "foley.upload",
    JobKind.scan.value: "foley.scan",
}
# Uploads and scans embed with CLAP, which is light enough for CPU workers; generation
# (to come) goes to "gpu".
QUEUE_FOR_KIND: dict[str, str] = {
    JobKind.ping.value: "cpu",
    JobKind.upload.value: "cpu",
    JobKind.scan.value: "cpu",
}
RECOVER_TASK = "foley.recover"


def kinds_on(queues: list[str]) -> list[str]:
    return [kind for kind, queue in QUEUE_FOR_KIND.items() if queue in queues]


class QueueUnavailableError(Exception):
    """The broker could not take the message."""


class JobQueue:
    """A Celery client for one deployment's settings (no tasks of its own are imported)."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        from workers.celery_app import make_celery

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
            )
        except KeyError:
            raise ValueError(f"no task runs jobs of kind {kind!r}") from None
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
