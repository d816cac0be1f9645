"""Typed dependencies: what a route needs, handed to it by FastAPI.

Those that only read app state are `async def`: FastAPI runs a plain `def` dependency in its
thread pool, a round trip between threads on every request for nothing that blocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from core.queue import JobQueue
from core.store import FileStore
from search.service import Foley


async def get_foley(request: Request) -> Foley:
    foley: Foley = request.app.state.foley
    return foley


FoleyDep = Annotated[Foley, Depends(get_foley)]


def get_session(foley: FoleyDep) -> Iterator[Session]:
    with foley.catalog.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


async def get_queue(request: Request) -> JobQueue:
    queue: JobQueue = request.app.state.queue
    return queue


QueueDep = Annotated[JobQueue, Depends(get_queue)]


async def get_store(foley: FoleyDep) -> FileStore:
    return FileStore(foley.settings.store_path)


StoreDep = Annotated[FileStore, Depends(get_store)]
