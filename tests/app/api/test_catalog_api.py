"""/api/v1 sources, categories, tracks, stats and health."""
from __future__ import annotations

import re

from tests.app.api.conftest import seed
from tests.app.fakes import write_scene


def test_health(ctx, client, tmp_path):
    seed(ctx.registry, tmp_path)
    r = client.get("/api/v1/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "api": "v1", "sources": 1, "objects": 2, "auth": False}


def test_register_list_and_get_sources(ctx, client, tmp_path):
    path = write_scene(tmp_path / "up" / "street.png", seed=3)
    r = client.post("/api/v1/sources", files={"file": ("street.png", path.read_bytes(), "image/png")},
                    data={"project": "city"})
    assert r.status_code == 201, r.text
    src = r.json()
    assert (src["file_name"], src["width"], src["height"], src["project_id"]) == ("street.png", 320, 240, "city")
    again = client.post("/api/v1/sources", files={"file": ("copy.png", path.read_bytes(), "image/png")}).json()
    assert again["source_id"] == src["source_id"]  # same bytes, same id
    # the file's place inside the data folder, never the server's absolute layout
    assert src["file_path"].startswith("media/") and str(ctx.data_dir) not in r.text
    assert (ctx.data_dir / src["file_path"]).is_file()
    page = client.get("/api/v1/sources", params={"limit": 10}).json()
    assert page["total"] == 1 and page["items"][0]["source_id"] == src["source_id"]
    assert page["items"][0]["file_path"] == src["file_path"]
    assert client.get(f"/api/v1/sources/{src['source_id']}").json()["content_hash"] == src["content_hash"]
    assert client.get("/api/v1/sources/src_nope").status_code == 404


def test_register_source_refuses_bad_files(ctx, client, tmp_path):
    r = client.post("/api/v1/sources", files={"file": ("photo.jpg", b"\xff\xd8\xff not really", "image/jpeg")})
    assert r.status_code == 400 and "photo.jpg" in r.json()["detail"]
    path = write_scene(tmp_path / "up" / "cut.png", seed=1)
    r = client.post("/api/v1/sources", files={"file": ("cut.png", path.read_bytes()[:400], "image/png")})
    assert r.status_code == 400 and "cut.png" in r.json()["detail"]
    r = client.post("/api/v1/sources", files={"file": ("empty.png", b"", "image/png")})
    assert r.status_code == 400
    assert ctx.registry.count_sources() == 0


def test_categories_create_get_patch_merge(ctx, client, tmp_path):
    s = seed(ctx.registry, tmp_path)
    r = client.post("/api/v1/categories", json={"name": "bird", "synonyms": ["sparrow"], "color": "#112233"})
    assert r.status_code == 201 and r.json()["synonyms"] == ["sparrow"] and r.json()["color"] == "#112233"
    assert client.post("/api/v1/categories", json={"name": "Bird"}).status_code == 409
    assert client.post("/api/v1/categories", json={"name": "x", "color": "red"}).status_code == 400
    assert client.get("/api/v1/categories/sparrow").json()["name"] == "bird"
    names = {c["name"]: c["object_count"] for c in client.get("/api/v1/categories").json()}
    assert names == {"bird": 0, "cat": 1, "dog": 1}
    r = client.patch("/api/v1/categories/dog", json={"name": "hound", "add_synonyms": ["doggo"]})
    assert r.status_code == 200 and r.json()["name"] == "hound" and "doggo" in r.json()["synonyms"]
    assert ctx.registry.get_object(s["dog"])["category"] == "hound"
    r = client.post("/api/v1/categories/hound/merge", json={"into": "cat"})
    assert r.status_code == 200 and "hound" in r.json()["synonyms"] and r.json()["object_count"] == 2
    assert client.get("/api/v1/categories/nope").status_code == 404
    assert client.patch("/api/v1/categories/nope", json={"name": "x"}).status_code == 404
    assert client.post("/api/v1/categories/cat/merge", json={"into": "nope"}).status_code == 404
    assert client.patch("/api/v1/categories/cat", json={}).status_code == 400


def test_tracks(ctx, client, tmp_path):
    s = seed(ctx.registry, tmp_path)
    r = client.post("/api/v1/tracks", json={"object_ids": [s["cat"], s["dog"]], "metadata": {"note": "pair"}})
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["source_id"] == s["source_id"] and [o["object_id"] for o in t["objects"]] == [s["cat"], s["dog"]]
    assert t["metadata"] == {"note": "pair"} and t["category"] is None
    assert client.get(f"/api/v1/tracks/{t['track_id']}").json()["object_count"] == 2
    assert client.get("/api/v1/tracks/trk_nope").status_code == 404
    r = client.post("/api/v1/tracks", json={"object_ids": [s["cat"], "obj_nope"]})
    assert r.status_code == 404 and "obj_nope" in r.json()["detail"]
    assert client.post("/api/v1/tracks", json={"object_ids": []}).status_code == 422
    other = seed(ctx.registry, tmp_path, seed_no=4)
    r = client.post("/api/v1/tracks", json={"object_ids": [s["cat"], other["cat"]]})
    assert r.status_code == 400 and "one source" in r.json()["detail"]


def test_stats(ctx, client, tmp_path):
    s = seed(ctx.registry, tmp_path)
    ctx.registry.update_object(s["cat"], status="approved", validated_by="bob")
    r = client.get("/api/v1/stats")
    assert r.status_code == 200
    st = r.json()
    assert (st["sources"], st["objects"], st["approved"], st["pending"]) == (1, 2, 1, 1)
    assert {c["category"]: c["approved"] for c in st["categories"]} == {"cat": 1, "dog": 0}
    assert sum(b["count"] for b in st["histogram"]) == 2
    assert client.get("/api/v1/stats", params={"bins": 0}).status_code == 422


def test_docs_list_every_route(ctx, client):
    """docs/api.md names every route the API serves (and nothing it does not)."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "api.md").read_text(encoding="utf-8")
    documented = {(m, "/v1" + re.sub(r"\{[^}]+\}", "{}", p.split("?")[0]))
                  for m, p in re.findall(r"^\| (GET|POST|PATCH|DELETE|PUT) \| `([^`]+)`", doc, re.M)}
    served = {(method.upper(), re.sub(r"\{[^}]+\}", "{}", path))
              for path, ops in client.get("/api/openapi.json").json()["paths"].items() for method in ops}
    assert served and documented == served


def test_swagger_docs_page_and_its_assets_are_served_locally(client):
    """/api/docs works on an air-gapped machine: no CDN address, the script comes from the app."""
    page = client.get("/api/docs")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    assert "cdn." not in page.text and "jsdelivr" not in page.text
    script = re.search(r'src="([^"]*swagger-ui-bundle\.js)"', page.text).group(1)
    got = client.get(script)
    assert got.status_code == 200 and len(got.content) > 100_000
