"""The API on the real server: ``launch.py serve --data DIR --port P`` as a subprocess on
127.0.0.1 (the way the README starts it), and the in-process server with --auth and a token
(Gradio's login and the API's Basic/bearer side by side)."""
from __future__ import annotations

import base64
import os
from pathlib import Path

import httpx
import pytest

from tests.app.api.conftest import AUTH, TOKEN
from tests.app.fakes import free_port, make_context, write_scene
from tests.serve_process import serving

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def served(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "AGL_API_TOKEN": ""}
    env.pop("AGL_AUTH", None)
    with serving(tmp_path / "data", env) as (base, _proc):
        yield base, tmp_path / "data"


def test_launch_serve_answers_the_api_beside_the_ui(served, tmp_path):
    base, data = served
    with httpx.Client(base_url=base, timeout=30) as c:
        assert c.get("/api/v1/health").json()["objects"] == 0
        assert "swagger" in c.get("/api/docs").text.lower()
        assert "/v1/objects/{object_id}/mask" in c.get("/api/openapi.json").json()["paths"]
        assert c.get("/").status_code == 200  # the Gradio workbench still answers at /
        scene = write_scene(tmp_path / "up" / "scene.png", seed=2)
        r = c.post("/api/v1/sources", files={"file": ("scene.png", scene.read_bytes(), "image/png")})
        assert r.status_code == 201, r.text
        sid = r.json()["source_id"]
        assert c.get(f"/api/v1/sources/{sid}").json()["width"] == 320
        assert c.get("/api/v1/objects", params={"source_id": sid}).json()["total"] == 0
        assert c.get("/api/v1/objects/obj_nope").status_code == 404
        r = c.post("/api/v1/categories", json={"name": "cat"})
        assert r.status_code == 201 and c.get("/api/v1/categories").json()[0]["name"] == "cat"
        st = c.get("/api/v1/models/status").json()
        assert "grabcut" in st["segmenters"]
        # The database and the index are never served, under /api or anywhere else.
        assert (data / "registry.db").is_file()
        for path in ("/api/registry.db", "/api/v1/registry.db", "/api/v1/datasets/exports/registry.db",
                     "/api/v1/datasets/exports/..%2Fregistry.db", "/api/../registry.db"):
            r = c.get(path)
            assert r.status_code in (403, 404), path
            assert b"SQLite format" not in r.content


def _basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_in_process_server_with_auth_and_token(tmp_path):
    from app.server import create_web_app, start_in_thread

    ctx = make_context(tmp_path / "data", auth_enabled=True)
    app, demo = create_web_app(ctx, auth=AUTH, api_token=TOKEN)
    server = start_in_thread(app, demo, host="127.0.0.1", port=free_port())
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert c.get("/api/v1/health").json()["auth"] is True
            assert c.get("/api/v1/stats").status_code == 401
            assert c.get("/api/v1/stats", headers=_basic(*AUTH)).json()["objects"] == 0
            assert c.get("/api/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
            # Gradio's own login is unchanged: the right password logs in, a wrong one does not.
            assert c.post("/login", data={"username": "alice", "password": "bad"}).status_code in (400, 401)
            assert c.post("/login", data={"username": AUTH[0], "password": AUTH[1]}).status_code == 200
    finally:
        server.close()
        ctx.registry.close()


def test_failed_api_credentials_count_in_the_login_throttle(tmp_path):
    from app.server import create_web_app, start_in_thread

    ctx = make_context(tmp_path / "data", auth_enabled=True)
    app, demo = create_web_app(ctx, auth=AUTH, api_token=TOKEN, throttle={"max_failures": 2, "base_delay_s": 60})
    server = start_in_thread(app, demo, host="127.0.0.1", port=free_port())
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert c.get("/api/v1/stats", headers=_basic("alice", "guess-1")).status_code == 401
            assert c.get("/api/v1/stats", headers={"Authorization": "Bearer guess-2"}).status_code == 401
            # Two API failures: the UI login now refuses this address, the right password included ...
            r = c.post("/login", data={"username": AUTH[0], "password": AUTH[1]})
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
            # ... and so does the API.
            assert c.get("/api/v1/stats", headers=_basic(*AUTH)).status_code == 429
    finally:
        server.close()
        ctx.registry.close()
