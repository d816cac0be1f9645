"""Foley's Celery app, configured from settings.

Embedded default: the queue is a SQLite file in the data dir (`core.queue_transport`)
and results go to another; nothing to run but `foley serve`. Scale-out: `FOLEY_BROKER_URL`
names a Redis server, which also keeps the results.

The settings (`core.queue.celery_config`, shared with the API's client) are those of long
GPU work: a task is acknowledged only when it finished
(`task_acks_late`), handed back when the pool process running it dies
(`task_reject_on_worker_lost`), a worker takes one message at a time
(`worker_prefetch_multiplier=1`), and Redis waits longer than the task time limit before it
hands an unacknowledged message to someone else (`visibility_timeout`). Retries with backoff
are for transient errors only (`workers.tasks`). A job's row in the catalog, not the
message, says whether it still needs running, so a message delivered twice does no harm.

Models load once per pool process, in `worker_process_init`, never at import time.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from core.audio import DecodeLimits
from core.config import QUEUES, Settings, get_settings
from core.db import Catalog
from core.queue import RECOVER_TASK, make_celery
from core.redact import install_log_redaction
from core.store import FileStore
from workers.sweeper import Sweeper

if TYPE_CHECKING:
    from generative.clap.model import ClapModel
    from generative.generator.pipeline import Generator
    from index_builder.captions import Captioner

log = logging.getLogger(__name__)

# `celery -A workers.celery_app worker` and `foley worker` run this one.
# Its pool is Celery's prefork pool with idle processes that hold no lock (workers/pool.py).
app = make_celery(include=["workers.tasks"], pool="workers.pool:TaskPool")


@dataclass
class WorkerContext:
    """What a pool process's tasks share: built once per process, after the fork."""

    settings: Settings
    catalog: Catalog
    store: FileStore
    limits: DecodeLimits
    pid: int = field(default_factory=os.getpid)

    @classmethod
    def open(cls, settings: Settings) -> WorkerContext:
        install_log_redaction(settings)
        settings.ensure_dirs()
        return cls(
            settings=settings,
            catalog=Catalog(settings.catalog_url),
            store=FileStore(settings.store_path),
            limits=DecodeLimits.from_settings(settings),
        )

    @property
    def model(self) -> ClapModel:
        from generative.registry import get_clap

        return get_clap(self.settings)

    def generator(self) -> tuple[Generator | None, str]:
        """This process's generator, or None and why there is none."""
        from generative.registry import get_generator

        return get_generator(self.settings)

    def captioner(self) -> tuple[Captioner | None, str]:
        """This process's captioner, or None and why there is none."""
        from index_builder.captions import captioner_for

        return captioner_for(self.settings)


_context: WorkerContext | None = None
_context_lock = threading.Lock()


def worker_context() -> WorkerContext:
    """This process's context (a solo pool builds it on the first task)."""
    global _context
    with _context_lock:
        if _context is None or _context.pid != os.getpid():
            _context = WorkerContext.open(get_settings())
        return _context


@worker_init.connect
def _preload_model_code(**_: Any) -> None:
    """Import torch and laion-clap's code in the main process, before the pool forks.

    Each pool process then starts with them imported (about 15 s saved per process on two
    cores, which matters when a process is replaced after it died). No model is built and
    CUDA is not touched here: that happens in `worker_process_init`, after the fork.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from generative.clap.config import clap_module

        clap_module()
    except Exception:
        log.warning("could not preload the model code; each pool process imports it", exc_info=True)


# How many pool processes this worker runs (`run_worker`): they share the cores.
_pool_processes = 0


@worker_process_init.connect
def _load_models(**_: Any) -> None:
    try:
        from generative.registry import configure_torch

        context = worker_context()
        processes = _pool_processes or context.settings.worker_processes
        configure_torch(context.settings, processes=processes)
        model = context.model
        captioner, status = context.captioner()
        log.info(
            "worker process %d ready with %s; captioner: %s",
            os.getpid(),
            model.model_id,
            captioner.model_id if captioner is not None else status,
        )
    except Exception:
        # Jobs then fail with this error instead of the pool restarting the process forever.
        log.exception("worker process %d could not load its models", os.getpid())


@worker_process_shutdown.connect
def _close_context(**_: Any) -> None:
    if _context is not None and _context.pid == os.getpid():
        _context.catalog.dispose()


_sweeper: Sweeper | None = None


@worker_ready.connect
def _recover_on_start(sender: Any = None, **_: Any) -> None:
    """Send the jobs a dead worker left behind to the queue again, and keep doing so.

    At start a `recover` task checks now (on the embedded queue every queued job too: its
    transport loses the message a killed worker had taken) and once more when the leases of
    jobs that were running at start have had time to run out. From then on the sweep
    (`workers.sweeper`) runs in this process every lease period, catching the messages a
    broker or database outage lost while this worker kept running.
    """
    global _sweeper
    settings = get_settings()
    celery = sender.app if sender is not None else app
    queues = sorted(celery.amqp.queues.consume_from or QUEUES)
    try:
        celery.send_task(
            RECOVER_TASK,
            args=[queues, settings.broker_is_embedded],
            queue=queues[0],
            ignore_result=True,
        )
        celery.send_task(
            RECOVER_TASK,
            args=[queues, False],
            queue=queues[0],
            countdown=settings.job_lease_s + 1,
            ignore_result=True,
        )
    except Exception:
        log.exception("could not schedule the recovery of interrupted jobs")
    if _sweeper is None:
        _sweeper = Sweeper(settings, celery, queues)
        _sweeper.start()


@worker_shutdown.connect
def _stop_sweeper(**_: Any) -> None:
    if _sweeper is not None:
        _sweeper.stop()


def run_worker(
    settings: Settings,
    queues: list[str],
    *,
    concurrency: int | None = None,
    loglevel: str = "INFO",
    nodename: str | None = None,
) -> None:
    """Run a worker in this process until it is told to stop (`foley worker`)."""
    unknown = sorted(set(queues) - set(QUEUES))
    if not queues or unknown:
        raise ValueError(f"queues must be among {', '.join(QUEUES)}; got {','.join(queues)}")
    settings.ensure_dirs()
    global _pool_processes
    _pool_processes = concurrency or settings.worker_processes  # the forked pool reads it
    argv = [
        "worker",
        f"--queues={','.join(queues)}",
        f"--concurrency={_pool_processes}",
        "--pool=prefork",  # with the app's `worker_pool` set, Celery runs that one
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
    ]
    if nodename:
        argv.append(f"--hostname={nodename}")
    app.worker_main(argv)
