"""Jobs whose message was lost go back to the queue.

A job's row is the truth; its message can be lost while the row still says `queued` or
`running`: a worker died with it, the broker restarted without it, the broker was down when a
retry had to be sent, or Celery cancelled a running task when its broker connection dropped.
Every worker therefore runs a sweep in its main process, once at start and then every
`FOLEY_JOB_LEASE_S`, that sends again

- running jobs whose lease ran out (their worker stopped heartbeating), and
- queued jobs whose row has not changed for `FOLEY_JOB_RESEND_S` (touched when sent, so each
  is sent at most once per period); at start on the embedded queue, every queued job, since
  its SQLite transport loses the message a killed worker had taken.

A duplicate message does nothing (`core.jobs.claim`), so a sweep never hurts. A sweep that
cannot reach the catalog or the broker logs one line and tries again next period.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

from core import jobs
from core.catalog import utcnow
from core.config import Settings
from core.db import Catalog
from core.queue import JobQueue, kinds_on

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

# The main process forks pool processes (a killed one is replaced at once) while the sweep's
# thread may be in the middle of a sweep. A fork copies the locks that thread holds at that
# moment, held, with no thread left to release them: a module it is importing for the first
# time (the catalog's database driver), a connection pool's. The new pool process then waits
# on that lock forever, and with one pool process the worker takes no job again. So a fork
# waits for a running sweep to end, and a sweep does not start while a fork is under way.
_sweeping = threading.Lock()
os.register_at_fork(
    before=_sweeping.acquire,
    after_in_parent=_sweeping.release,
    after_in_child=_sweeping.release,
)


@contextmanager
def no_fork() -> Iterator[None]:
    """While inside, this process does not fork (a fork waits at its start)."""
    with _sweeping:
        yield


def recover_jobs(
    catalog: Catalog, queue: JobQueue, queues: list[str], *, include_queued: bool
) -> list[str]:
    """Send the orphaned jobs of these queues again; returns their ids."""
    settings = queue.settings
    orphans = jobs.requeue_orphans(
        catalog,
        kinds_on(queues),
        jobs.lease_cutoff(settings.job_lease_s),
        include_queued=include_queued,
        queued_before=utcnow() - timedelta(seconds=settings.job_resend_s),
    )
    for job_id, kind in orphans:
        queue.send(job_id, kind)
    if orphans:
        log.warning("sent %d interrupted jobs to the queue again", len(orphans))
    return [job_id for job_id, _ in orphans]


class Sweeper:
    """A thread of the worker's main process that runs `recover_jobs` every period."""

    def __init__(self, settings: Settings, app: Celery, queues: list[str]) -> None:
        self.settings = settings
        self.queue = JobQueue(settings, app=app)
        self.queues = queues
        self.period_s = settings.job_lease_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="foley-job-sweep", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.sweep()
            except Exception as exc:  # the catalog or the broker is down: next period
                log.warning("job sweep failed (%s: %s); trying again", type(exc).__name__, exc)

    def sweep(self) -> list[str]:
        # A fresh engine each time, closed after: the main process forks pool processes,
        # which must not inherit open catalog connections.
        with no_fork():
            catalog = Catalog(self.settings.catalog_url, run_migrations=False)
            try:
                return recover_jobs(catalog, self.queue, self.queues, include_queued=False)
            finally:
                catalog.dispose()
