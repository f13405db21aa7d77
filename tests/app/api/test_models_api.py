"""The model gateway over the real tiny chain (scripted Florence-2, tiny SAM2 and DINOv2, imported
into ``<data>/models`` and wired by ``app.cli.serve.build_context``, as production does), and
the 503 a server without weights answers."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tests.app.api.conftest import mount
from tests.chain_models import SCENE_CLASSES, build_chain_models, scene_boxes, write_scene
from tests.pipeline.tiny_models_sam2_dino import TINY_DINO_DIM


@pytest.fixture
def chain(data_dir, monkeypatch):
    from app.cli.serve import build_context

    monkeypatch.delenv("AGL_WEIGHTS", raising=False)
    build_chain_models(data_dir / "models")
    context = build_context(data_dir, profile="cpu", segmenter="sam2")
    with mount(context) as c:
        yield context, c
    context.registry.close()


def _upload(path):
    return {"image": (path.name, path.read_bytes(), "image/png")}


def _decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def test_auto_label_registers_the_cat_and_the_dog(chain, tmp_path):
    ctx, c = chain
    path = write_scene(tmp_path / "up" / "scene.png", seed=7)
    r = c.post("/api/v1/auto_label", files=_upload(path),
               data={"classes": "cat, dog", "confidence": "0", "project": "api"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["registered"] and out["count"] == 2 and out["masks_count"] == 2
    assert out["image_size"] == {"width": 320, "height": 240}
    boxes = scene_boxes()
    for d in out["detections"]:
        np.testing.assert_allclose(d["bbox_xyxy"], boxes[d["label"]], atol=0.5)
        assert _decode(d["mask"]).shape == (240, 320) and _decode(d["mask"]).any()
    ids = out["registry"]["object_ids"]
    assert [d["object_id"] for d in out["detections"]] == ids
    obj = ctx.registry.get_object(ids[0])
    assert obj["project_id"] == "api" and obj["source_id"] == out["registry"]["source_id"]
    assert ctx.registry.get_embedding(ids[0]).shape == (TINY_DINO_DIM,)
    r = c.post("/api/v1/auto_label", files=_upload(path), data={"classes": "cat,dog", "confidence": "0",
                                                                "register": "false"})
    assert r.json()["registered"] is False and r.json()["registry"] is None
    assert ctx.registry.count_objects() == 2


def test_detect_and_detect_and_segment(chain, tmp_path):
    ctx, c = chain
    path = write_scene(tmp_path / "up" / "scene.png", seed=2)
    r = c.post("/api/v1/detect", files=_upload(path), data={"classes": ",".join(SCENE_CLASSES)})
    assert r.status_code == 200, r.text
    dets = {d["label"]: d for d in r.json()["detections"]}
    assert set(dets) == {"cat", "dog"} and all(d["mask"] is None for d in dets.values())
    np.testing.assert_allclose(dets["dog"]["bbox_xyxy"], scene_boxes()["dog"], atol=0.5)
    r = c.post("/api/v1/detect_and_segment", files=_upload(path), data={"classes": "cat,dog", "confidence": "0"})
    assert r.status_code == 200 and r.json()["count"] == 2
    assert all(_decode(d["mask"]).any() for d in r.json()["detections"])
    assert ctx.registry.count_objects() == 0  # nothing stored
    assert c.post("/api/v1/detect", files=_upload(path), data={"classes": " , "}).status_code == 400
    assert c.post("/api/v1/detect", files=_upload(path), data={"classes": "cat", "confidence": "2"}).status_code == 400
    assert c.post("/api/v1/detect", data={"classes": "cat"}).status_code == 422


def test_segment_with_boxes_or_points(chain, tmp_path):
    _, c = chain
    path = write_scene(tmp_path / "up" / "scene.png", seed=3)
    cat = scene_boxes()["cat"]
    r = c.post("/api/v1/segment", files=_upload(path), data={"boxes": json.dumps([cat]), "segmenter": "sam2"})
    assert r.status_code == 200, r.text
    (m,) = r.json()["masks"]
    mask = _decode(m["mask"])
    assert r.json()["segmenter"] == "sam2" and mask.shape == (240, 320) and m["area"] == int(mask.sum()) > 0
    cx, cy = (cat[0] + cat[2]) / 2, (cat[1] + cat[3]) / 2
    r = c.post("/api/v1/segment", files=_upload(path),
               data={"points": json.dumps([[cx, cy], [5, 5]]), "labels": "[1, 0]", "box": json.dumps(cat)})
    assert r.status_code == 200, r.text
    assert len(r.json()["masks"]) == 1 and _decode(r.json()["masks"][0]["mask"]).any()
    r = c.post("/api/v1/segment", files=_upload(path), data={"boxes": json.dumps([cat]), "segmenter": "grabcut"})
    assert r.status_code == 200 and r.json()["segmenter"] == "grabcut"
    for bad in ({}, {"boxes": "[[1, 2, 3]]"}, {"boxes": "not json"}, {"boxes": "[[0, 0, 999, 10]]"},
                {"points": "[[10, 10]]", "labels": "[1, 1]"}, {"boxes": json.dumps([cat]), "points": "[[1, 1]]"},
                {"boxes": json.dumps([cat]), "segmenter": "magic"}):
        r = c.post("/api/v1/segment", files=_upload(path), data=bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["detail"]


def test_search_by_upload_finds_the_labelled_class(chain, tmp_path):
    ctx, c = chain
    for i in range(2):
        p = write_scene(tmp_path / "up" / f"s{i}.png", seed=10 + i)
        assert c.post("/api/v1/auto_label", files=_upload(p), data={"classes": "cat,dog", "confidence": "0"}).json()["count"] == 2
    q = write_scene(tmp_path / "up" / "q.png", seed=10)
    r = c.post("/api/v1/objects/search/image", files={"file": ("q.png", q.read_bytes(), "image/png")},
               data={"top_k": "2"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {cat for cat, _ in body["top_k"]} == {"cat", "dog"}
    assert 0.0 < body["s1"] <= 1.0 + 1e-5 and body["objects"]


def test_models_status_and_unload(chain, tmp_path):
    ctx, c = chain
    st = c.get("/api/v1/models/status").json()
    assert st["segmenters"] == ["sam2", "grabcut"]
    assert all(st["models"][r]["weights_present"] for r in ("detector", "segmenter", "embedder"))
    path = write_scene(tmp_path / "up" / "scene.png", seed=1)
    c.post("/api/v1/detect", files=_upload(path), data={"classes": "cat"})
    assert c.get("/api/v1/models/status").json()["models"]["detector"]["loaded"] is True
    r = c.post("/api/v1/models/unload", json={"role": "detector"})
    assert r.status_code == 200 and r.json()["unloaded"] == ["detector"]
    assert r.json()["status"]["detector"]["loaded"] is False
    r = c.post("/api/v1/models/unload", json={"role": "gpu-thing"})
    assert r.status_code == 400 and "gpu-thing" in r.json()["detail"]


def test_without_weights_the_gateway_answers_503_with_the_command(data_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants as hf_constants

    from app.cli.serve import build_context

    cache = tmp_path / "empty-hf-cache"
    cache.mkdir()
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))  # a machine with cached weights too
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("AGL_WEIGHTS", raising=False)
    ctx = build_context(data_dir, profile="cpu", segmenter="sam2")
    try:
        with mount(ctx) as c:
            path = write_scene(tmp_path / "up" / "scene.png", seed=1)
            for route in ("/api/v1/auto_label", "/api/v1/detect", "/api/v1/detect_and_segment"):
                r = c.post(route, files=_upload(path), data={"classes": "cat"})
                assert r.status_code == 503, (route, r.text)
                assert r.json()["error"] == "weights missing"
                assert "python launch.py models download" in r.json()["detail"]
                assert "models import DIR" in r.json()["detail"]
            r = c.post("/api/v1/objects/search/image", files={"file": ("q.png", path.read_bytes(), "image/png")})
            assert r.status_code == 503 and "models download" in r.json()["detail"]
            assert c.get("/api/v1/models/status").json()["models"]["detector"]["weights_present"] is False
            assert ctx.registry.count_sources() == 0
    finally:
        ctx.registry.close()


def test_unload_without_a_model_manager_is_501(client):
    """A context wired with test doubles has no ModelManager: nothing to unload, said so."""
    r = client.post("/api/v1/models/unload", json={"role": "detector"})
    assert r.status_code == 501 and "ModelManager" in r.json()["detail"]
