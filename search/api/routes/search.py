"""Search the library by description or by an example clip."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from core.vector_index import SearchFilter
from index_builder.generated import GenerateRequest
from search.api.admission import BUSY_RESPONSE, SearchSlot
from search.api.deps import FoleyDep, QueueDep
from search.api.ratelimit import SearchLimit, spend_generation
from search.api.routes.generate import accept_generation
from search.api.routes.jobs import JobPublic, job_public, job_url, send_or_fail
from search.api.security import BearerKey, HeaderKey, check_key, presented_key
from search.pipeline import (
    MAX_K,
    QueryError,
    SearchMode,
    SoundResult,
    run_text_search,
    search_audio,
    search_like_sound,
    text_request,
)

router = APIRouter(
    prefix="/search",
    tags=["search"],
    dependencies=[SearchLimit, SearchSlot],
    responses={**BUSY_RESPONSE},
)


class SoundHitPublic(BaseModel):
    id: int
    # final: in mode audio, CLAP similarity plus alpha x DiffATR probability when reranked;
    # in mode words, the full-text relevance; in mode hybrid, the reciprocal-rank-fusion score
    score: float
    clap_score: float | None = None
    words_score: float | None = None
    audio_rank: int | None = None  # hybrid: rank in the CLAP (+ DiffATR) list
    words_rank: int | None = None  # hybrid: rank in the words list
    title: str
    duration: float
    tags: list[str]
    source: str
    caption: str | None
    format: str
    audio_url: str


class SearchResults(BaseModel):
    data: list[SoundHitPublic]
    count: int


class TextSearchResults(SearchResults):
    # The best CLAP cosine between the query and any library sound (filters applied), before
    # reranking: how well the best sound fits. null in mode words or an empty library.
    best_score: float | None = None
    # best_score is below the threshold calibrated for this CLAP: the library seems to lack
    # the sound. null without a score or a calibrated threshold.
    missing: bool | None = None
    # With generate_if_missing and missing: the generation job (its URL is in Location).
    job: JobPublic | None = None


def _results(hits: list[SoundResult]) -> SearchResults:
    data = [SoundHitPublic.model_validate(hit, from_attributes=True) for hit in hits]
    return SearchResults(data=data, count=len(data))


def _filter(
    min_duration: float | None, max_duration: float | None, source: str | None, tags: list[str]
) -> SearchFilter:
    if min_duration is not None and max_duration is not None and min_duration > max_duration:
        raise QueryError("min_duration is greater than max_duration")
    if source is not None and source not in {"library", "upload", "generated"}:
        raise QueryError("source must be one of library, upload, generated")
    if any("\x00" in tag for tag in tags):
        raise QueryError("a tag contains a NUL character")
    return SearchFilter(min_duration, max_duration, source, tuple(t.strip().lower() for t in tags))


@router.get("", response_model=TextSearchResults)
async def search_by_text(
    request: Request,
    foley: FoleyDep,
    queue: QueueDep,
    header: HeaderKey,
    token: BearerKey,
    q: Annotated[str, Query(description="what the sound is like", max_length=1000)],
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    min_duration: Annotated[float | None, Query(ge=0)] = None,
    max_duration: Annotated[float | None, Query(ge=0)] = None,
    source: str | None = None,
    tag: Annotated[list[str] | None, Query()] = None,
    rerank: Annotated[bool, Query(description="rerank the CLAP top N with DiffATR")] = True,
    mode: Annotated[
        SearchMode,
        Query(description="hybrid: sounds and words fused; audio: CLAP only; words: text only"),
    ] = SearchMode.hybrid,
    generate_if_missing: Annotated[
        bool,
        Query(description="when missing, also start a generation job from q (API key needed)"),
    ] = False,
) -> JSONResponse:
    """Find sounds matching a text description, best first, with how well the best one fits
    (`best_score`) and whether the library seems to lack the sound (`missing`)."""
    if "\x00" in q:  # no catalog stores it (PostgreSQL refuses it outright)
        raise QueryError("q contains a NUL character")
    flt = _filter(min_duration, max_duration, source, tag or [])
    if generate_if_missing:
        if mode is SearchMode.words:
            raise QueryError("generate_if_missing needs CLAP scores: use mode hybrid or audio")
        check_key(foley.settings, presented_key(header, token))  # generating writes sounds
    wanted = text_request(q, k, flt, rerank, mode)
    if foley.searches is not None:  # micro-batched: no thread waits for the batch
        found = await foley.searches.search_async(wanted)
    else:
        found = await run_in_threadpool(run_text_search, foley, wanted)
    data = [SoundHitPublic.model_validate(hit, from_attributes=True) for hit in found.results]
    body = TextSearchResults(
        data=data, count=len(data), best_score=found.best_score, missing=found.missing
    )
    headers = {}
    if generate_if_missing and found.missing:
        await spend_generation(request, header, token)
        # A catalog session only for a search that generates: not one per search.
        with foley.catalog.session() as session:
            job = await accept_generation(foley, session, GenerateRequest(prompt=q).check())
            queued = send_or_fail(session, queue, job)
            body.job = job_public(job)
        if queued.status_code == 202:
            headers["Location"] = job_url(job.id)
    return JSONResponse(body.model_dump(mode="json"), headers=headers)


@router.post("/audio", response_model=SearchResults)
async def search_by_audio(
    foley: FoleyDep,
    file: Annotated[UploadFile | None, File(description="an example clip")] = None,
    sound_id: Annotated[int | None, Form(description="or a sound already in the library")] = None,
    k: Annotated[int, Form(ge=1, le=MAX_K)] = 10,
    min_duration: Annotated[float | None, Form(ge=0)] = None,
    max_duration: Annotated[float | None, Form(ge=0)] = None,
    source: Annotated[str | None, Form()] = None,
    tag: Annotated[list[str] | None, Form()] = None,
) -> SearchResults:
    """Find sounds similar to an uploaded clip or to a sound in the library."""
    flt = _filter(min_duration, max_duration, source, tag or [])
    if (file is None) == (sound_id is None):
        raise QueryError("send exactly one of: an audio file in `file`, or a `sound_id`")
    if sound_id is not None:
        return _results(await run_in_threadpool(search_like_sound, foley, sound_id, k, flt))
    assert file is not None
    data = await _read_limited(file, foley.limits.max_bytes)
    name = file.filename or "upload"
    return _results(await run_in_threadpool(search_audio, foley, data, name, k, flt))


async def _read_limited(file: UploadFile, max_bytes: int) -> bytes:
    from core.audio import TooLargeError

    data = await file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TooLargeError(
            file.filename or "the upload", f"is larger than the {max_bytes}-byte upload limit"
        )
    return data
