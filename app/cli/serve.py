"""``launch.py serve``: start the workbench on 127.0.0.1 (the default command).

Security by default: binds 127.0.0.1, no share link, uploads capped, files served only from
``<data>/media``, ``<data>/thumbs`` and ``<data>/exports`` (never the database or the index);
``--auth USER:PASS`` (or ``$AGL_AUTH``) turns on a login, throttled per client address after
repeated failures (HTTP 429), and the logged-in name becomes ``validated_by`` in Review.

The server is ``app.server``: a FastAPI app with Gradio mounted at ``/``, run by uvicorn.
This process is the vector-index writer for the data folder while it runs (other processes
only fill the outbox); it relays their rows every few seconds.
"""
from __future__ import annotations

import argparse
import logging
import os

from app.cli.common import add_data_arg, ensure_data_dir

log = logging.getLogger(__name__)


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """"user:pass" -> ("user", "pass"); None/"" -> None."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"--auth: expected USER:PASS, got {value!r}; e.g. --auth alice:s3cret (or AGL_AUTH=alice:s3cret)")
    return user, password


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="start the web workbench (default command)")
    add_data_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--auth", default=None, help="USER:PASS to require a login (default: $AGL_AUTH, else none)")
    p.add_argument("--api-token", default=None,
                   help="bearer token the REST API (/api/v1) accepts besides --auth (default: $AGL_API_TOKEN)")
    p.add_argument("--forwarded-allow-ips", default=None, metavar="IPS",
                   help="behind a reverse proxy: its addresses or networks, comma-separated (e.g. 127.0.0.1); "
                        "X-Forwarded-For from them names the client for login throttling "
                        "(default: none, every client is its TCP address)")
    p.add_argument("--profile", choices=["cpu", "gpu"], default="cpu", help="model sizes (default cpu)")
    p.add_argument("--segmenter", choices=["grabcut", "sam2"], default="sam2",
                   help="default segmenter for Refine (SAM2 when its weights exist, else GrabCut)")
    p.add_argument("--weights-dir", default=None, help="folder holding model weights (air-gapped installs)")
    p.set_defaults(func=run)


def build_context(data_dir, *, profile: str = "cpu", segmenter: str = "sam2", weights_dir=None, auth_enabled=False):
    """The production AppContext: the registry in ``data_dir`` plus a lazy ModelManager."""
    from app.cli.models import weights_dir_for
    from app.context import AppContext
    from pipeline.models.manager import ModelManager
    from registry.facade import Registry

    manager = ModelManager(profile=profile, weights_dir=weights_dir_for(data_dir, weights_dir))
    reg = Registry(data_dir, **(manager.embedding_identity() or {}))  # the embedder's size and version
    return AppContext.from_manager(reg, data_dir, manager, auth_enabled=auth_enabled, default_segmenter=segmenter)


def run(args: argparse.Namespace) -> int:
    from app.server import create_web_app, parse_proxies, serve

    auth = parse_auth(args.auth if args.auth is not None else os.environ.get("AGL_AUTH"))
    proxies = parse_proxies(args.forwarded_allow_ips)
    data_dir = ensure_data_dir(args.data)
    ctx = build_context(data_dir, profile=args.profile, segmenter=args.segmenter, weights_dir=args.weights_dir,
                        auth_enabled=auth is not None)
    # Vectors written while the index was unavailable (or by an interrupted run) go in now.
    try:
        res = ctx.registry.sync_outbox()
        if res.get("synced") or res.get("failed"):
            log.info("outbox sync at start-up: %s", res)
    except Exception as exc:  # search degrades; the rest of the app still works
        log.warning("outbox sync failed at start-up (search may miss recent objects): %s", exc)
    if args.host not in ("127.0.0.1", "localhost") and auth is None:
        log.warning("listening on %s without --auth: anyone on the network can edit the registry", args.host)
    from registry.outbox_relay import OutboxRelay

    relay = OutboxRelay(ctx.registry, interval_s=2.0).start()  # other processes' vectors, too
    api_token = args.api_token if args.api_token is not None else os.environ.get("AGL_API_TOKEN")
    app, _demo = create_web_app(ctx, auth=auth, api_token=api_token or None)
    log.info("data folder %s; segmenters %s", data_dir, ctx.segmenter_names)
    print(f"AgenticLabeling on http://{args.host}:{args.port}/ (data folder {data_dir})", flush=True)
    try:
        serve(app, host=args.host, port=args.port, proxies=proxies)
    finally:
        relay.stop()
        ctx.registry.close()
    return 0
