"""Dinov2Embedder on a tiny random DINOv2 saved with save_pretrained and loaded back from disk."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.embed.dinov2 import Dinov2Embedder, letterbox
from pipeline.mask_ops import NEUTRAL_FILL
from tests.pipeline.tiny_models_sam2_dino import TINY_DINO_DIM, build_tiny_dinov2


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    return build_tiny_dinov2(tmp_path_factory.mktemp("tiny-dino"))


@pytest.fixture(scope="module")
def emb(dino_dir) -> Dinov2Embedder:
    return Dinov2Embedder.from_pretrained(dino_dir, device="cpu", dtype=torch.float32, batch_size=4)


def _scene():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 60, 50], [70, 20, 150, 100], [0, 0, 160, 120],
                      [30, 60, 50, 110], [100, 5, 120, 25]], dtype=np.float32)
    masks = np.zeros((len(boxes), 120, 160), bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        masks[i, y0 + 2:y1 - 2, x0 + 2:x1 - 2] = True
    return image, boxes, masks


def test_shapes_dtype_unit_norm_and_attributes(emb):
    image, boxes, masks = _scene()
    vectors = emb.embed(image, boxes, masks)
    assert vectors.shape == (5, TINY_DINO_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert emb.dim == TINY_DINO_DIM
    assert emb.version == f"dinov2-{TINY_DINO_DIM}d"
    assert emb.embed(image, np.zeros((0, 4))).shape == (0, TINY_DINO_DIM)


def test_batching_does_not_change_results(dino_dir):
    image, boxes, masks = _scene()
    one = Dinov2Embedder.from_pretrained(dino_dir, device="cpu", dtype=torch.float32, batch_size=1)
    many = Dinov2Embedder.from_pretrained(dino_dir, device="cpu", dtype=torch.float32, batch_size=16)
    np.testing.assert_allclose(one.embed(image, boxes, masks), many.embed(image, boxes, masks), atol=1e-5)


def test_background_is_neutralised(emb):
    """Pixels outside the mask do not matter; pixels inside do."""
    image, boxes, masks = _scene()
    base = emb.embed(image, boxes[:1], masks[:1])
    changed_outside = image.copy()
    changed_outside[~masks[0]] = 255 - changed_outside[~masks[0]]
    np.testing.assert_allclose(emb.embed(changed_outside, boxes[:1], masks[:1]), base, atol=1e-6)
    changed_inside = image.copy()
    changed_inside[masks[0]] = 255 - changed_inside[masks[0]]
    assert not np.allclose(emb.embed(changed_inside, boxes[:1], masks[:1]), base, atol=1e-3)
    # without a mask the whole padded box crop counts
    assert not np.allclose(emb.embed(changed_outside, boxes[:1]), emb.embed(image, boxes[:1]), atol=1e-3)


def test_crops_are_padded_masked_and_letterboxed(emb):
    image, boxes, masks = _scene()
    crops = emb.preprocess(image, boxes, masks)
    assert crops.shape == (5, 224, 224, 3) and crops.dtype == np.uint8
    # box 4 is 20 x 20 at (100, 5): padded by 10 % -> 24 x 24, so the crop holds background
    # (neutral) around the masked object; its corners are the neutral colour
    np.testing.assert_array_equal(crops[4, 0, 0], NEUTRAL_FILL)
    # a wide crop is letterboxed top and bottom, not stretched
    wide = letterbox(np.full((10, 40, 3), 7, np.uint8), 224)
    np.testing.assert_array_equal(wide[0, 112], NEUTRAL_FILL)
    np.testing.assert_array_equal(wide[112, 112], (7, 7, 7))


def test_cls_plus_mean_pooling_doubles_dim(emb, dino_dir):
    from transformers import BitImageProcessor, Dinov2Model

    from pipeline.embed.dinov2 import IMAGENET_MEAN, IMAGENET_STD

    image, boxes, masks = _scene()
    both = Dinov2Embedder(emb.model, pooling="cls+mean")
    vectors = both.embed(image, boxes, masks)
    assert both.dim == 2 * TINY_DINO_DIM and vectors.shape == (5, 2 * TINY_DINO_DIM)
    assert both.version.endswith("+mean")
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # reference: transformers' own model on the same crops, CLS token then the patch tokens' mean
    crops = both.preprocess(image, boxes, masks)
    processor = BitImageProcessor(do_resize=False, do_center_crop=False, do_rescale=True, rescale_factor=1 / 255,
                                  do_normalize=True, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))
    with torch.no_grad():
        hidden = Dinov2Model.from_pretrained(dino_dir).eval()(
            pixel_values=processor(images=list(crops), return_tensors="pt")["pixel_values"]).last_hidden_state.numpy()
    reference = np.concatenate([hidden[:, 0], hidden[:, 1:].mean(axis=1)], axis=1)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, reference, atol=1e-4)
    assert not np.allclose(vectors[:, TINY_DINO_DIM:], vectors[:, :TINY_DINO_DIM], atol=1e-2)  # two different halves


def test_bfloat16_returns_float32_unit_vectors(dino_dir):
    image, boxes, masks = _scene()
    half = Dinov2Embedder.from_pretrained(dino_dir, device="cpu", dtype=torch.bfloat16)
    vectors = half.embed(image, boxes, masks)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    full = Dinov2Embedder.from_pretrained(dino_dir, device="cpu", dtype=torch.float32).embed(image, boxes, masks)
    assert np.all(np.sum(vectors * full, axis=1) > 0.999)  # the same vectors up to bfloat16 rounding


def test_bad_inputs_raise_value_error(emb):
    image, boxes, masks = _scene()
    with pytest.raises(ValueError, match="masks"):
        emb.embed(image, boxes, masks[:2])
    with pytest.raises(ValueError, match="masks"):
        emb.embed(image, boxes, masks.astype(np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        emb.embed(image.astype(np.float32), boxes)
    with pytest.raises(ValueError, match="pooling"):
        Dinov2Embedder(emb.model, pooling="max")
    with pytest.raises(ValueError, match="patch size"):
        Dinov2Embedder(emb.model, input_size=100)
