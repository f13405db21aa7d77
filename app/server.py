"""The web server: a FastAPI app with the Gradio workbench mounted at ``/``, run by uvicorn.

``launch.py serve`` and the tests start the server the same way (:func:`create_web_app`, then
:func:`serve` or :func:`start_in_thread`), so what the tests probe over HTTP is what users get:

* Gradio is mounted with ``gr.mount_gradio_app`` (same port, same process); other routers (the
  REST API of issue 15) are added to the returned FastAPI app beside it.
* Files: only ``<data>/media``, ``<data>/thumbs`` and ``<data>/exports`` are served; the database,
  its WAL/SHM and the index folders are blocked (:func:`app.web_security.served_paths`).
* Logins: :class:`app.web_security.LoginThrottle` answers 429 + ``Retry-After`` to an address
  after repeated failures.
* uvicorn reads no proxy headers unless told which peers are proxies (``forwarded_allow_ips``,
  ``serve --forwarded-allow-ips``): only then is ``X-Forwarded-For`` believed, and only from
  those peers (uvicorn's ``ProxyHeadersMiddleware`` takes the nearest address that is not a
  trusted proxy), so a client cannot fake its address either way.
"""
from __future__ import annotations

import ipaddress
import threading
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr
import uvicorn
from fastapi import FastAPI

from app.web_security import LoginThrottle

# launch() keywords that mount_gradio_app does not take (or takes under another name).
_LAUNCH_ONLY = ("share",)


def create_web_app(ctx: Any, *, auth: tuple[str, str] | None = None,
                   throttle: dict | None = None, api_token: str | None = None,
                   api: bool = True) -> tuple[FastAPI, gr.Blocks]:
    """Builds the FastAPI app with the workbench mounted at ``/`` and the REST API at ``/api``.

    Args:
        ctx: the :class:`app.context.AppContext`.
        auth: ``(user, password)`` to require a login, or None (the API accepts it as HTTP Basic).
        throttle: keyword arguments for :class:`LoginThrottle` (defaults otherwise).
        api_token: a bearer token the REST API accepts too (:mod:`app.api.auth`), or None.
        api: mount the REST API (``/api/v1``, docs at ``/api/docs``; see docs/api.md).

    Returns:
        ``(app, demo)``: the ASGI app to run, and the Gradio Blocks mounted in it.
    """
    from app.ui.app import build_app, launch_kwargs

    demo = build_app(ctx)
    kwargs = {k: v for k, v in launch_kwargs(ctx, auth=auth).items() if k not in _LAUNCH_ONLY}
    app = FastAPI(title="AgenticLabeling", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(LoginThrottle, **(throttle or {}))
    if api:  # before Gradio's "/" mount, which would otherwise catch /api/...
        from app.api import API_PREFIX, create_api

        rest = create_api(ctx, auth=auth, api_token=api_token, throttle=throttle)
        rest.state.auth.root_app = app  # failed API credentials count in the login throttle
        app.mount(API_PREFIX, rest)
    app = gr.mount_gradio_app(app, demo, path="/", ssr_mode=False, **kwargs)
    return app, demo


def parse_proxies(value: str | None) -> list[str]:
    """``"127.0.0.1, 10.0.0.0/8"`` -> the trusted proxies' addresses and networks ([] for None/"").

    Raises:
        ValueError: an item that is neither an IP address nor a network (``*`` included: trusting
            every peer would let any client name its own address).
    """
    out = []
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"--forwarded-allow-ips: expected IP addresses or networks of your reverse proxies "
                             f"(e.g. 127.0.0.1,10.0.0.0/8), got {item!r}") from None
        out.append(item)
    return out


def _config(app: FastAPI, host: str, port: int, log_level: str, proxies: list[str] | None) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=int(port), log_level=log_level, proxy_headers=bool(proxies),
                          forwarded_allow_ips=",".join(proxies) if proxies else None, server_header=False)


def serve(app: FastAPI, *, host: str = "127.0.0.1", port: int = 7860, proxies: list[str] | None = None) -> None:
    """Runs the app in the foreground until interrupted (Ctrl-C). ``proxies``: the reverse
    proxies whose ``X-Forwarded-For`` names the client (:func:`parse_proxies`); none by default."""
    uvicorn.Server(_config(app, host, port, "info", proxies)).run()


@dataclass
class RunningServer:
    """A server started by :func:`start_in_thread`; :meth:`close` stops it."""

    server: uvicorn.Server
    thread: threading.Thread
    demo: gr.Blocks
    url: str

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=2)
        if self.thread.is_alive():  # clients holding keep-alive/SSE connections: stop waiting for them
            self.server.force_exit = True
            self.thread.join(timeout=10)
        queue = getattr(self.demo, "_queue", None)
        if queue is not None:
            try:
                queue.close()
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass


def start_in_thread(app: FastAPI, demo: gr.Blocks, *, host: str = "127.0.0.1", port: int,
                    timeout_s: float = 30.0, proxies: list[str] | None = None) -> RunningServer:
    """Starts uvicorn in a daemon thread and waits until it accepts connections.

    Raises:
        RuntimeError: when the server has not started within ``timeout_s`` (port taken?).
    """
    server = uvicorn.Server(_config(app, host, port, "warning", proxies))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the web server did not start on {host}:{port} within {timeout_s:.0f} s; "
                               f"is the port taken? pick another with --port")
        time.sleep(0.01)
    return RunningServer(server, thread, demo, f"http://{host}:{port}/")
