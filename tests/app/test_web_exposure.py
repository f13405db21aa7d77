"""What the running web server hands out under ``/gradio_api/file=``: over real HTTP on 127.0.0.1.

Pages need media copies, thumbnails and export zips; the database, its WAL/SHM and the vector
index must never be downloadable (issue 9 item 1), however the path is spelled.
"""
from __future__ import annotations

import http.client
import os
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from registry.facade import ObjectIn
from tests.app.fakes import HistogramEmbedder, launch_test_app, make_context, write_scene

AUTH = ("alice", "s3cret-pw")


def _seed(root: Path):
    """A data folder with a media copy, a thumbnail, an export zip, and index files on disk."""
    from app.workflows import export as ex
    from app.workflows import review as rv

    data = root / "data"
    ctx = make_context(data)
    reg = ctx.registry
    scene = write_scene(root / "uploads" / "scene.jpg", seed=3)
    sid = reg.register_source(scene)
    vec = np.ones(HistogramEmbedder.dim, np.float32)
    oid = reg.register_objects(sid, [ObjectIn("red", (10, 10, 60, 60), confidence=0.9, embedding=vec)]).registered[0]
    thumb = rv.thumbnail(reg, reg.get_object(oid), data)
    zip_path = ex.export(reg, data, ex.ExportSpec(name="ds"), "YOLO detect")["zip"]
    # A real Chroma folder beside the exact index the test context uses.
    from registry.vectors import open_index

    with open_index("chroma", data, "fake-hist", HistogramEmbedder.dim) as index:
        index.add([oid], vec[None, :], [{"category": "red"}])
    segment = next(p for p in (data / "chroma").iterdir() if p.is_dir())
    (segment / "data_level0.bin").write_bytes(b"\0" * 64)  # whether or not Chroma flushed one yet
    (data / "chroma.corrupt-20260101T000000").mkdir()
    (data / "chroma.corrupt-20260101T000000" / "chroma.sqlite3").write_bytes(b"old index")
    outside = root / "outside.txt"
    outside.write_text("not for the web")
    link = data / "media" / "link.db"
    os.symlink(data / "registry.db", link)
    media = Path(reg.get_source(sid)["file_path"])
    return ctx, {
        "media": media, "thumb": Path(thumb), "zip": Path(zip_path),
        "db": data / "registry.db", "wal": data / "registry.db-wal", "shm": data / "registry.db-shm",
        "chroma_sqlite": data / "chroma" / "chroma.sqlite3", "hnsw": segment / "data_level0.bin",
        "corrupt_copy": data / "chroma.corrupt-20260101T000000" / "chroma.sqlite3",
        "outside": outside, "symlink": link, "data": data,
    }


def _get(url: str, path: str, cookie: str | None = None, route: str = "/gradio_api/file=") -> tuple[int, bytes]:
    """GET ``<route><path>`` with the path sent byte for byte (no client normalising)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", route + path, headers={"Cookie": cookie} if cookie else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _login(url: str, user: str, password: str) -> tuple[int, str]:
    import httpx

    r = httpx.post(url + "login", data={"username": user, "password": password}, timeout=30)
    cookie = "; ".join(f"{k}={v}" for k, v in r.cookies.items())
    return r.status_code, cookie


@pytest.fixture(scope="module", params=[None, AUTH], ids=["no-auth", "auth"])
def served(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    ctx, paths = _seed(root)
    server, url = launch_test_app(ctx, auth=request.param)
    cookie = None
    if request.param:
        code, cookie = _login(url, *request.param)
        assert code == 200 and cookie
    yield url, paths, cookie
    server.close()
    ctx.registry.close()


def _refused(paths: dict) -> dict[str, str]:
    data = str(paths["data"])
    return {
        "db": str(paths["db"]),
        "wal": str(paths["wal"]),
        "shm": str(paths["shm"]),
        "chroma.sqlite3": str(paths["chroma_sqlite"]),
        "hnsw data_level0.bin": str(paths["hnsw"]),
        "moved-aside index": str(paths["corrupt_copy"]),
        "media/../registry.db": f"{data}/media/../registry.db",
        "thumbs/../../data/registry.db": f"{data}/thumbs/../../data/registry.db",
        "url-encoded dots": f"{data}/media/%2e%2e/registry.db",
        "url-encoded slashes": f"{data}/media%2F..%2Fregistry.db",
        "double slash": f"/{data}//registry.db",
        "upper case": f"{data}/REGISTRY.DB",
        "symlink in media": str(paths["symlink"]),
        "outside the data folder": str(paths["outside"]),
        "/etc/passwd": "/etc/passwd",
    }


def test_seeded_files_exist(served):
    """The refusals below mean something only if the files are really there."""
    _, paths, _ = served
    for key in ("media", "thumb", "zip", "db", "wal", "shm", "chroma_sqlite", "hnsw", "corrupt_copy", "outside"):
        assert paths[key].is_file(), key
        assert paths[key].stat().st_size > 0, key


REFUSED = ["db", "wal", "shm", "chroma.sqlite3", "hnsw data_level0.bin", "moved-aside index",
           "media/../registry.db", "thumbs/../../data/registry.db", "url-encoded dots", "url-encoded slashes",
           "double slash", "upper case", "symlink in media", "outside the data folder", "/etc/passwd"]


@pytest.mark.parametrize("what", REFUSED)
def test_database_index_and_outside_files_are_refused(served, what):
    url, paths, cookie = served
    targets = _refused(paths)
    assert sorted(targets) == sorted(REFUSED)
    status, body = _get(url, targets[what], cookie)
    assert status in (403, 404), (what, status, body[:200])
    assert b"SQLite format" not in body


@pytest.mark.parametrize("route", ["/gradio_api/file/", "/file=", "/gradio_api/file=/", "/gradio_api/proxy="])
def test_other_file_routes_refuse_the_database_too(served, route):
    url, paths, cookie = served
    for target in (str(paths["db"]), str(paths["wal"]), str(paths["chroma_sqlite"])):
        status, body = _get(url, target, cookie, route=route)
        assert status != 200 and b"SQLite format" not in body, (route, target, status)
    if route == "/gradio_api/file/":  # the deprecated spelling of the same route serves media
        status, body = _get(url, str(paths["media"]), cookie, route=route)
        assert status == 200 and body == paths["media"].read_bytes()


@pytest.mark.parametrize("key", ["media", "thumb", "zip"])
def test_media_thumbnails_and_exports_are_served(served, key):
    url, paths, cookie = served
    status, body = _get(url, str(paths[key]), cookie)
    assert status == 200, (key, status, body[:200])
    assert body == paths[key].read_bytes()


def test_without_login_media_is_refused_only_when_auth_is_on(served):
    url, paths, cookie = served
    status, body = _get(url, str(paths["media"]))  # no cookie
    if cookie is None:  # auth off: the same request is served, so the refusal below means something
        assert status == 200 and body == paths["media"].read_bytes()
    else:
        assert status in (401, 403) and body != paths["media"].read_bytes()
