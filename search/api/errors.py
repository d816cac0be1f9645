"""Every error leaves the API as JSON: {"error": code, "detail": message}."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from core.audio import AudioError, TooLargeError
from core.vector_index import VectorIndexError
from search.pipeline import QueryError


def error_response(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": code, "detail": detail})


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

    @app.exception_handler(VectorIndexError)
    async def _index(_: Request, exc: VectorIndexError) -> JSONResponse:
        return error_response(503, "index_unavailable", str(exc))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = {
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            416: "bad_range",
            422: "invalid_request",
        }
        response = error_response(
            exc.status_code, code.get(exc.status_code, "http_error"), str(exc.detail)
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'] if p != 'body')}: {err['msg']}"
            for err in exc.errors()
        )
        return error_response(422, "invalid_request", problems)
