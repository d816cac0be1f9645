"""Sounds in the catalog, and their audio."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.audio import content_type
from core.catalog import GenerationRecord, Library, Sound
from core.jobs import JobKind, new_job
from core.words import MAX_CAPTION, MAX_TAGS, MAX_TITLE, check_tags, edit_words
from index_builder.captions import active_caption_job
from search.api.deps import FoleyDep, QueueDep, SessionDep
from search.api.ratelimit import GenerationLimit
from search.api.routes.jobs import JobPublic, accepted, job_public, send_or_fail
from search.api.security import WriteAccess
from search.service import Foley

router = APIRouter(prefix="/sounds", tags=["sounds"])

CHUNK = 64 * 1024


class RequestError(HTTPException):
    """A request the route itself refuses: 422 with the reason."""

    def __init__(self, detail: str) -> None:
        super().__init__(422, detail)


class SoundPublic(BaseModel):
    id: int
    content_hash: str
    title: str
    caption: str | None
    tags: list[str]
    source: str
    duration: float
    sample_rate: int
    channels: int
    format: str
    size: int
    created_at: AwareDatetime
    locations: list[str]
    audio_url: str
    # Who wrote each of title, caption and tags: person, metadata (file and folder names) or
    # captioner; null while the field is empty.
    title_by: str | None
    caption_by: str | None
    tags_by: str | None
    caption_segments: list[dict[str, Any]] | None
    caption_model: str | None
    # A generated sound's provenance: prompt, seed, settings, models, neighbour_ids, job_id.
    generation: dict[str, Any] | None = None


class SoundWordsUpdate(BaseModel):
    """A person's words for a sound; only the fields sent change, and machines never
    overwrite them. `caption: null` clears the caption and hands it back to the captioner."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, min_length=1, max_length=MAX_TITLE)
    caption: str | None = Field(None, min_length=1, max_length=MAX_CAPTION)
    tags: list[str] | None = Field(
        None,
        max_length=MAX_TAGS,
        description="lowercase words or hyphenated phrases: door, glass-breaking",
    )

    @field_validator("title", "caption")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        if value is not None and "\x00" in value:  # PostgreSQL refuses NUL in text
            raise ValueError("must not contain a NUL character")
        return value.strip() if value is not None else None

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return check_tags(value) if value is not None else None


class SoundsPublic(BaseModel):
    data: list[SoundPublic]
    count: int


def _public(sound: Sound) -> SoundPublic:
    return SoundPublic(
        id=sound.id,
        content_hash=sound.content_hash,
        title=sound.title,
        caption=sound.caption,
        tags=list(sound.tags),
        source=sound.source,
        duration=sound.duration,
        sample_rate=sound.sample_rate,
        channels=sound.channels,
        format=sound.format,
        size=sound.size,
        created_at=sound.created_at,
        locations=sorted(loc.path for loc in sound.locations),
        audio_url=f"/api/sounds/{sound.id}/audio",
        title_by=sound.title_by,
        caption_by=sound.caption_by,
        tags_by=sound.tags_by,
        caption_segments=sound.caption_segments,
        caption_model=sound.caption_model,
        generation=_provenance(sound.generation) if sound.source == "generated" else None,
    )


