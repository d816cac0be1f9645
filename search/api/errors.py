"""Every error leaves the API as JSON: {"error": code, "detail": message}.

The OpenAPI schema says so too: every 4xx and 5xx response of every operation is documented
with the `ErrorBody` schema, and no secret reaches a `detail` (`core.redact`).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException

from core.audio import AudioError, TooLargeError
from core.redact import redact
from core.vector_index import VectorIndexError
from search.api.admission import ServerBusyError
from search.pipeline import QueryError

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """What every error response holds."""

    error: str = Field(description="a machine-readable code, e.g. not_audio, rate_limited")
    detail: str = Field(description="a sentence naming the problem")


# Responses any operation can give; routes add their own (400, 404, 409, 413...).
COMMON_ERRORS = {
    "422": "a parameter or the body is invalid",
    "429": "over the rate limit; retry after the seconds in Retry-After",
    "500": "an unexpected server error (the details are in the server's log)",
    "503": "the catalog database (or the job queue) cannot be reached; retry after Retry-After",
}
# How long a client should wait before asking again while the catalog is unreachable.
CATALOG_RETRY_AFTER_S = 5
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    416: "bad_range",
    422: "invalid_request",
    429: "rate_limited",
}


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": code, "detail": redact(detail)}
    return JSONResponse(status_code=status, content=body, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AudioError)
    async def _audio(_: Request, exc: AudioError) -> JSONResponse:
        status = 413 if isinstance(exc, TooLargeError) else 422
        return error_response(status, exc.code, str(exc))

    @app.exception_handler(QueryError)
    async def _query(_: Request, exc: QueryError) -> JSONResponse:
        return error_response(
            exc.status, "bad_query" if exc.status == 422 else "not_found", str(exc)
        )

    @app.exception_handler(ServerBusyError)
    async def _busy(_: Request, exc: ServerBusyError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after_s)}
        return error_response(503, "busy", str(exc), headers)

    @app.exception_handler(VectorIndexError)
    async def _index(_: Request, exc: VectorIndexError) -> JSONResponse:
        return error_response(503, "index_unavailable", str(exc))

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _catalog(request: Request, exc: Exception) -> JSONResponse:
        # A database restarting or out of reach: the client may retry; the statement and
        # the connection's address stay in the log.
        log.warning("catalog unreachable on %s %s: %s", request.method, request.url.path, exc)
        detail = f"the catalog database cannot be reached ({type(exc).__name__}); try again"
        headers = {"Retry-After": str(CATALOG_RETRY_AFTER_S)}
        return error_response(503, "catalog_unavailable", detail, headers)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The exception's text may name internals (a query, a URL): it goes to the log only.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        detail = f"the server failed on this request ({type(exc).__name__}); see its log"
        return error_response(500, "internal_error", detail)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'] if p != 'body')}: {err['msg']}"
            for err in exc.errors()
        )
        return error_response(422, "invalid_request", problems)


def error_openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI schema with `ErrorBody` as the content of every 4xx and 5xx response."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorBody"] = ErrorBody.model_json_schema()
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, description in COMMON_ERRORS.items():
                responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if status[0] in "45":
                    response["content"] = dict(ref)
    app.openapi_schema = schema
    return schema
