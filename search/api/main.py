"""The FastAPI app. Models load in the lifespan, never at import time."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from core.config import Settings, get_settings
from core.queue import JobQueue
from core.redact import install_log_redaction
from search.api.admission import SearchQueue
from search.api.errors import error_openapi, install_error_handlers
from search.api.headers import install_headers
from search.api.ratelimit import RateLimits
from search.api.routes import (
    generate,
    health,
    jobs,
    libraries,
    page,
    pictures,
    search,
    sounds,
    uploads,
)
from search.api.security import ReadAccess
from search.pipeline import start_query_batching, warm_up
from search.service import Foley

log = logging.getLogger(__name__)

api_router = APIRouter(prefix="/api")
api_router.include_router(search.router, dependencies=[ReadAccess])
api_router.include_router(sounds.router, dependencies=[ReadAccess])
api_router.include_router(pictures.router, dependencies=[ReadAccess])
api_router.include_router(health.router)
api_router.include_router(jobs.router)
api_router.include_router(uploads.router)
api_router.include_router(libraries.router)
api_router.include_router(generate.router)


def _warn_if_open(settings: Settings) -> None:
    if not settings.api_key_set:
        log.warning(
            "FOLEY_API_KEYS is empty: uploads, library scans and job cancellation are open "
            "to anyone who can reach this server (fine on a development machine only)"
        )


# The garbage collector in a serving process (`foley serve`): after start-up everything loaded
# so far (models, tokenizers, the catalog's metadata) is frozen out of the collector's sight,
# and young collections run every 20,000 allocations instead of 700. Each search allocates
# thousands of short-lived objects; with the defaults, collections that walked the loaded
# models' objects stalled every request thread at once. Measured with `bench.load` at 32
# clients with reranking (10,000 sounds, 2 cores): p99 573-823 ms in eight runs with the
# defaults, 316-371 ms in six runs with the collector tuned (p95 244-742 against 264-319).
SERVING_GC_THRESHOLDS = (20_000, 20, 20)


def tune_gc_for_serving() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLDS)


def create_app(
    settings: Settings | None = None, foley: Foley | None = None, *, serving: bool = False
) -> FastAPI:
    """An app that opens Foley at start-up, or uses the one given (and leaves it open).
    `serving` (the `foley serve` process) also tunes the garbage collector once the models
    are loaded (`tune_gc_for_serving`)."""
    effective = foley.settings if foley is not None else settings or get_settings()
    install_log_redaction(effective)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from generative.registry import configure_torch

        configure_torch(effective)
        opened = None
        if foley is None:
            opened = Foley.open(effective)
            opened.sync()
            opened.start_background_sync()
        app.state.foley = foley or opened
        start_query_batching(app.state.foley)
        warm_up(app.state.foley)
        app.state.search_queue = SearchQueue(app.state.foley.settings.search_queue_size)
        _warn_if_open(app.state.foley.settings)
        app.state.queue = JobQueue(app.state.foley.settings)
        app.state.rate_limits = RateLimits(app.state.foley.settings)
        if serving:
            tune_gc_for_serving()
        try:
            yield
        finally:
            app.state.foley.stop_query_batching()
            app.state.queue.close()
            if opened is not None:
                opened.close()

    app = FastAPI(
        title="Foley", summary="Search a sound library by description.", lifespan=lifespan
    )
    install_error_handlers(app)
    install_headers(app, effective)
    app.include_router(api_router)
    app.include_router(page.router)
    app.openapi = lambda: error_openapi(app)  # type: ignore[method-assign]
    # The page's script and styles; no build step, nothing from another site.
    app.mount("/static", StaticFiles(directory=page.STATIC), name="static")
    return app
