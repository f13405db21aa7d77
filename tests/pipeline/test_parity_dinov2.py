"""Parity: Dinov2Embedder's vector vs transformers' ``Dinov2Model`` ``pooler_output``.

Given the same 224 x 224 pixels (our masked / unmasked, letterboxed crop), normalised by
transformers' own image processor (``BitImageProcessor``, the class of the DINOv2 checkpoints,
with its resize and centre crop off) and run through ``Dinov2Model``, the L2-normalised
``pooler_output`` must equal our vector (cosine >= 0.9999). The crop geometry itself differs from
the hub processor by design (see ``pipeline.embed.dinov2``): a shorter-side-256 resize and a
centre crop would cut off the ends of elongated objects.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.embed.dinov2 import IMAGENET_MEAN, IMAGENET_STD, Dinov2Embedder
from tests.pipeline.tiny_models_sam2_dino import build_tiny_dinov2


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    return build_tiny_dinov2(tmp_path_factory.mktemp("parity-dino"))


def _scene():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 60, 50], [70, 20, 150, 100], [0, 0, 160, 120], [30, 60, 50, 118]], dtype=np.float32)
    masks = np.zeros((len(boxes), 120, 160), bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        masks[i, y0 + 3:y1 - 3, x0 + 3:x1 - 3] = True
    return image, boxes, masks


@pytest.mark.parametrize("masked", [False, True])
def test_vector_equals_the_models_pooler_output(dino_dir, masked):
    from transformers import BitImageProcessor, Dinov2Model

    image, boxes, masks = _scene()
    emb = Dinov2Embedder.from_pretrained(dino_dir, device="cpu", dtype=torch.float32)
    ours = emb.embed(image, boxes, masks if masked else None)

    crops = emb.preprocess(image, boxes, masks if masked else None)  # (N, 224, 224, 3) uint8
    processor = BitImageProcessor(do_resize=False, do_center_crop=False, do_rescale=True, rescale_factor=1 / 255,
                                  do_normalize=True, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD),
                                  do_convert_rgb=True)
    pixel_values = processor(images=list(crops), return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (len(boxes), 3, 224, 224)
    model = Dinov2Model.from_pretrained(dino_dir).eval()
    with torch.no_grad():
        pooled = model(pixel_values=pixel_values).pooler_output.numpy()
    reference = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    cosine = np.sum(ours * reference, axis=1)
    assert np.all(cosine >= 0.9999), cosine
    # and the vectors are not all alike (the comparison could not pass by accident)
    assert np.min(ours @ ours.T) < 0.999
