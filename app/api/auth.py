"""API authentication: HTTP Basic with the ``--auth`` credentials, or a bearer token.

When the server runs with ``--auth USER:PASS`` and/or ``--api-token`` (``$AGL_API_TOKEN``),
every API route except ``GET /api/v1/health`` requires ``Authorization: Basic …`` with those
credentials or ``Authorization: Bearer <token>``. Without either, the API is open, like the UI
(the server then binds 127.0.0.1 unless told otherwise).

Wrong credentials are throttled per client address by the UI login's own counter
(:class:`app.web_security.LoginThrottle`: after ``max_failures`` failures, 429 + ``Retry-After``
with a doubling delay): :func:`app.server.create_web_app` hands the root app to the API
(``api.state.root_app``), and the first request finds the throttle middleware in the root's
middleware stack, so failures at the UI login and at the API add up. Without a root app (the
API mounted on its own, as in unit tests) an instance of the same class with the same
parameters counts the API's failures alone. A request with no credentials at all is refused
(401) without counting as a failure.
"""
from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any

from fastapi import Request

from app.api.errors import ApiError
from app.web_security import LoginThrottle

TOKEN_USER = "api-token"
"""``validated_by`` recorded for changes made with the bearer token."""


async def _no_app(scope: Any, receive: Any, send: Any) -> None:  # the throttle is used for its counters only
    raise RuntimeError("not an ASGI app")


def find_throttle(root: Any) -> LoginThrottle | None:
    """The :class:`LoginThrottle` in a Starlette app's built middleware stack (None before the
    first request builds it, or when there is none)."""
    node = getattr(root, "middleware_stack", None)
    for _ in range(32):  # ServerErrorMiddleware -> user middleware -> ExceptionMiddleware -> router
        if node is None or isinstance(node, LoginThrottle):
            return node
        node = getattr(node, "app", None)
    return None


class ApiAuth:
    """The FastAPI dependency checking credentials; returns the user name (None when open).

    Args:
        auth: ``(user, password)`` from ``--auth``, or None.
        api_token: the bearer token, or None.
        throttle: keyword arguments for :class:`LoginThrottle`.
    """

    def __init__(self, auth: tuple[str, str] | None = None, api_token: str | None = None,
                 throttle: dict | None = None) -> None:
        if api_token is not None and not api_token.strip():
            api_token = None
        self.auth = auth
        self.api_token = api_token
        self._own = LoginThrottle(_no_app, **(throttle or {}))
        self._shared: LoginThrottle | None = None
        self.root_app: Any = None  # set by app.server.create_web_app

    @property
    def throttle(self) -> LoginThrottle:
        """The UI login's throttle when it can be found in the root app, else the API's own."""
        if self._shared is None and self.root_app is not None:
            self._shared = find_throttle(self.root_app)
        return self._shared or self._own

    @property
    def enabled(self) -> bool:
        return self.auth is not None or self.api_token is not None

    def _refuse(self, detail: str) -> ApiError:
        schemes = []
        if self.auth is not None:
            schemes.append('Basic realm="AgenticLabeling API"')
        if self.api_token is not None:
            schemes.append("Bearer")
        return ApiError(401, detail, headers={"WWW-Authenticate": ", ".join(schemes)})

    def check(self, header: str | None, client: str) -> str | None:
        """The user name for the ``Authorization`` header value; raises ApiError 401/429."""
        if not self.enabled:
            return None
        wait = self.throttle.retry_after(client)
        if wait > 0:
            seconds = max(1, int(wait + 0.999))
            raise ApiError(429, f"too many failed logins from this address; try again in {seconds} s",
                           headers={"Retry-After": str(seconds)})
        scheme, _, cred = (header or "").strip().partition(" ")
        scheme, cred = scheme.lower(), cred.strip()
        if not scheme:
            raise self._refuse("credentials required: send HTTP Basic USER:PASS (as for --auth) "
                               "or 'Authorization: Bearer <token>' (--api-token / AGL_API_TOKEN)")
        user = None
        if scheme == "bearer" and self.api_token is not None:
            if secrets.compare_digest(cred.encode(), self.api_token.encode()):
                user = TOKEN_USER
        elif scheme == "basic" and self.auth is not None:
            try:
                name, _, password = base64.b64decode(cred, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                name, password = "", ""
            ok_user = secrets.compare_digest(name.encode(), self.auth[0].encode())
            ok_pass = secrets.compare_digest(password.encode(), self.auth[1].encode())
            if ok_user and ok_pass:
                user = name
        if user is None:
            self.throttle.record(client, ok=False)
            raise self._refuse("wrong credentials: check the user and password (--auth) or the token (--api-token)")
        self.throttle.record(client, ok=True)
        return user

    async def __call__(self, request: Request) -> str | None:
        user = self.check(request.headers.get("authorization"), LoginThrottle.client_key(request.scope))
        request.state.api_user = user
        return user
