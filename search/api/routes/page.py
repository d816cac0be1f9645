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

PAGE = Path(__file__).resolve().parents[2] / "static" / "index.html"
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)
NONE = "'none'"


@lru_cache(maxsize=1)
def content_security_policy() -> str:
    """Only the page's own inline script and style (by hash) and same-origin requests."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for tag, body in _INLINE.findall(PAGE.read_text(encoding="utf-8")):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes[tag].append(f"'sha256-{digest}'")
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(hashes['script']) or NONE}",
            f"style-src {' '.join(hashes['style']) or NONE}",
            "connect-src 'self'",
            "media-src 'self'",
            "img-src 'self'",
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