def _provenance(record: GenerationRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {"prompt": record.prompt, "seed": record.seed, "settings": record.settings,
            "models": record.models, "neighbour_ids": record.neighbour_ids,
            "job_id": record.job_id}  # fmt: skip


@router.get("", response_model=SoundsPublic)
def list_sounds(
    session: SessionDep,
    skip: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> SoundsPublic:
    """List sounds in the catalog, newest first."""
    count = session.scalar(select(func.count()).select_from(Sound)) or 0
    sounds = session.scalars(
        select(Sound).order_by(Sound.id.desc()).offset(skip).limit(limit)
    ).all()
    return SoundsPublic(data=[_public(s) for s in sounds], count=count)


@router.get("/{sound_id}", response_model=SoundPublic)
def get_sound(session: SessionDep, sound_id: int) -> SoundPublic:
    """One sound's catalog record."""
    sound = session.get(Sound, sound_id)
    if sound is None:
        raise HTTPException(404, f"no sound with id {sound_id}")
    return _public(sound)


@router.patch(
    "/{sound_id}",
    response_model=SoundPublic,
    dependencies=[WriteAccess],
    responses={404: {"description": "no such sound"}, 422: {"description": "bad words"}},
)
def edit_sound_words(session: SessionDep, sound_id: int, body: SoundWordsUpdate) -> SoundPublic:
    """Edit a sound's title, caption or tags; searchable by its new words at once."""
    sent = body.model_fields_set
    if not sent:
        raise RequestError("send at least one of title, caption, tags")
    if "title" in sent and body.title is None:
        raise RequestError("title: a sound keeps a title; send a new one instead of null")
    if "tags" in sent and body.tags is None:
        raise RequestError("tags: send [] to leave the sound without tags, not null")
    sound = session.get(Sound, sound_id)
    if sound is None:
        raise HTTPException(404, f"no sound with id {sound_id}")
    edit_words(session, sound, **{name: getattr(body, name) for name in sent})
    session.commit()
    return _public(sound)


@router.post(
    "/{sound_id}/caption",
    status_code=202,
    response_model=JobPublic,
    dependencies=[WriteAccess, GenerationLimit],
    responses={404: {"description": "no such sound"}, 503: {"description": "no job queue"}},
)
def caption_sound(session: SessionDep, queue: QueueDep, sound_id: int) -> JSONResponse:
    """Caption and tag the sound again as a job; a person's words stay as they are."""
    if session.get(Sound, sound_id) is None:
        raise HTTPException(404, f"no sound with id {sound_id}")
    running = active_caption_job(session, sound_id)
    if running is not None:
        return accepted(job_public(running), running.id)
    job = new_job(session, JobKind.caption.value, {"sound_ids": [sound_id], "force": True})
    session.commit()
    return send_or_fail(session, queue, job)


@router.get("/{sound_id}/audio", response_model=None)
def get_sound_audio(
    foley: FoleyDep,
    session: SessionDep,
    sound_id: int,
    range_header: Annotated[str | None, Header(alias="range")] = None,
) -> Response:
    """Stream a sound's file; supports HTTP Range requests."""
    path = sound_file(foley, session, find_sound(session, sound_id))
    media_type = content_type(path)
    size = path.stat().st_size
    if range_header is None:
        return FileResponse(path, media_type=media_type, headers={"Accept-Ranges": "bytes"})
    start, end = _parse_range(range_header, size)
    headers = {
        "Content-Range": f"bytes {start}-{end}/{size}",
        "Accept-Ranges": "bytes",
        "Content-Length": str(end - start + 1),
    }
    return StreamingResponse(
        _read_range(path, start, end), status_code=206, media_type=media_type, headers=headers
    )


def find_sound(session: Session, sound_id: int) -> Sound:
    """The sound, or 404."""
    sound = session.get(Sound, sound_id)
    if sound is None:
        raise HTTPException(404, f"no sound with id {sound_id}")
    return sound


def sound_file(foley: Foley, session: Session, sound: Sound) -> Path:
    """The sound's first readable file inside a library root or the data dir, or 404."""
    roots = [Path(p) for p in session.scalars(select(Library.path))]
    roots.append(foley.settings.data_dir.resolve())
    path = _servable_path([loc.path for loc in sound.locations], roots)
    if path is None:
        raise HTTPException(404, f"sound {sound.id} has no readable file inside a library")
    return path


def _servable_path(paths: list[str], roots: list[Path]) -> Path | None:
    """The first existing path that resolves inside a library root or the data dir."""
    for raw in sorted(paths):
        path = Path(raw).resolve()
        if any(path.is_relative_to(root.resolve()) for root in roots) and path.is_file():
            return path
    return None


def _parse_range(header: str, size: int) -> tuple[int, int]:
    unsatisfiable = HTTPException(
        416,
        f"range {header!r} cannot be served from {size} bytes",
        headers={"Content-Range": f"bytes */{size}"},
    )
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        raise unsatisfiable
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":  # suffix: the last N bytes
            length = int(last)
            if length <= 0:
                raise unsatisfiable
            return max(size - length, 0), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        raise unsatisfiable from None
    if start > end or start >= size:
        raise unsatisfiable
    return start, min(end, size - 1)


def _read_range(path: Path, start: int, end: int) -> Iterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(start)
        remaining = end - start + 1
        while remaining > 0:
            chunk = handle.read(min(CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk
