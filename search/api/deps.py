"""Typed dependencies: what a route needs, handed to it by FastAPI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from search.service import Foley


def get_foley(request: Request) -> Foley:
    foley: Foley = request.app.state.foley
    return foley


FoleyDep = Annotated[Foley, Depends(get_foley)]


def get_session(foley: FoleyDep) -> Iterator[Session]:
    with foley.catalog.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
