"""AutoLabeler.label_many on the real tiny chain (scripted Florence-2, SAM2, DINOv2): a batch of
images gives what ``label`` gives image by image, with Florence's generation batched and SAM2's
encoder run once per image in batched forwards."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.models import openvino_runtime as ovr
from tests.chain_models import SCENE_CLASSES, build_chain_models, scene_image

SIZES = [(96, 128), (120, 90), (96, 128)]  # (H, W); the scripted boxes scale with each image


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    build_chain_models(root)
    return root


def _labeler(weights, runtime: str = "torch"):
    from pipeline.models.manager import ModelManager

    mgr = ModelManager(profile="cpu", weights_dir=weights, device="cpu", dtype="float32", download=False,
                       runtime=runtime)
    return mgr.labeler("sam2", embed=True)


def _images() -> list[np.ndarray]:
    return [scene_image(seed=10 + i, size=hw) for i, hw in enumerate(SIZES)]


def _assert_same(got, want) -> None:
    assert len(want) == 2 and got.labels == want.labels == ["cat", "dog"]
    np.testing.assert_allclose(got.xyxy, want.xyxy, rtol=1e-6)
    assert got.mask.shape == want.mask.shape and want.mask.any(axis=(1, 2)).all()
    assert (got.mask == want.mask).mean() >= 0.999  # a batched forward may move a logit by ~1e-6
    np.testing.assert_allclose(got.confidence, want.confidence, atol=1e-4)
    np.testing.assert_allclose(got.data["det_score"], want.data["det_score"], rtol=1e-4)
    np.testing.assert_allclose(got.data["embedding"], want.data["embedding"], atol=1e-4)


def test_label_many_equals_label_image_by_image(weights):
    labeler = _labeler(weights)
    seg = labeler.segmenter
    images = _images()
    seg.clear_cache()
    before = seg.encoder_calls
    batch = labeler.label_many(images, SCENE_CLASSES, confidence=0.0)
    assert seg.encoder_calls - before == 3  # each image encoded once, in one batched forward
    assert labeler.last_counts == {"detected": 6, "kept": 6}
    assert labeler.last_timings["total"] >= labeler.last_timings["detect"] > 0
    seg.clear_cache()
    for image, got in zip(images, batch, strict=True):
        _assert_same(got, labeler.label(image, SCENE_CLASSES, confidence=0.0))
    assert batch[0].xyxy[0, 2] != batch[1].xyxy[0, 2]  # boxes in each image's own pixels


def test_label_many_in_chunks_of_the_segmenter_cache(weights):
    labeler = _labeler(weights)
    seg = labeler.segmenter
    seg.cache_size = 2  # three images: a batch of two, then one
    seg.clear_cache()
    images = _images()
    batch = labeler.label_many(images, SCENE_CLASSES, confidence=0.0, image_keys=["a", "b", "c"])
    assert list(seg._cache) == ["b", "c"]  # the last chunk's keys, as given
    seg.clear_cache()
    for image, got in zip(images, batch, strict=True):
        _assert_same(got, labeler.label(image, SCENE_CLASSES, confidence=0.0))


def test_label_many_with_nothing_above_the_threshold_gives_empty_results(weights):
    labeler = _labeler(weights)
    seg = labeler.segmenter
    seg.clear_cache()
    before = seg.encoder_calls
    batch = labeler.label_many(_images()[:2], SCENE_CLASSES, confidence=0.99)
    assert [len(d) for d in batch] == [0, 0]
    assert seg.encoder_calls == before  # no box: SAM2 never ran
    assert batch[0].data["embedding"].shape == (0, labeler.embedder.dim)


def test_label_many_names_the_bad_image(weights):
    labeler = _labeler(weights)
    images = _images()
    images[2] = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match=r"^image 2: "):
        labeler.label_many(images, SCENE_CLASSES)
    with pytest.raises(ValueError, match="image_keys: expected one per image"):
        labeler.label_many(images[:2], SCENE_CLASSES, image_keys=["only-one"])
    assert labeler.label_many([], SCENE_CLASSES) == []


@pytest.mark.skipif(not ovr.openvino_installed(), reason="openvino is not installed")
def test_label_many_on_openvino_equals_label(weights, tmp_path, monkeypatch):
    """The OpenVINO encoders are compiled for one image: a batch goes through them one by one."""
    monkeypatch.setenv("AGL_OV_CACHE", str(tmp_path / "ov-cache"))
    labeler = _labeler(weights, runtime="openvino")
    assert labeler.detector.vision is not None and labeler.segmenter.vision is not None
    images = _images()
    labeler.segmenter.clear_cache()
    batch = labeler.label_many(images, SCENE_CLASSES, confidence=0.0)
    labeler.segmenter.clear_cache()
    for image, got in zip(images, batch, strict=True):
        _assert_same(got, labeler.label(image, SCENE_CLASSES, confidence=0.0))
