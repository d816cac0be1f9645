"""`foley serve|worker`: the HTTP API with its index syncer, and the job workers."""

from __future__ import annotations

import argparse
from typing import Any

from core.config import Settings
from foley.common import CommandError, comma_list


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """The API and its index syncer, plus (embedded queue) one job worker process."""
    import signal

    import uvicorn

    from core.db import Catalog
    from search.api.main import create_app

    host = args.host or settings.api_host
    port = args.port or settings.api_port
    with_worker = settings.broker_is_embedded if args.worker is None else args.worker
    settings.ensure_dirs()
    # Migrate once here, before the API and the worker both open the catalog.
    Catalog(settings.catalog_url).dispose()

    def stop_on_sigterm(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    # uvicorn shuts down gracefully on SIGTERM, then re-raises it; this turns that into an
    # exit that still stops the worker below.
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    supervisor = None
    if with_worker:
        from workers.supervisor import WorkerSupervisor

        supervisor = WorkerSupervisor(
            settings.worker_queue_list, concurrency=settings.worker_processes
        )
        supervisor.start()
    print(f"Foley is serving http://{host}:{port}/api (Ctrl-C stops)")
    try:
        uvicorn.run(create_app(settings, serving=True), host=host, port=port, log_level="info")
    finally:
        if supervisor is not None:
            print("stopping the job worker")
            supervisor.stop()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """A job worker alone: for scale-out, or beside `foley serve --no-worker`."""
    from workers.celery_app import run_worker
    from workers.supervisor import exit_with_parent

    if args.exit_with_parent:
        exit_with_parent(args.exit_with_parent)
    queues = comma_list(args.queues or settings.worker_queues)
    try:
        run_worker(
            settings,
            queues,
            concurrency=args.concurrency,
            loglevel="DEBUG" if args.verbose else "INFO",
            nodename=args.hostname,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    return 0


def add_service_commands(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve the HTTP API (and run a job worker)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument(
        "--worker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run a job worker beside the API (default: only with the embedded queue)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="run a job worker (scale-out: one per queue and machine)")
    p.add_argument("--queues", help="comma-separated: cpu, gpu (default FOLEY_WORKER_QUEUES)")
    p.add_argument(
        "--concurrency", type=int, help="pool processes (default FOLEY_WORKER_CONCURRENCY)"
    )
    p.add_argument("--hostname", help="Celery node name, e.g. gpu1@%%h")
    p.add_argument("--exit-with-parent", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_worker)
