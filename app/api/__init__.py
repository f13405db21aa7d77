"""The REST API (``/api/v1``), served by the same process and port as the Gradio workbench.

:func:`create_api` builds a FastAPI sub-application that :func:`app.server.create_web_app`
mounts at ``/api`` (before Gradio's ``/``): routes under ``/api/v1/...``, OpenAPI docs at
``/api/docs`` and the schema at ``/api/openapi.json``. One router module per area of the
registry (sources, objects, categories, tracks, datasets, stats) plus the model gateway
(models) and health; later capabilities (video, classify, train) add their module to
:data:`ROUTERS`. ``docs/api.md`` lists the endpoints and where they differ from the
specification's separate services.
"""
from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline

from app.api import (
    categories,
    classify,
    datasets,
    errors,
    health,
    index,
    models,
    objects,
    runs,
    sources,
    stats,
    suggest,
    tracks,
    video,
)
from app.api.auth import ApiAuth
from app.api.deps import UploadLimit

API_PREFIX = "/api"
VERSION_PREFIX = "/v1"

ROUTERS = [
    sources.router,
    objects.router,
    categories.router,
    tracks.router,
    datasets.router,
    stats.router,
    index.router,
    models.router,
    classify.router,
    runs.router,
    suggest.router,
    video.router,
]
"""Routers behind authentication, in the order the docs show them."""

OPEN_ROUTERS = [health.router]
"""Routers open even when auth is on."""


def create_api(ctx: Any, *, auth: tuple[str, str] | None = None, api_token: str | None = None,
               throttle: dict | None = None) -> FastAPI:
    """The API as a FastAPI sub-application, to be mounted at :data:`API_PREFIX`.

    Args:
        ctx: the :class:`app.context.AppContext` (registry, data folder, model providers).
        auth: ``(user, password)`` accepted as HTTP Basic (the UI's ``--auth``), or None.
        api_token: a bearer token accepted too (``--api-token`` / ``$AGL_API_TOKEN``), or None.
            With neither, the API is open (the server binds 127.0.0.1 by default).
        throttle: keyword arguments of :class:`app.web_security.LoginThrottle` for failed
            API credentials.

    Returns:
        The sub-application (``app.state.ctx`` holds ``ctx``, ``app.state.auth`` the checker).
    """
    # Swagger UI's script and CSS come from the fastapi-offline package, not a CDN: the docs
    # page works on an air-gapped machine like the rest of the app.
    api = FastAPIOffline(
        title="AgenticLabeling API",
        version="1",
        summary="The registry, the model gateway and find-by-upload over HTTP (see docs/api.md).",
        docs_url="/docs",
        redoc_url=None,
        static_url="/docs-assets",
        openapi_url="/openapi.json",
    )
    checker = ApiAuth(auth, api_token, throttle)
    api.state.ctx = ctx
    api.state.auth = checker
    errors.install(api)
    api.add_middleware(UploadLimit)
    responses = {400: {"model": errors_model()}, 404: {"model": errors_model()}}
    for router in OPEN_ROUTERS:
        api.include_router(router, prefix=VERSION_PREFIX)
    for router in ROUTERS:
        api.include_router(router, prefix=VERSION_PREFIX, dependencies=[Depends(checker)],
                           responses={**responses, 401: {"model": errors_model()}})
    return api


def errors_model() -> type:
    from app.api.schemas import ErrorOut

    return ErrorOut
