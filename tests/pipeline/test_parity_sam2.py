"""Parity: Sam2Segmenter vs transformers' own path (Sam2Processor -> Sam2Model -> post_process_masks).

Same tiny random SAM2 weights, same image, same box / point prompts. The only input difference
is by design: transformers' image processor resizes the uint8 pixels (rounding to whole grey
levels), ours resizes floats as SAM2's own ``SAM2Transforms`` does, so the model inputs are up to
one grey level apart (``pipeline.segment.sam2``). Masks must agree up to a thin band of boundary
pixels (IoU >= 0.99) and scores to 1e-4. The test image is a smooth scene with shapes (white
noise would make every pixel a boundary). Measured here: IoU 0.991-0.998, 47-94 of 34 500
pixels differ, all on an edge of one of the two masks.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from pipeline.segment.sam2 import Sam2Segmenter
from tests.pipeline.tiny_models_sam2_dino import TINY_SAM2_INPUT, build_tiny_sam2

H, W = 150, 230


@pytest.fixture(scope="module")
def sam2_dir(tmp_path_factory):
    return build_tiny_sam2(tmp_path_factory.mktemp("parity-sam2"))


@pytest.fixture(scope="module")
def seg(sam2_dir) -> Sam2Segmenter:
    return Sam2Segmenter.from_pretrained(sam2_dir, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def processor(sam2_dir):
    from transformers import Sam2ImageProcessor, Sam2Processor

    return Sam2Processor(image_processor=Sam2ImageProcessor.from_pretrained(sam2_dir), target_size=TINY_SAM2_INPUT)


def _scene(seed: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    image = np.stack([xx * 255 / W, yy * 255 / H, np.full((H, W), 90.0)], -1).astype(np.uint8).copy()
    cv2.circle(image, (60, 70), 35, (220, 40, 40), -1)
    cv2.rectangle(image, (120, 30), (200, 120), (30, 200, 60), -1)
    noise = np.random.default_rng(seed).normal(0, 6, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _reference(seg, processor, image, *, multimask, boxes=None, points=None, labels=None, masks=None):
    """transformers' documented path: processor -> model -> post_process_masks (+ IoU scores)."""
    kwargs = {}
    if boxes is not None:
        kwargs["input_boxes"] = [boxes]
    if points is not None:
        kwargs["input_points"], kwargs["input_labels"] = [[points]], [[labels]]
    inputs = processor(images=image, return_tensors="pt", **kwargs)
    model_inputs = {k: v for k, v in inputs.items() if k != "original_sizes"}
    if masks is not None:
        model_inputs["input_masks"] = torch.from_numpy(masks)[None, None]
    with torch.no_grad():
        out = seg.model(**model_inputs, multimask_output=multimask)
    full = processor.post_process_masks(out.pred_masks, inputs["original_sizes"])[0].numpy()  # (P, M, H, W)
    return full, out.iou_scores[0].numpy(), out.pred_masks[0].numpy()


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels next to the mask's edge (3 x 3 neighbourhood holds both values)."""
    kernel = np.ones((3, 3), np.uint8)
    m = mask.astype(np.uint8)
    return cv2.dilate(m, kernel) != cv2.erode(m, kernel)


def _assert_same_mask(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape == (H, W) and ours.dtype == bool
    assert 0 < theirs.sum() < H * W  # a real mask, not an empty or full one
    iou = (ours & theirs).sum() / (ours | theirs).sum()
    assert iou >= 0.99, f"IoU {iou:.4f}"
    diff = ours != theirs
    on_boundary = (diff & (_boundary(theirs) | _boundary(ours))).sum()
    # every differing pixel sits on an edge of one of the two masks: a shifted boundary, no blobs
    assert on_boundary == diff.sum(), f"{diff.sum() - on_boundary} of {diff.sum()} differing pixels off the edges"


@pytest.mark.parametrize("seed", [0, 1])
def test_box_prompts(seg, processor, seed):
    image = _scene(seed)
    boxes = [[25.0, 35.0, 95.0, 105.0], [120.0, 30.0, 200.0, 120.0], [0.0, 0.0, 229.0, 149.0]]
    theirs, scores, _ = _reference(seg, processor, image, multimask=False, boxes=boxes)
    seg.set_image(image)
    masks, ours_scores = seg.predict_boxes(np.array(boxes))
    for i in range(len(boxes)):
        _assert_same_mask(masks[i], theirs[i, 0])
    np.testing.assert_allclose(ours_scores, np.clip(scores[:, 0], 0, 1), atol=1e-4)


@pytest.mark.parametrize(
    "points, labels, multimask",
    [([[60.0, 70.0]], [1], True), ([[60.0, 70.0], [150.0, 80.0]], [1, 0], False), ([[160.0, 75.0]], [1], False)],
)
def test_point_prompts(seg, processor, points, labels, multimask):
    image = _scene(2)
    theirs, scores, _ = _reference(seg, processor, image, multimask=multimask, points=points, labels=labels)
    best = int(np.argmax(scores[0]))  # the usual "best of the candidates" choice
    seg.set_image(image)
    pred = seg.predict_points(np.array(points), np.array(labels), multimask=multimask)
    _assert_same_mask(pred.mask, theirs[0, best])
    assert pred.score == pytest.approx(float(np.clip(scores[0, best], 0, 1)), abs=1e-4)


def test_box_and_click_with_the_previous_mask(seg, processor):
    image = _scene(3)
    box, points, labels = [25.0, 35.0, 95.0, 105.0], [[60.0, 70.0]], [1]
    seg.set_image(image)
    first = seg.predict_points(np.array(points), np.array(labels), box=np.array(box), multimask=False)
    theirs_first, _, low_res = _reference(seg, processor, image, multimask=False, boxes=[box], points=points, labels=labels)
    _assert_same_mask(first.mask, theirs_first[0, 0])
    # the next click feeds each side its own previous low-res logits back
    points2, labels2 = [[60.0, 70.0], [90.0, 40.0]], [1, 0]
    refined = seg.predict_points(np.array(points2), np.array(labels2), box=np.array(box),
                                 mask_input=first.low_res_logits, multimask=False)
    theirs, scores, _ = _reference(seg, processor, image, multimask=False, boxes=[box], points=points2,
                                   labels=labels2, masks=low_res[0, 0])
    _assert_same_mask(refined.mask, theirs[0, 0])
    assert refined.score == pytest.approx(float(np.clip(scores[0, 0], 0, 1)), abs=1e-4)
