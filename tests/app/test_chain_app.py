"""The production wiring (``build_context`` -> ``AppContext.from_manager`` -> ``ModelManager``)
over the three imported tiny models, driven through the workflows the UI calls.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.chain_models import SCENE_CLASSES, build_chain_models, scene_boxes, write_scene
from tests.pipeline.tiny_models_sam2_dino import TINY_DINO_DIM


@pytest.fixture
def ctx(tmp_path, data_dir, monkeypatch):
    from app.cli.serve import build_context

    monkeypatch.delenv("AGL_WEIGHTS", raising=False)
    build_chain_models(data_dir / "models")  # where `models import --data DIR` puts them
    context = build_context(data_dir, profile="cpu", segmenter="sam2")
    yield context
    context.registry.close()


def test_build_context_offers_sam2_and_opens_the_registry_for_the_embedder(ctx):
    assert ctx.segmenter_names == ["sam2", "grabcut"]
    assert ctx.detection_model == "florence-2-base"
    assert ctx.registry.embedding_dim == TINY_DINO_DIM
    status = ctx.model_status()
    assert all(status[r]["weights_present"] for r in ("detector", "segmenter", "embedder"))


def test_autolabel_save_then_refine_click_reuses_the_sam2_embedding(ctx, tmp_path):
    from app.workflows import autolabel_session as al
    from app.workflows import refine as rf

    path = write_scene(tmp_path / "up" / "scene.png", seed=7)
    images, bad = al.load_uploads([str(path)])
    assert not bad
    labeler = ctx.labeler()
    seg = labeler.segmenter
    seg.clear_cache()
    before = seg.encoder_calls
    failed = al.label_images(labeler, images, SCENE_CLASSES, confidence=0.0)
    assert not failed and len(images[0].det) == 2
    assert seg.encoder_calls == before + 1
    saved = al.save(ctx, images, None, project="chain")
    assert saved["objects"] == 2
    obj = ctx.registry.list_objects(category="cat", limit=1)[0]
    np.testing.assert_allclose(obj["bbox_xywh"][:2], scene_boxes()["cat"][:2], atol=0.5)
    assert ctx.registry.get_embedding(obj["object_id"]).shape == (TINY_DINO_DIM,)

    s = rf.open_object(ctx.registry, obj["object_id"])
    x, y, w, h = obj["bbox_xywh"]
    rf.click(ctx, s, x + w / 2, y + h / 2, "positive", segmenter="sam2")
    assert seg.encoder_calls == before + 1  # the click used the embedding auto-label computed
    assert s.mask is not None and s.mask.any()
    rf.accept(ctx.registry, s)
    assert ctx.registry.get_object(obj["object_id"])["area"] == int(s.mask.sum())


def test_search_by_uploaded_crop_through_the_production_context(ctx, tmp_path):
    from app.workflows import autolabel_session as al
    from app.workflows import search as sw
    from pipeline.image_io import load_image

    path = write_scene(tmp_path / "up" / "scene.png", seed=8)
    images, _ = al.load_uploads([str(path)])
    al.label_images(ctx.labeler(), images, SCENE_CLASSES, confidence=0.0)
    al.save(ctx, images, None)
    ctx.registry.sync_outbox()
    image = load_image(path)
    objs = {o["category"]: o for o in ctx.registry.list_objects(limit=None)}
    assert sorted(objs) == ["cat", "dog"]
    for category, obj in objs.items():  # each object's own crop, uploaded, finds that object first
        x, y, w, h = obj["bbox_xywh"]
        crop = image[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))]
        hits = sw.search_by_image(ctx.registry, ctx.embedder(), crop, k=2, segment=sw.context_segment(ctx))
        assert [h["object_id"] for h in hits][:1] == [obj["object_id"]], (category, hits)
        assert hits[0]["similarity"] > hits[1]["similarity"]
