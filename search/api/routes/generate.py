"""Generation: a description (and the library's nearest sounds) -> new sounds, as a job."""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from core.catalog import Job
from core.jobs import JobKind, new_job
from index_builder.generated import (
    MAX_COUNT,
    MAX_NEIGHBOURS,
    MAX_PROMPT,
    MAX_SECONDS,
    MIN_SECONDS,
    GenerateRequest,
)
from search.api.deps import FoleyDep, QueueDep, SessionDep
from search.api.errors import error_response
from search.api.ratelimit import GenerationLimit
from search.api.routes.jobs import JobPublic, send_or_fail
from search.api.security import WriteAccess
from search.pipeline import search_vector
from search.service import Foley

router = APIRouter(prefix="/generate", tags=["generate"])


class GenerateBody(BaseModel):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT, description="the sound to make")
    seconds: float = Field(5.0, ge=MIN_SECONDS, le=MAX_SECONDS)
    count: int = Field(1, ge=1, le=MAX_COUNT, description="sounds to make (seed, seed+1 ...)")
    seed: int = Field(0, ge=0, lt=2**31)
    neighbours: int = Field(
        5, ge=0, le=MAX_NEIGHBOURS, description="library sounds to condition on; 0: no retrieval"
    )
    guidance: float | None = Field(None, ge=0, le=20, description="classifier-free guidance")
    guidance_mode: str | None = Field(
        None, pattern="^(none|text|retrieval|both)$", description="default: the checkpoint's"
    )
    steps: int | None = Field(None, ge=1, le=200, description="default: the checkpoint's")


def nearest_ids(foley: Foley, prompt: str, k: int) -> list[int]:
    """The k library sounds nearest to the prompt by CLAP (no reranking)."""
    if k == 0:
        return []
    query = foley.clap.embed_text([prompt])[0]
    return [hit.id for hit in search_vector(foley, query, k)]


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    dependencies=[WriteAccess, GenerationLimit],
    responses={422: {"description": "an unusable request"}, 503: {"description": "no job queue"}},
)
async def generate(
    foley: FoleyDep, session: SessionDep, queue: QueueDep, body: GenerateBody
) -> JSONResponse:
    """Generate `count` sounds of `seconds` from `prompt` and its nearest library sounds, as a
    job on the `gpu` queue (poll it; it reports each sampler step and can be cancelled). Each
    result is a sound: stored, indexed, source `generated`, with its provenance."""
    try:
        request = GenerateRequest(**body.model_dump()).check()
    except ValueError as exc:
        return error_response(422, "invalid_request", str(exc))
    job = await accept_generation(foley, session, request)
    return send_or_fail(session, queue, job)


async def accept_generation(foley: Foley, session: Session, request: GenerateRequest) -> Job:
    """The committed `generate` job of a checked request, its neighbours fixed now."""
    ids = await run_in_threadpool(nearest_ids, foley, request.prompt, request.neighbours)
    job = new_job(session, JobKind.generate.value,
                  replace(request, neighbour_ids=tuple(ids)).as_params())  # fmt: skip
    session.commit()
    return job
