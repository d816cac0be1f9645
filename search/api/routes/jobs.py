"""Jobs: long operations that clients submit and poll."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel
from sqlalchemy.orm import Session

from core.catalog import IndexState, Job, JobStatus
from core.jobs import JobFinishedError, JobKind, cancel_job, list_jobs
from core.redact import redact
from index_builder.syncer import STATE_NAME
from search.api.deps import QueueDep, SessionDep
from search.api.errors import error_response
from search.api.security import ReadAccess, WriteAccess

router = APIRouter(prefix="/jobs", tags=["jobs"])


class JobPublic(BaseModel):
    id: str
    kind: str
    status: str
    progress: float
    message: str
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    created_at: AwareDatetime
    started_at: AwareDatetime | None
    finished_at: AwareDatetime | None
    updated_at: AwareDatetime
    # For a job that wrote a sound: whether the index syncer has applied it yet.
    searchable: bool | None = None
    url: str


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int


def job_url(job_id: str) -> str:
    return f"/api/jobs/{job_id}"


def _applied_seq(session: Session) -> int:
    state = session.get(IndexState, STATE_NAME)
    return state.applied_seq if state is not None else 0


def job_public(job: Job, applied_seq: int | None = None) -> JobPublic:
    searchable = None
    result = job.result or {}
    if job.status == JobStatus.succeeded.value and "outbox_seq" in result:
        searchable = applied_seq is not None and applied_seq >= int(result["outbox_seq"])
    return JobPublic(
        id=job.id,
        kind=job.kind,
        status=job.status,
        progress=job.progress,
        message=redact(job.message),
        params=dict(job.params),
        result=job.result,
        error=redact(job.error) if job.error else None,
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        searchable=searchable,
        url=job_url(job.id),
    )


def jobs_public(session: Session, jobs: Sequence[Job], count: int | None = None) -> JobsPublic:
    applied = _applied_seq(session)
    data = [job_public(job, applied) for job in jobs]
    return JobsPublic(data=data, count=len(data) if count is None else count)


def accepted(body: BaseModel, first_job_id: str) -> JSONResponse:
    """202 with the job body(ies) and where to poll."""
    return JSONResponse(
        status_code=202,
        content=body.model_dump(mode="json"),
        headers={"Location": job_url(first_job_id)},
    )


def send_or_fail(session: Session, queue: Any, job: Job) -> JSONResponse:
    """Queue a committed job: 202 with it, or, with the queue down, the job failed with the
    reason and a 503 (the job row stays, so the failure can be read back)."""
    from core.queue import QueueUnavailableError

    try:
        queue.send(job.id, job.kind)
    except QueueUnavailableError as exc:
        job.status, job.error = JobStatus.failed.value, str(exc)
        session.commit()
        return error_response(503, "queue_unavailable", str(exc))
    return accepted(job_public(job), job.id)


@router.get("", response_model=JobsPublic, dependencies=[ReadAccess])
def get_jobs(
    session: SessionDep,
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
    kind: Annotated[JobKind | None, Query(description="only jobs of this kind")] = None,
    skip: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JobsPublic:
    """List jobs, newest first."""
    jobs, count = list_jobs(
        session,
        status=status.value if status else None,
        kind=kind.value if kind else None,
        skip=skip,
        limit=limit,
    )
    return jobs_public(session, jobs, count)


@router.get("/{job_id}", response_model=JobPublic, dependencies=[ReadAccess])
def get_job(session: SessionDep, job_id: str) -> JobPublic:
    """One job: status, progress, result or error."""
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(404, f"no job with id {job_id}")
    return job_public(job, _applied_seq(session))


@router.delete(
    "/{job_id}",
    status_code=202,
    response_model=JobPublic,
    dependencies=[WriteAccess],
    responses={409: {"description": "the job already finished"}},
)
def delete_job(session: SessionDep, queue: QueueDep, job_id: str) -> Any:
    """Cancel a queued or running job; a running job stops at its next progress report."""
    try:
        job = cancel_job(session, job_id)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except JobFinishedError as exc:
        return error_response(409, "job_finished", str(exc))
    session.commit()
    queue.revoke(job_id)
    return job_public(job, _applied_seq(session))
