"""bfloat16 (the CPU default where the CPU has native bf16) against float32 on tiny models.

The same inputs run through both precisions; tolerances, with what these tiny random models
measured (torch 2.14, AVX-512 with avx512_bf16):

- Florence-2 (scripted to emit the scene's boxes): the same boxes (IoU >= 0.99 after one-to-one
  matching; measured 1.0), same classes, confidences within 0.01 (measured < 0.001).
- SAM2: box masks IoU >= 0.9 (measured 0.978, 0.987) and a refinement click's mask IoU >= 0.9
  (0.990); click low-res logits' mean |diff| <= 0.1 x their float32 std (0.016).
- DINOv2: cosine >= 0.99 between the two precisions' vectors of the same crop, and a bf16 query
  finds its own object's float32 vector first among the scene's objects: vectors of both
  precisions stay comparable in one index.
- The chain (``ModelManager`` with no dtype given): picks bfloat16 on a bf16 CPU, and labels the
  scene with the same objects as float32.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from pipeline.models import device as device_mod
from tests.chain_models import (
    SCENE_CLASSES,
    box_iou,
    mask_iou,
    scene_boxes,
    scene_image,
)

BOX_IOU = 0.99
MASK_IOU = 0.9
COSINE = 0.99


def _scene_xyxy() -> np.ndarray:
    return np.array([scene_boxes()[c] for c in SCENE_CLASSES], np.float32)


# ---------------------------------------------------------------------------- the default
def test_cpu_flags_pick_bf16_only_with_native_units(monkeypatch):
    amd = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
    old = "processor\t: 0\nflags\t\t: fpu avx2 avx512f\n"
    assert "avx512_bf16" in device_mod.cpu_flags(amd)
    assert device_mod.default_cpu_dtype(device_mod.cpu_flags(amd)) == torch.bfloat16
    assert device_mod.default_cpu_dtype(frozenset({"amx_bf16"})) == torch.bfloat16
    assert device_mod.default_cpu_dtype(device_mod.cpu_flags(old)) == torch.float32
    assert device_mod.default_cpu_dtype(device_mod.cpu_flags("")) == torch.float32
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda flags=None: True)
    monkeypatch.delenv("AGL_CPU_DTYPE", raising=False)
    assert device_mod.pick_device_dtype("cpu")[1] == torch.bfloat16
    monkeypatch.setenv("AGL_CPU_DTYPE", "float32")  # the explicit override wins
    assert device_mod.pick_device_dtype("cpu")[1] == torch.float32
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda flags=None: False)
    monkeypatch.setenv("AGL_CPU_DTYPE", "bfloat16")
    assert device_mod.pick_device_dtype("cpu")[1] == torch.bfloat16
    monkeypatch.delenv("AGL_CPU_DTYPE")
    assert device_mod.pick_device_dtype("cpu")[1] == torch.float32


# ---------------------------------------------------------------------------- per model
def test_florence_bf16_boxes_match_float32(chain):
    from pipeline.detect.florence import FlorenceDetector

    image = scene_image()
    out = {}
    for dt in (torch.float32, torch.bfloat16):
        det = FlorenceDetector.from_pretrained(chain["detector"], device="cpu", dtype=dt)
        assert det.dtype == dt
        out[dt] = det.detect(image, SCENE_CLASSES)
    ref, half = out[torch.float32], out[torch.bfloat16]
    assert len(ref) == len(SCENE_CLASSES) == len(half)
    iou = box_iou(ref.xyxy, half.xyxy)
    rows, cols = linear_sum_assignment(-iou)
    assert np.all(iou[rows, cols] >= BOX_IOU), iou
    assert list(ref.class_id[rows]) == list(half.class_id[cols])
    np.testing.assert_allclose(ref.confidence[rows], half.confidence[cols], atol=0.01)


def test_sam2_bf16_masks_and_logits_match_float32(chain):
    from pipeline.segment.sam2 import Sam2Segmenter

    image, boxes = scene_image(), _scene_xyxy()
    pts = np.array([(boxes[0, :2] + boxes[0, 2:]) / 2, boxes[0, :2] + 5, boxes[1, :2] + 5], np.float32)
    out = {}
    for dt in (torch.float32, torch.bfloat16):
        seg = Sam2Segmenter.from_pretrained(chain["segmenter"], device="cpu", dtype=dt)
        seg.set_image(image)
        masks, _ = seg.predict_boxes(boxes)
        first = seg.predict_points(pts[:1], np.array([1]))
        click = seg.predict_points(pts, np.array([1, 1, 0]), mask_input=first.low_res_logits, multimask=False)
        out[dt] = (masks, click)
    (m32, c32), (m16, c16) = out[torch.float32], out[torch.bfloat16]
    assert m32.any(axis=(1, 2)).all() and c32.mask.any()  # real masks, not empty agreement
    for a, b in zip(m32, m16, strict=True):
        assert mask_iou(a, b) >= MASK_IOU
    assert mask_iou(c32.mask, c16.mask) >= MASK_IOU
    spread = float(c32.low_res_logits.std())
    assert spread > 0
    assert float(np.abs(c32.low_res_logits - c16.low_res_logits).mean()) <= 0.1 * spread


def test_dinov2_bf16_vectors_are_searchable_against_float32(chain):
    from pipeline.embed.dinov2 import Dinov2Embedder

    image = scene_image()
    boxes = np.concatenate([_scene_xyxy(), [[10, 10, 60, 50], [200, 150, 300, 230]]]).astype(np.float32)
    masks = np.zeros((len(boxes), *image.shape[:2]), bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        masks[i, y0:y1, x0:x1] = True
    v32 = Dinov2Embedder.from_pretrained(chain["embedder"], device="cpu", dtype=torch.float32).embed(image, boxes, masks)
    e16 = Dinov2Embedder.from_pretrained(chain["embedder"], device="cpu", dtype=torch.bfloat16)
    v16 = e16.embed(image, boxes, masks)
    assert v16.dtype == np.float32 and e16.version == "dinov2-32d"  # same version label: one index
    cos = np.sum(v32 * v16, axis=1)
    assert np.all(cos >= COSINE), cos
    # each bf16 query's nearest float32 vector (cosine = dot of unit vectors) is its own object
    assert list(np.argmax(v16 @ v32.T, axis=1)) == list(range(len(boxes)))


def test_default_chain_runs_bf16_and_labels_like_float32(chain, monkeypatch):
    from pipeline.models.manager import ModelManager

    root = chain["detector"].parent
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda flags=None: True)
    monkeypatch.delenv("AGL_CPU_DTYPE", raising=False)
    default = ModelManager("cpu", weights_dir=root, device="cpu", download=False)
    assert default.device_dtype()[1] == torch.bfloat16
    reference = ModelManager("cpu", weights_dir=root, device="cpu", dtype="float32", download=False)
    image = scene_image()
    got = default.labeler().label(image, SCENE_CLASSES, confidence=0.0)
    ref = reference.labeler().label(image, SCENE_CLASSES, confidence=0.0)
    assert default.segmenter().dtype == torch.bfloat16 and default.embedder().dtype == torch.bfloat16
    assert len(ref) == len(SCENE_CLASSES) == len(got)
    iou = box_iou(ref.xyxy, got.xyxy)
    rows, cols = linear_sum_assignment(-iou)
    assert np.all(iou[rows, cols] >= BOX_IOU)
    for r, c in zip(rows, cols, strict=True):
        assert mask_iou(ref.mask[r], got.mask[c]) >= MASK_IOU
        assert float(ref.data["embedding"][r] @ got.data["embedding"][c]) >= COSINE
