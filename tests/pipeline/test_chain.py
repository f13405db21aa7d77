"""The real chain on real (tiny) models: Florence-2 -> SAM2 -> DINOv2 -> registry -> search.

Florence-2 is the scripted tiny checkpoint (its weights emit a cat and a dog at known bins),
loaded through ``ModelManager`` from a weights folder exactly as a downloaded model would be;
SAM2 and DINOv2 are tiny random models. Nothing here is a test double.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.chain_models import (
    SCENE_CLASSES,
    SCENE_SIZE,
    build_chain_models,
    scene_boxes,
    scene_image,
)
from tests.pipeline.tiny_models_sam2_dino import TINY_DINO_DIM


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    from pipeline.models.manager import ModelManager

    weights = tmp_path_factory.mktemp("weights")
    build_chain_models(weights)
    return ModelManager(profile="cpu", weights_dir=weights, device="cpu", dtype="float32", download=False)


def test_autolabeler_on_the_three_tiny_models_finds_segments_and_embeds(manager):
    labeler = manager.labeler("sam2", embed=True)
    seg = labeler.segmenter
    seg.clear_cache()
    calls_before = seg.encoder_calls
    image = scene_image(seed=1)
    result = labeler.label(image, SCENE_CLASSES, confidence=0.0)

    assert len(result) == 2
    assert [result.class_names[c] for c in result.class_id] == ["cat", "dog"]
    expected = scene_boxes()
    for i, name in enumerate(["cat", "dog"]):
        np.testing.assert_allclose(result.xyxy[i], expected[name], atol=0.5)
    # Florence-2's derived score: every scripted token has probability 0.9 under the raw logits
    loc = result.data["loc_score"]
    assert np.all((loc > 0.89) & (loc < 0.91)), loc
    assert np.all((result.data["det_score"] > 0.5) & (result.data["det_score"] < 0.9))
    np.testing.assert_allclose(result.confidence, np.sqrt(result.data["det_score"] * result.data["mask_iou"]),
                               rtol=1e-5)
    # SAM2 encoded this image exactly once, and every mask has pixels
    assert seg.encoder_calls - calls_before == 1
    assert result.mask.shape == (2, *SCENE_SIZE) and result.mask.dtype == bool
    assert np.all(result.mask.reshape(2, -1).sum(axis=1) > 0)
    # DINOv2: one unit vector per object, the same as embedding the masked crops directly
    emb = result.data["embedding"]
    assert emb.shape == (2, TINY_DINO_DIM)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    direct = labeler.embedder.embed(image, result.xyxy, result.mask)
    np.testing.assert_allclose(emb, direct, atol=1e-5)
    assert not np.allclose(emb[0], emb[1])
    assert labeler.last_counts == {"detected": 2, "kept": 2}


def test_labeling_the_same_file_again_reuses_the_sam2_embedding(manager, tmp_path):
    from tests.chain_models import write_scene

    labeler = manager.labeler("sam2", embed=True)
    seg = labeler.segmenter
    path = write_scene(tmp_path / "scene.png", seed=2)
    labeler.label(path, SCENE_CLASSES, confidence=0.0)
    calls = seg.encoder_calls
    labeler.label(path, SCENE_CLASSES, confidence=0.0)
    assert seg.encoder_calls == calls  # keyed by the file's sha256 both times


def test_chain_into_registry_stores_syncs_and_finds_each_object(manager, data_dir):
    from app.workflows.labeling import label_paths
    from app.workflows.search import search_by_vector
    from registry.facade import Registry
    from tests.chain_models import write_scene

    labeler = manager.labeler("sam2", embed=True)
    images = [write_scene(data_dir.parent / "in" / f"scene_{i}.png", seed=10 + i) for i in range(2)]
    with Registry(data_dir, embedding_dim=labeler.embedder.dim, embedding_version=labeler.embedder.version) as reg:
        report = label_paths(reg, labeler, [str(p) for p in images], SCENE_CLASSES, confidence=0.0, progress=False)
        assert not report.failed
        reg.sync_outbox()
        objs = reg.list_objects(limit=100)
        assert len(objs) == 4
        assert sorted(o["category"] for o in objs) == ["cat", "cat", "dog", "dog"]
        assert all(o["detection_model"] == "florence-2-base" for o in objs)
        assert all(o["area"] > 0 and reg.get_mask(o["object_id"]).any() for o in objs)
        assert reg.doctor()["ok"]
        for o in objs:
            vec = reg.get_embedding(o["object_id"])
            assert vec is not None and vec.shape == (TINY_DINO_DIM,)
            hits = search_by_vector(reg, vec, k=2)
            assert hits[0]["object_id"] == o["object_id"]
            assert hits[0]["similarity"] > 0.999
