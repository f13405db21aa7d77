"""Errors of the REST API: every one is JSON ``{"error": ..., "detail": ...}``, never a traceback.

* :class:`ApiError` (raised by the routers): its own status, e.g. 404 for unknown ids, 413 for
  too large uploads.
* ``ValueError`` (bad input; ``pipeline.image_io.ImageLoadError`` is one): 400 with its message.
* ``WeightsMissingError`` (matched by name, :func:`app.context.is_weights_missing`): 503 with
  the command that gets the weights.
* ``HTTPException`` (e.g. 405) keeps its status; pydantic's 422 for schema errors stays as it
  is (FastAPI's default body, a list of problems under ``detail``).
* Anything else: the traceback goes to the log, the client gets 500 and a short message.
"""
from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.context import is_weights_missing

log = logging.getLogger(__name__)

WEIGHTS_HINT = ("get the weights with `python launch.py models download` "
                "(or, offline, `python launch.py models import DIR`), then retry")


class ApiError(Exception):
    """An error with an HTTP status and a message a person can act on."""

    def __init__(self, status: int, detail: str, *, error: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = int(status)
        self.detail = detail
        self.error = error or HTTPStatus(self.status).phrase.lower()
        self.headers = headers or {}


def not_found(exc: BaseException | str) -> ApiError:
    """A 404 carrying the registry's own message (it names the id and where ids come from)."""
    return ApiError(404, str(exc))


def body(status: int, detail: object, error: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error or HTTPStatus(status).phrase.lower(), "detail": detail},
                        status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Adds the handlers above to ``app``."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return body(exc.status, exc.detail, exc.error, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return body(exc.status_code, exc.detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(ValueError)
    async def _value(_: Request, exc: ValueError) -> JSONResponse:
        return body(400, str(exc) or type(exc).__name__)

    @app.exception_handler(FileNotFoundError)
    async def _missing_file(_: Request, exc: FileNotFoundError) -> JSONResponse:
        return body(404, str(exc))

    @app.exception_handler(RuntimeError)
    async def _runtime(request: Request, exc: RuntimeError) -> JSONResponse:
        if is_weights_missing(exc):
            return body(503, f"{exc}; {WEIGHTS_HINT}", "weights missing")
        return _internal(request, exc)

    @app.exception_handler(Exception)
    async def _any(request: Request, exc: Exception) -> JSONResponse:
        return _internal(request, exc)


def _internal(request: Request, exc: BaseException) -> JSONResponse:
    log.error("API %s %s failed", request.method, request.url.path, exc_info=exc)
    return body(500, f"internal error ({type(exc).__name__}); the server log has the details", "internal error")
