"""The search page a person opens in a browser."""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).resolve().parents[2] / "static"
PAGE = STATIC / "index.html"
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


@lru_cache(maxsize=1)
def content_security_policy() -> str:
    """The page's own files and same-origin requests only; any inline script or style is
    allowed by its hash, never by 'unsafe-inline'."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for tag, body in _INLINE.findall(PAGE.read_text(encoding="utf-8")):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes[tag].append(f"'sha256-{digest}'")
    return "; ".join(
        [
            "default-src 'none'",
            " ".join(["script-src 'self'", *hashes["script"]]),
            " ".join(["style-src 'self'", *hashes["style"]]),
            "connect-src 'self'",
            "media-src 'self'",
            # the favicon is an empty data: URL, so the browser asks the server for none
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


@router.get("/")
def search_page() -> FileResponse:
    """The search page."""
    return FileResponse(
        PAGE, media_type="text/html", headers={"Content-Security-Policy": content_security_policy()}
    )
