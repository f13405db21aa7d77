"""What the web server may serve from the data folder, and login throttling.

Two pieces the web server (:mod:`app.server`) wires in, kept free of Gradio so they are easy to
test on their own:

* :func:`served_paths`: Gradio serves ``/gradio_api/file=<absolute path>`` for any file inside
  ``allowed_paths`` unless it lies inside ``blocked_paths`` (block wins; both are resolved, so
  ``media/../registry.db`` and symlinks are judged by where they really point). Pages need only
  the media copies, the thumbnails and the exports, so only those three folders are allowed;
  the database, its WAL/SHM/journal, the lock file and every vector-index folder are blocked
  explicitly as well, in case a later change widens the allowed list.
* :class:`LoginThrottle`: an ASGI middleware in front of Gradio's ``POST /login``. Gradio's
  ``auth`` callable never sees the request, so the throttle sits outside: after
  ``max_failures`` failed logins from one client address within ``window_s``, that address is
  refused with HTTP 429 and a ``Retry-After`` header for a delay that doubles with every further
  failure (capped at ``max_delay_s``); a successful login resets the address. The client
  address is ``scope["client"]``: the TCP peer, or behind the reverse proxies named with
  ``serve --forwarded-allow-ips`` the address they forwarded (:mod:`app.server`), so a client
  cannot pick its own address with ``X-Forwarded-For``.
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVED_DIRS: tuple[str, ...] = ("media", "thumbs", "exports")
"""Folders of the data folder that pages show or offer for download."""

BLOCKED_NAMES: tuple[str, ...] = (
    "registry.db", "registry.db-wal", "registry.db-shm", "registry.db-journal",
    "index.lock", "chroma", "hnsw", "models",
)
"""Files and folders of the data folder never served (the corrupt-index copies are added)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def served_paths(data_dir: str | Path) -> tuple[list[str], list[str]]:
    """``(allowed_paths, blocked_paths)`` for Gradio: absolute, resolved folder/file paths.

    Allowed: ``<data>/media``, ``<data>/thumbs``, ``<data>/exports``. Blocked: the database and
    its side files, ``index.lock``, ``chroma``, ``hnsw``, ``models`` and any ``chroma.corrupt-*``
    folder (moved-aside indexes) present now.
    """
    root = Path(data_dir).expanduser().resolve()
    allowed = [str(root / d) for d in SERVED_DIRS]
    blocked = [str(root / n) for n in BLOCKED_NAMES]
    blocked += sorted(str(p) for p in root.glob("*.corrupt-*"))
    return allowed, blocked


@dataclass
class _Client:
    failures: int = 0
    last_failure: float = 0.0
    blocked_until: float = 0.0


class LoginThrottle:
    """ASGI middleware: per-client back-off for failed ``POST .../login`` requests.

    Args:
        app: the ASGI app to wrap.
        max_failures: failures within ``window_s`` before the client is refused.
        window_s: failures older than this (since the last one) are forgotten.
        base_delay_s: the first refusal lasts this long; each further failure doubles it.
        max_delay_s: the longest refusal.
        max_clients: addresses remembered at most (least recently failing ones are dropped).
        clock: seconds, monotonic (injectable for tests).

    A login counts as failed when Gradio answers 400/401/403, as successful on 2xx. While a
    client is refused, its requests never reach Gradio (so a correct password is refused too,
    which is what stops guessing); other clients are unaffected.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_failures: int = 5,
        window_s: float = 900.0,
        base_delay_s: float = 2.0,
        max_delay_s: float = 900.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1:
            raise ValueError(f"max_failures must be >= 1, got {max_failures}")
        self.app = app
        self.max_failures = int(max_failures)
        self.window_s = float(window_s)
        self.base_delay_s = float(base_delay_s)
        self.max_delay_s = float(max_delay_s)
        self.max_clients = int(max_clients)
        self.clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def is_login(scope: Scope) -> bool:
        """True for ``POST /login`` (or ``/login/``) under any mount path."""
        return (
            scope.get("type") == "http"
            and scope.get("method") == "POST"
            and str(scope.get("path", "")).rstrip("/").endswith("/login")
        )

    @staticmethod
    def client_key(scope: Scope) -> str:
        client = scope.get("client")
        return str(client[0]) if client else "unknown"

    def retry_after(self, key: str) -> float:
        """Seconds ``key`` must wait before trying again (0 when it may try now)."""
        with self._lock:
            c = self._clients.get(key)
            return max(0.0, c.blocked_until - self.clock()) if c else 0.0

    def record(self, key: str, ok: bool) -> None:
        """Counts one login outcome for ``key`` (a success forgets the client)."""
        now = self.clock()
        with self._lock:
            if ok:
                self._clients.pop(key, None)
                return
            c = self._clients.pop(key, None) or _Client()
            if c.failures and now - c.last_failure > self.window_s:
                c = _Client()
            c.failures += 1
            c.last_failure = now
            over = c.failures - self.max_failures
            if over >= 0:
                c.blocked_until = now + min(self.max_delay_s, self.base_delay_s * 2.0 ** min(over, 30))
            self._clients[key] = c  # most recent last
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.is_login(scope):
            await self.app(scope, receive, send)
            return
        key = self.client_key(scope)
        wait = self.retry_after(key)
        if wait > 0:
            await self._refuse(send, wait)
            return
        status: dict[str, int] = {}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        code = status.get("code", 500)
        if 200 <= code < 300:
            self.record(key, ok=True)
        elif code in (400, 401, 403):
            self.record(key, ok=False)

    @staticmethod
    async def _refuse(send: Send, wait: float) -> None:
        seconds = max(1, math.ceil(wait))
        body = json.dumps({
            "detail": f"too many failed logins from this address; try again in {seconds} s"
        }).encode()
        await send({
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"retry-after", str(seconds).encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        })
        await send({"type": "http.response.body", "body": body})
