"""Pictures of sounds: waveform and spectrogram PNGs, drawn on first request and cached."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response

from core.audio import AudioError, decode
from core.catalog import Sound
from search.api.deps import FoleyDep, SessionDep
from search.api.routes.sounds import find_sound, sound_file
from search.pictures import SAMPLE_RATE, Kind, PictureCache, Size, draw, draw_error, etag
from search.service import Foley

log = logging.getLogger(__name__)

router = APIRouter(prefix="/sounds", tags=["sounds"])

MAX_AGE_S = 86_400

PNG_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "the picture"},
    304: {"description": "the picture has not changed (If-None-Match)"},
    404: {"description": "no such sound, or no readable file for it"},
    422: {"content": {"image/png": {}}, "description": "a picture saying why it cannot decode"},
}


def _headers(foley: Foley, tag: str) -> dict[str, str]:
    scope = "private" if foley.settings.read_requires_key else "public"
    return {"ETag": tag, "Cache-Control": f"{scope}, max-age={MAX_AGE_S}"}


def _matches(if_none_match: str | None, tag: str) -> bool:
    if not if_none_match:
        return False
    presented = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return tag in presented or "*" in presented


def _draw_cached(foley: Foley, sound: Sound, kind: Kind, size: Size, file: Path) -> bytes:
    cache = PictureCache(foley.settings.data_dir / "pictures")
    png = cache.get(sound.content_hash, kind, size)
    if png is None:
        signal, _ = decode(file, target_sr=SAMPLE_RATE, limits=foley.limits)
        png = draw(kind, size, signal, SAMPLE_RATE)
        cache.put(sound.content_hash, kind, size, png)
    return png


@router.get("/{sound_id}/{kind}.png", response_class=Response, responses=PNG_RESPONSES)
def get_sound_picture(
    foley: FoleyDep,
    session: SessionDep,
    sound_id: int,
    kind: Kind,
    size: Annotated[Size, Query(description="list (195 x 101) or detail (780 x 301)")] = Size.list,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """A sound's waveform or log-frequency spectrogram, as PNG."""
    sound = find_sound(session, sound_id)
    tag = etag(sound.content_hash, kind, size)
    if _matches(if_none_match, tag):
        return Response(status_code=304, headers=_headers(foley, tag))
    file = sound_file(foley, session, sound)
    try:
        png = _draw_cached(foley, sound, kind, size, file)
    except (AudioError, OSError) as exc:
        log.warning("no %s for sound %s: %s", kind.value, sound_id, exc)
        return Response(
            draw_error(size, f"Cannot draw this sound: {exc}"),
            status_code=422,
            media_type="image/png",
            headers={"Cache-Control": "no-store", "X-Foley-Error": "undecodable_audio"},
        )
    return Response(png, media_type="image/png", headers=_headers(foley, tag))
