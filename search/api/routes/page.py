"""The search page a person opens in a browser."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).resolve().parents[2] / "static"
PAGE = STATIC / "index.html"


@router.get("/")
def search_page() -> FileResponse:
    """The search page."""
    return FileResponse(PAGE, media_type="text/html")
