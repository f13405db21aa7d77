"""API auth (Basic with --auth, bearer token, throttled failures) and the error contract
(JSON bodies, 413 for large uploads, 400 for bombs and non-images, 500 without a traceback)."""
from __future__ import annotations

import base64

import pytest

from tests.app.api.conftest import AUTH, TOKEN, mount, seed
from tests.pipeline.test_image_io import _png_header_only


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def locked(ctx):
    with mount(ctx, auth=AUTH, api_token=TOKEN, throttle={"max_failures": 2, "base_delay_s": 60}) as c:
        yield c


def test_auth_refuses_without_or_with_wrong_credentials(ctx, tmp_path):
    seed(ctx.registry, tmp_path)
    locked = mount(ctx, auth=AUTH, api_token=TOKEN)  # the default throttle: 5 failures
    r = locked.get("/api/v1/objects")
    assert r.status_code == 401 and "Basic" in r.headers["www-authenticate"] and "Bearer" in r.headers["www-authenticate"]
    assert r.json()["error"] == "unauthorized"
    assert locked.get("/api/v1/objects", headers=basic("alice", "nope")).status_code == 401
    assert locked.get("/api/v1/objects", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert locked.get("/api/v1/objects", headers={"Authorization": "Basic !!!"}).status_code == 401


def test_auth_accepts_basic_and_bearer_and_records_the_user(ctx, locked, tmp_path):
    s = seed(ctx.registry, tmp_path)
    r = locked.get("/api/v1/objects", headers=basic(*AUTH))
    assert r.status_code == 200 and r.json()["total"] == 2
    assert locked.get("/api/v1/objects", headers={"Authorization": f"Bearer {TOKEN}"}).json()["total"] == 2
    r = locked.patch(f"/api/v1/objects/{s['cat']}", json={"status": "approved"}, headers=basic(*AUTH))
    assert r.json()["validated_by"] == "alice"
    assert locked.get("/api/v1/health").status_code == 200  # open: the readiness probe
    assert locked.get("/api/v1/health").json()["auth"] is True


def test_failed_credentials_are_throttled_per_client(ctx, locked):
    for _ in range(2):
        assert locked.get("/api/v1/stats", headers=basic("alice", "guess")).status_code == 401
    r = locked.get("/api/v1/stats", headers=basic(*AUTH))  # even the right password waits now
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "try again" in r.json()["detail"]


def test_token_alone_locks_the_api(ctx):
    with mount(ctx, api_token=TOKEN) as c:
        assert c.get("/api/v1/stats").status_code == 401
        assert c.get("/api/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.get("/api/v1/stats", headers=basic("alice", "x")).status_code == 401


def test_too_large_uploads_get_413(ctx, client, monkeypatch):
    monkeypatch.setattr("app.ui.app.MAX_FILE_SIZE", "1kb")
    r = client.post("/api/v1/sources", files={"file": ("big.png", b"\x89PNG" + b"0" * 5000, "image/png")})
    assert r.status_code == 413 and "big.png" in r.json()["detail"]  # counted while reading
    r = client.post("/api/v1/sources", files={"file": ("huge.png", b"0" * (2 << 20), "image/png")})
    assert r.status_code == 413 and "limit" in r.json()["detail"]  # refused from Content-Length
    assert ctx.registry.count_sources() == 0


def test_decompression_bomb_is_refused_by_name(ctx, client):
    r = client.post("/api/v1/sources", files={"file": ("bomb.png", _png_header_only(20000, 20000), "image/png")})
    assert r.status_code == 400 and "bomb.png" in r.json()["detail"]
    assert "Traceback" not in r.text and ctx.registry.count_sources() == 0


def test_unexpected_errors_are_500_without_a_traceback(ctx, client, monkeypatch, caplog):
    def boom(**_):
        raise KeyError("secret internals")

    monkeypatch.setattr(ctx.registry, "count_objects", boom)
    r = client.get("/api/v1/objects")
    assert r.status_code == 500
    assert r.json() == {"error": "internal error",
                        "detail": "internal error (KeyError); the server log has the details"}
    assert "secret internals" not in r.text and "Traceback" not in r.text
    assert any("secret internals" in str(rec.exc_info) for rec in caplog.records if rec.exc_info)


def test_unknown_route_and_method_are_json(client):
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"] == "not found"
    r = client.put("/api/v1/stats")
    assert r.status_code == 405 and r.json()["error"] == "method not allowed"


def test_declared_oversize_is_refused_before_the_body_is_read(monkeypatch):
    import asyncio
    import json

    from app.api.deps import UploadLimit

    monkeypatch.setattr("app.ui.app.MAX_FILE_SIZE", "1kb")
    reached, sent = [], []

    async def app(scope, receive, send):
        reached.append(scope["path"])

    async def receive():
        raise AssertionError("the body was read")

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/sources",
             "headers": [(b"content-length", str(5 << 20).encode())]}
    asyncio.run(UploadLimit(app)(scope, receive, send))
    assert not reached and sent[0]["status"] == 413
    assert "limit is 1024 bytes" in json.loads(sent[1]["body"])["detail"]
    small = {**scope, "headers": [(b"content-length", b"500")]}
    asyncio.run(UploadLimit(app)(small, receive, send))
    assert reached == ["/v1/sources"]
