"""Mask geometry: checked against pycocotools (the reference consumers use) and brute force."""
from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as cocomask

from pipeline.mask_ops import (
    NEUTRAL_FILL,
    box_iou_matrix,
    clip_boxes,
    dedupe_boxes,
    dedupe_masks,
    expand_box,
    fill_small_holes,
    mask_iou,
    mask_iou_matrix,
    mask_to_xyxy,
    masked_crop,
    remove_small_components,
    resize_mask,
)


def _random_masks(n: int, h: int = 37, w: int = 53, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        y0, x0 = rng.integers(0, h - 5), rng.integers(0, w - 5)
        y1, x1 = rng.integers(y0 + 1, h + 1), rng.integers(x0 + 1, w + 1)
        masks[i, y0:y1, x0:x1] = True
        masks[i] &= rng.random((h, w)) < 0.8  # ragged, so boxes and masks differ
    return masks


def test_mask_to_xyxy_matches_pycocotools_tobbox():
    masks = _random_masks(12)
    boxes = mask_to_xyxy(masks)
    assert boxes.dtype == np.float32 and boxes.shape == (12, 4)
    rles = cocomask.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    xywh = cocomask.toBbox(rles)
    np.testing.assert_allclose(boxes[:, :2], xywh[:, :2])
    np.testing.assert_allclose(boxes[:, 2:] - boxes[:, :2], xywh[:, 2:])


def test_mask_to_xyxy_single_and_empty():
    m = np.zeros((10, 20), bool)
    assert mask_to_xyxy(m).tolist() == [[0, 0, 0, 0]]
    m[2, 3] = True
    assert mask_to_xyxy(m).tolist() == [[3, 2, 4, 3]]  # one pixel = a 1 x 1 box
    m[9, 19] = True
    assert mask_to_xyxy(m).tolist() == [[3, 2, 20, 10]]
    assert mask_to_xyxy(np.zeros((0, 5, 5), bool)).shape == (0, 4)


def test_mask_iou_matrix_matches_pycocotools_and_brute_force():
    a, b = _random_masks(7, seed=1), _random_masks(5, seed=2)
    got = mask_iou_matrix(a, b)
    assert got.shape == (7, 5) and got.dtype == np.float32
    brute = np.array([[(x & y).sum() / max((x | y).sum(), 1) for y in b] for x in a])
    np.testing.assert_allclose(got, brute, atol=1e-6)
    enc = lambda m: cocomask.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8)))  # noqa: E731
    ref = cocomask.iou(enc(a), enc(b), [0] * len(b))
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_mask_iou_chunking_does_not_change_result():
    a, b = _random_masks(4, seed=3), _random_masks(6, seed=4)
    np.testing.assert_allclose(mask_iou_matrix(a, b), mask_iou_matrix(a, b, chunk_pixels=97), atol=1e-6)


def test_mask_iou_edge_cases():
    empty = np.zeros((8, 8), bool)
    assert mask_iou(empty, empty) == 0.0
    full = np.ones((8, 8), bool)
    assert mask_iou(full, full) == 1.0
    assert mask_iou_matrix(np.zeros((0, 8, 8), bool), full).shape == (0, 1)
    with pytest.raises(ValueError, match="same"):
        mask_iou_matrix(np.zeros((8, 8), bool), np.zeros((8, 9), bool))


def test_box_iou_matrix_known_values():
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15]], np.float32)
    b = np.array([[0, 0, 10, 10], [10, 10, 20, 20], [0, 0, 0, 0]], np.float32)
    iou = box_iou_matrix(a, b)
    np.testing.assert_allclose(iou, [[1, 0, 0], [25 / 175, 25 / 175, 0]], atol=1e-6)
    assert box_iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_iou_matrix(np.zeros((2, 3)), b)


def test_box_iou_matrix_matches_mask_iou_of_box_masks():
    rng = np.random.default_rng(5)
    boxes = []
    masks = []
    for _ in range(6):
        x0, y0 = rng.integers(0, 30, 2)
        x1, y1 = x0 + rng.integers(1, 20), y0 + rng.integers(1, 20)
        boxes.append([x0, y0, x1, y1])
        m = np.zeros((60, 60), bool)
        m[y0:y1, x0:x1] = True
        masks.append(m)
    np.testing.assert_allclose(box_iou_matrix(np.array(boxes), np.array(boxes)), mask_iou_matrix(np.array(masks), np.array(masks)), atol=1e-6)


