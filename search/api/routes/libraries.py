"""Libraries: folders of sound files that Foley indexes, and their scans."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.catalog import Job, Library, Location
from core.jobs import ACTIVE, JobKind, new_job
from core.roots import PathRefused, check_library_folder
from search.api.deps import FoleyDep, QueueDep, SessionDep
from search.api.errors import error_response
from search.api.ratelimit import UploadLimit
from search.api.routes.jobs import JobPublic, accepted, job_public, send_or_fail
from search.api.security import ReadAccess, WriteAccess

router = APIRouter(prefix="/libraries", tags=["libraries"])


class LibraryCreate(BaseModel):
    path: str = Field(description="an absolute path to a folder on the server", min_length=1)


class LibraryPublic(BaseModel):
    id: int
    path: str
    name: str
    created_at: AwareDatetime
    last_scan_at: AwareDatetime | None
    sounds: int
    scan_url: str


class LibrariesPublic(BaseModel):
    data: list[LibraryPublic]
    count: int


def _public(session: Session, library: Library) -> LibraryPublic:
    sounds = session.scalar(
        select(func.count(func.distinct(Location.sound_id))).where(
            Location.library_id == library.id
        )
    )
    return LibraryPublic(
        id=library.id,
        path=library.path,
        name=library.name,
        created_at=library.created_at,
        last_scan_at=library.last_scan_at,
        sounds=sounds or 0,
        scan_url=f"/api/libraries/{library.id}/scan",
    )


@router.post(
    "",
    status_code=201,
    response_model=LibraryPublic,
    dependencies=[WriteAccess],
    responses={
        400: {"description": "the path is not an absolute path to a folder"},
        403: {"description": "the folder is outside FOLEY_LIBRARY_ROOTS (or a wrong key)"},
    },
)
def create_library(session: SessionDep, foley: FoleyDep, body: LibraryCreate) -> Any:
    """Register a folder inside a library root (registering it again returns the same one)."""
    try:
        root = check_library_folder(body.path, foley.settings.library_root_list)
    except PathRefused as exc:
        return error_response(exc.status, exc.code, str(exc))
    library = session.scalar(select(Library).where(Library.path == str(root)))
    created = library is None
    if library is None:
        library = Library(path=str(root), name=root.name or str(root))
        session.add(library)
        session.commit()
    public = _public(session, library)
    return JSONResponse(status_code=201 if created else 200, content=public.model_dump(mode="json"))


@router.get("", response_model=LibrariesPublic, dependencies=[ReadAccess])
def list_libraries(session: SessionDep) -> LibrariesPublic:
    """List registered libraries."""
    libraries = session.scalars(select(Library).order_by(Library.id)).all()
    return LibrariesPublic(data=[_public(session, lib) for lib in libraries], count=len(libraries))


@router.post(
    "/{library_id}/scan",
    status_code=202,
    response_model=JobPublic,
    dependencies=[WriteAccess, UploadLimit],
    responses={
        403: {"description": "the folder is outside FOLEY_LIBRARY_ROOTS (or a wrong key)"},
        404: {"description": "no such library"},
    },
)
def scan_library(session: SessionDep, foley: FoleyDep, queue: QueueDep, library_id: int) -> Any:
    """Index the library's folder as a job (a scan already under way is returned instead)."""
    library = session.get(Library, library_id)
    if library is None:
        raise HTTPException(404, f"no library with id {library_id}")
    try:
        # Registered from the command line, or the roots changed, or the folder became a link.
        check_library_folder(library.path, foley.settings.library_root_list)
    except PathRefused as exc:
        return error_response(exc.status, exc.code, str(exc))
    active = session.scalars(
        select(Job).where(Job.kind == JobKind.scan.value, Job.status.in_(ACTIVE))
    ).all()
    for job in active:
        if job.params.get("library_id") == library_id:
            return accepted(job_public(job), job.id)
    job = new_job(session, JobKind.scan.value, {"library_id": library_id})
    session.commit()
    return send_or_fail(session, queue, job)
