"""Uploads: audio files added to the catalog by a job each, run in batches."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from core.audio import TooLargeError
from core.catalog import Job, JobStatus
from core.queue import JobQueue, QueueUnavailableError
from core.store import FileStore, StoreError
from index_builder.uploads import client_filename, discard_if_unused, receive_upload
from search.api.deps import FoleyDep, QueueDep, StoreDep
from search.api.errors import error_response
from search.api.ratelimit import UploadLimit
from search.api.routes.jobs import JobsPublic, accepted, jobs_public
from search.api.security import WriteAccess
from search.service import Foley

router = APIRouter(prefix="/uploads", tags=["uploads"])

MAX_FILES_PER_REQUEST = 100


def _check_sizes(files: list[UploadFile], max_bytes: int) -> None:
    for file in files:
        size = file.size
        if size is None:  # not every client sends a length; measure the spooled copy
            size = file.file.seek(0, 2)
            file.file.seek(0)
        if size > max_bytes:
            raise TooLargeError(
                client_filename(file.filename),
                f"is {size:,} bytes, over the {max_bytes:,}-byte upload limit",
            )


def _accept(foley: Foley, store: FileStore, queue: JobQueue, files: list[UploadFile]) -> list[Job]:
    jobs = [
        receive_upload(
            foley.catalog, store, foley.limits, client_filename(file.filename), file.file
        )
        for file in files
    ]
    queued = [job for job in jobs if job.status == JobStatus.queued.value]
    size = foley.settings.upload_batch_size
    try:
        # A task per `upload_batch_size` files embeds them together; each keeps its own job.
        for start in range(0, len(queued), size):
            queue.send_uploads([job.id for job in queued[start : start + size]])
    except QueueUnavailableError as exc:
        _fail_unsent(foley, store, queued, str(exc))
        raise
    return jobs


def _fail_unsent(foley: Foley, store: FileStore, jobs: list[Job], error: str) -> None:
    with foley.catalog.session() as session:
        for job in jobs:
            row = session.get(Job, job.id)
            if row is not None and row.status == JobStatus.queued.value:
                row.status, row.error = JobStatus.failed.value, error
    for job in jobs:
        discard_if_unused(foley.catalog, store, store.resolve(job.params["stored"]))


@router.post(
    "",
    status_code=202,
    response_model=JobsPublic,
    dependencies=[WriteAccess, UploadLimit],
    responses={413: {"description": "a file is over FOLEY_MAX_FILE_BYTES"}},
)
async def upload_files(
    foley: FoleyDep,
    store: StoreDep,
    queue: QueueDep,
    files: Annotated[list[UploadFile], File(description="one or several audio files")],
) -> JSONResponse:
    """Upload audio files; each gets a job that indexes it (poll the job)."""
    if len(files) > MAX_FILES_PER_REQUEST:
        return error_response(
            413, "too_many_files", f"send at most {MAX_FILES_PER_REQUEST} files per request"
        )
    _check_sizes(files, foley.limits.max_bytes)
    try:
        jobs = await run_in_threadpool(_accept, foley, store, queue, files)
    except StoreError as exc:
        return error_response(413, "too_large", f"an upload is too large: {exc}")
    except QueueUnavailableError as exc:
        return error_response(503, "queue_unavailable", str(exc))
    with foley.catalog.session() as session:
        public = jobs_public(session, jobs)
    return accepted(public, jobs[0].id)