def test_dedupe_masks_per_class_keeps_best():
    base = np.zeros((20, 20), bool)
    base[2:12, 2:12] = True
    near = base.copy()
    near[12, 2:12] = True  # IoU 100/110 = 0.91 with base
    other = np.zeros((20, 20), bool)
    other[14:18, 14:18] = True
    masks = np.stack([base, near, other, base, np.zeros((20, 20), bool)])
    scores = np.array([0.5, 0.9, 0.3, 0.7, 0.99])
    classes = np.array([0, 0, 0, 1, 0])
    keep = dedupe_masks(masks, scores, classes, iou_threshold=0.8)
    # near (0.9) beats base (0.5) in class 0; class 1's copy survives; the empty mask is dropped.
    assert keep.tolist() == [False, True, True, True, False]
    assert dedupe_masks(masks, scores, None, iou_threshold=0.8).tolist() == [False, True, True, False, False]
    assert dedupe_masks(masks, scores, classes, iou_threshold=0.95).tolist() == [True, True, True, True, False]


def test_dedupe_boxes():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60]])
    assert dedupe_boxes(boxes, [0.1, 0.2, 0.3], iou_threshold=0.8).tolist() == [False, True, True]
    assert dedupe_boxes(boxes, [0.1, 0.2, 0.3], [0, 1, 0], iou_threshold=0.8).tolist() == [True, True, True]


def test_clip_and_expand_box():
    assert clip_boxes(np.array([[-5, -5, 120, 50]]), 100, 40).tolist() == [[0, 0, 100, 40]]
    assert expand_box((10, 10, 20, 30), 100, 100, pad=0.5) == (5, 0, 25, 40)
    assert expand_box((10, 10, 20, 30), 100, 100, pad_px=3) == (7, 7, 23, 33)
    assert expand_box((99.5, 99.5, 99.5, 99.5), 100, 100) == (99, 99, 100, 100)  # never empty


def test_masked_crop_neutralises_background():
    img = np.zeros((50, 80, 3), np.uint8)
    img[:] = (10, 200, 30)
    mask = np.zeros((50, 80), bool)
    mask[10:20, 30:50] = True
    img[mask] = (250, 0, 0)
    crop = masked_crop(img, (30, 10, 50, 20), mask, pad=0.5)
    assert crop.shape == (20, 40, 3)  # 10 px / 5 px of context on each side
    assert crop[10, 20].tolist() == [250, 0, 0]
    assert crop[0, 0].tolist() == list(NEUTRAL_FILL)
    plain = masked_crop(img, (30, 10, 50, 20), None, pad=0.0)
    assert plain.shape == (10, 20, 3) and (plain == (250, 0, 0)).all()
    with pytest.raises(ValueError, match="mask of shape"):
        masked_crop(img, (30, 10, 50, 20), mask[:10])


def test_resize_mask_round_trip_and_logits():
    m = np.zeros((100, 140), bool)
    yy, xx = np.mgrid[:100, :140]
    m[(yy - 50) ** 2 + (xx - 70) ** 2 < 35**2] = True
    small = resize_mask(m, (50, 70))
    assert small.shape == (50, 70) and small.dtype == bool
    back = resize_mask(small, (100, 140))
    assert mask_iou(back, m) > 0.95
    assert mask_iou(resize_mask(small, (100, 140), smooth=False), m) > 0.93
    logits = np.where(small, 5.0, -5.0).astype(np.float32)
    assert mask_iou(resize_mask(logits, (100, 140)), m) > 0.95


def test_fill_small_holes_and_remove_small_components():
    m = np.zeros((40, 40), bool)
    m[5:35, 5:35] = True
    m[10:12, 10:12] = False  # 4-px hole
    m[15:30, 15:30] = False  # 225-px hole
    filled = fill_small_holes(m, 10)
    assert filled[10:12, 10:12].all() and not filled[20, 20]
    assert fill_small_holes(m, 1000)[20, 20]
    # A notch open to the image border is not a hole.
    edge = np.ones((10, 10), bool)
    edge[0, 5] = False
    assert not fill_small_holes(edge, 100)[0, 5]
    specks = np.zeros((40, 40), bool)
    specks[0:20, 0:20] = True
    specks[30, 30] = True
    cleaned = remove_small_components(specks, 0.1)
    assert not cleaned[30, 30] and cleaned[0:20, 0:20].all()
