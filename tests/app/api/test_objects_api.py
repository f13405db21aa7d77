"""/api/v1/objects: filters + pagination, get, PATCH, delete, mask PNG, search by vector and by upload."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from tests.app.api.conftest import seed
from tests.app.fakes import write_scene


def test_list_filters_and_pages(ctx, client, tmp_path):
    s = seed(ctx.registry, tmp_path)
    seed(ctx.registry, tmp_path, seed_no=1, project="p2")
    r = client.get("/api/v1/objects", params={"category": "cat"})
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 2 and {o["category"] for o in body["items"]} == {"cat"}
    r = client.get("/api/v1/objects", params={"project": "p1", "min_confidence": 0.5})
    assert [o["object_id"] for o in r.json()["items"]] == [s["cat"]]
    page1 = client.get("/api/v1/objects", params={"limit": 3, "offset": 0, "order": "confidence_desc"}).json()
    page2 = client.get("/api/v1/objects", params={"limit": 3, "offset": 3, "order": "confidence_desc"}).json()
    assert page1["total"] == 4 and len(page1["items"]) == 3 and len(page2["items"]) == 1
    confs = [o["confidence"] for o in page1["items"] + page2["items"]]
    assert confs == sorted(confs, reverse=True)
    assert client.get("/api/v1/objects", params={"source_id": s["source_id"]}).json()["total"] == 2


def test_list_bad_filters_are_refused(ctx, client, tmp_path):
    seed(ctx.registry, tmp_path)
    assert client.get("/api/v1/objects", params={"status": "maybe"}).status_code == 422
    assert client.get("/api/v1/objects", params={"limit": 0}).status_code == 422
    r = client.get("/api/v1/objects", params={"created_after": "yesterday-ish"})
    assert r.status_code == 400 and r.json()["error"] == "bad request" and "yesterday-ish" in r.json()["detail"]


def test_get_and_unknown_id(ctx, client, tmp_path):
    s = seed(ctx.registry, tmp_path)
    r = client.get(f"/api/v1/objects/{s['cat']}")
    assert r.status_code == 200
    o = r.json()
    assert o["category"] == "cat" and o["bbox_xywh"] == [10.0, 20.0, 50.0, 60.0] and o["has_mask"]
    r = client.get("/api/v1/objects/obj_nope")
    assert r.status_code == 404 and "obj_nope" in r.json()["detail"]


def test_patch_validation_category_and_flags(ctx, client, tmp_path):
    s = seed(ctx.registry, tmp_path)
    r = client.patch(f"/api/v1/objects/{s['dog']}", json={"is_validated": True, "validated_by": "bob",
                                                          "category": "puppy", "is_occluded": True,
                                                          "quality_score": 0.7})
    assert r.status_code == 200, r.text
    o = r.json()
    assert (o["validation_status"], o["validated_by"], o["category"], o["is_occluded"], o["quality_score"]) == (
        "approved", "bob", "puppy", True, 0.7)
    assert ctx.registry.get_object(s["dog"])["category"] == "puppy"
    r = client.patch(f"/api/v1/objects/{s['dog']}", json={"status": "rejected"})
    assert r.json()["validation_status"] == "rejected"


def test_patch_bad_input_and_unknown_id(ctx, client, tmp_path):
    s = seed(ctx.registry, tmp_path)
    assert client.patch(f"/api/v1/objects/{s['cat']}", json={}).status_code == 400
    assert client.patch(f"/api/v1/objects/{s['cat']}", json={"status": "approved", "is_validated": False}).status_code == 400
    assert client.patch(f"/api/v1/objects/{s['cat']}", json={"quality_score": 3}).status_code == 422
    assert client.patch(f"/api/v1/objects/{s['cat']}", json={"colour": "red"}).status_code == 422
    r = client.patch(f"/api/v1/objects/{s['cat']}", json={"category": "  "})
    assert r.status_code == 400 and r.json()["detail"]
    assert client.patch("/api/v1/objects/obj_nope", json={"status": "approved"}).status_code == 404


def test_delete(ctx, client, tmp_path):
    s = seed(ctx.registry, tmp_path)
    r = client.delete(f"/api/v1/objects/{s['dog']}")
    assert r.status_code == 200 and r.json() == {"deleted": s["dog"]}
    assert ctx.registry.count_objects() == 1
    assert client.delete(f"/api/v1/objects/{s['dog']}").status_code == 404


def test_mask_png(ctx, client, tmp_path):
    s = seed(ctx.registry, tmp_path)
    r = client.get(f"/api/v1/objects/{s['cat']}/mask")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    m = np.asarray(Image.open(io.BytesIO(r.content)))
    assert m.shape == (240, 320) and m.dtype == np.uint8
    assert int((m == 255).sum()) == 50 * 60 and m[50, 30] == 255 and m[0, 0] == 0
    r = client.get(f"/api/v1/objects/{s['dog']}/mask")  # box only
    assert r.status_code == 404 and "no mask" in r.json()["detail"]
    assert client.get("/api/v1/objects/obj_nope/mask").status_code == 404


def test_search_embedding(ctx, client, tmp_path):
    s = seed(ctx.registry, tmp_path)
    r = client.post("/api/v1/objects/search/embedding", json={"embedding": s["cat_v"].tolist(), "top_k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 2 and body["items"][0]["object_id"] == s["cat"]
    assert abs(body["items"][0]["similarity"] - 1.0) < 1e-4 and body["items"][1]["similarity"] < 0.5
    r = client.post("/api/v1/objects/search/embedding",
                    json={"embedding": s["cat_v"].tolist(), "top_k": 5, "category": "dog"})
    assert [h["object_id"] for h in r.json()["items"]] == [s["dog"]]
    r = client.post("/api/v1/objects/search/embedding", json={"embedding": [1.0, 0.0], "top_k": 2})
    assert r.status_code == 400 and "48" in r.json()["detail"]
    assert client.post("/api/v1/objects/search/embedding", json={"embedding": s["cat_v"].tolist(),
                                                                 "top_k": 0}).status_code == 422


def _label_scene(ctx, tmp_path):
    """Registers the red/green/blue shapes of two scenes through the fake labeler (histogram embeddings)."""
    from app.workflows import autolabel_session as al

    paths = [str(write_scene(tmp_path / "up" / f"s{i}.jpg", seed=i)) for i in range(2)]
    images, bad = al.load_uploads(paths)
    assert not bad
    al.label_images(ctx.labeler(), images, ["red", "green", "blue"], confidence=0.0)
    al.save(ctx, images, None, project="shapes")
    assert ctx.registry.count_objects() == 6


def test_search_by_upload_verdict(ctx, client, tmp_path):
    _label_scene(ctx, tmp_path)
    from tests.app.fakes import make_scene

    crop = make_scene(5)[60:140, 170:260]  # around the green square of another scene
    buf = io.BytesIO()
    Image.fromarray(crop).save(buf, format="PNG")
    r = client.post("/api/v1/objects/search/image", files={"file": ("q.png", buf.getvalue(), "image/png")},
                    data={"top_k": "3"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["top_k"][0][0] == body["verdict"] == "green"
    assert len(body["top_k"]) == 3 and body["s1"] == body["top_k"][0][1]
    assert abs(body["margin"] - (body["top_k"][0][1] - body["top_k"][1][1])) < 1e-5
    assert body["is_unknown"] is False and body["objects"][0]["category"] == "green"
    # A threshold above every score makes the same query unknown.
    r = client.post("/api/v1/objects/search/image", files={"file": ("q.png", buf.getvalue(), "image/png")},
                    data={"tau1": "1.01"})
    assert r.json()["is_unknown"] is True and r.json()["verdict"] is None


def test_search_by_upload_refuses_non_images(ctx, client):
    r = client.post("/api/v1/objects/search/image", files={"file": ("notes.png", b"hello, not an image", "image/png")})
    assert r.status_code == 400 and "notes.png" in r.json()["detail"]
    r = client.post("/api/v1/objects/search/image", data={"top_k": "3"})
    assert r.status_code == 422


def test_register_batch_then_sync_and_search(ctx, client, tmp_path):
    import base64

    from tests.app.api.conftest import box_mask, unit

    path = write_scene(tmp_path / "up" / "b.png", seed=9)
    sid = ctx.registry.register_source(path)
    png = io.BytesIO()
    Image.fromarray(box_mask((240, 320), (100, 50, 150, 120)).astype(np.uint8) * 255).save(png, format="PNG")
    body = {"source_id": sid, "project_id": "batch", "objects": [
        {"category": "cat", "bbox": [10, 20, 40, 30], "confidence": 0.8, "embedding": unit(48, 3).tolist()},
        {"category": "dog", "bbox_xyxy": [100, 50, 150, 120], "mask_base64": base64.b64encode(png.getvalue()).decode()},
    ]}
    r = client.post("/api/v1/objects/batch", json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["count"] == 2 and out["duplicates"] == []
    cat = ctx.registry.get_object(out["object_ids"][0])
    dog = ctx.registry.get_object(out["object_ids"][1])
    assert cat["bbox_xywh"] == [10.0, 20.0, 40.0, 30.0] and cat["project_id"] == "batch" and cat["has_embedding"]
    assert dog["has_mask"] and dog["area"] == 50 * 70
    mask_rle = ctx.registry.get_mask_rle(dog["object_id"])  # the registry's RLE goes back in as is
    again = client.post("/api/v1/objects/batch", json={"source_id": sid, "objects": [
        {"category": "dog", "bbox_xyxy": [100, 50, 150, 120], "mask": mask_rle}]}).json()
    assert again["count"] == 0 and again["duplicates"] == [[0, dog["object_id"]]]
    r = client.post("/api/v1/sync/embeddings")
    assert r.status_code == 200 and r.json()["pending"] == 0
    hits = client.post("/api/v1/objects/search/embedding", json={"embedding": unit(48, 3).tolist(), "top_k": 1}).json()
    assert hits["items"][0]["object_id"] == cat["object_id"]


def test_register_batch_refuses_bad_objects(ctx, client, tmp_path):
    path = write_scene(tmp_path / "up" / "b.png", seed=9)
    sid = ctx.registry.register_source(path)
    bad = [
        {"category": "cat"},  # no box
        {"category": "cat", "bbox": [0, 0, 5, 5], "bbox_xyxy": [0, 0, 5, 5]},
        {"category": "cat", "bbox": [0, 0, 5000, 5]},  # outside the image
        {"category": "cat", "bbox": [0, 0, 5, 5], "embedding": [1.0, 2.0]},  # wrong dimension
        {"category": "cat", "bbox": [0, 0, 5, 5], "mask_base64": "not base64!"},
        {"category": "cat", "bbox": [0, 0, 5, 5], "mask": {"size": [2, 2], "counts": "zz"}},
    ]
    for obj in bad:
        r = client.post("/api/v1/objects/batch", json={"source_id": sid, "objects": [obj]})
        assert r.status_code == 400, (obj, r.text)
        assert r.json()["detail"]
    assert ctx.registry.count_objects() == 0
    r = client.post("/api/v1/objects/batch", json={"source_id": "src_nope", "objects": [{"category": "a", "bbox": [0, 0, 1, 1]}]})
    assert r.status_code == 404
    assert client.post("/api/v1/objects/batch", json={"source_id": sid, "objects": []}).status_code == 422
