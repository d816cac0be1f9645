"""The FastAPI app. Models load in the lifespan, never at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from core.config import Settings, get_settings
from search.api.errors import install_error_handlers
from search.api.routes import health, page, search, sounds
from search.service import Foley

api_router = APIRouter(prefix="/api")
api_router.include_router(search.router)
api_router.include_router(sounds.router)
api_router.include_router(health.router)


def create_app(settings: Settings | None = None, foley: Foley | None = None) -> FastAPI:
    """An app that opens Foley at start-up, or uses the one given (and leaves it open)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if foley is not None:
            app.state.foley = foley
            yield
            return
        opened = Foley.open(settings or get_settings())
        opened.sync()
        opened.start_background_sync()
        app.state.foley = opened
        try:
            yield
        finally:
            opened.close()

    app = FastAPI(
        title="Foley", summary="Search a sound library by description.", lifespan=lifespan
    )
    install_error_handlers(app)
    app.include_router(api_router)
    app.include_router(page.router)
    return app
