"""Mask and box geometry the models need (pure numpy / OpenCV, no torch).

Conventions used throughout this module:

- An image is (H, W, 3) uint8 RGB, indexed [row, col] = [y, x].
- A mask is (H, W) bool in the same pixel grid; a stack of masks is (N, H, W) bool.
- A box is ``xyxy`` = (x_min, y_min, x_max, y_max) in absolute pixels, float32, where x is the
  column and y the row. Boxes use **pixel-edge** coordinates: a mask whose pixels span columns
  c0..c1 inclusive has x_min = c0 and x_max = c1 + 1, so box width = number of columns and
  ``xyxy -> xywh`` gives the same numbers as pycocotools' ``toBbox`` for that mask.
- IoU matrices are (N, M) float32: row i compares ``a[i]``, column j compares ``b[j]``.

RLE and polygon encodings live in ``registry/``, not here.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

#: ImageNet mean RGB, rounded. A background filled with it becomes ~0 after the usual
#: mean/std normalisation, i.e. "no information" for DINOv2-style embedders.
NEUTRAL_FILL: tuple[int, int, int] = (124, 116, 104)


def _as_mask_stack(masks: np.ndarray, name: str = "masks") -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise ValueError(f"{name}: expected shape (H, W) or (N, H, W), got {masks.shape}")
    return masks.astype(bool, copy=False)


def _as_boxes(boxes: np.ndarray | Sequence[float], name: str = "boxes") -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name}: expected xyxy boxes of shape (N, 4), got {arr.shape}")
    return arr


def mask_to_xyxy(masks: np.ndarray) -> np.ndarray:
    """Tight boxes around masks.

    Args:
        masks: (H, W) or (N, H, W) bool.

    Returns:
        (N, 4) float32 xyxy in absolute pixel-edge coordinates (x_max = last column + 1).
        An empty mask gives (0, 0, 0, 0).
    """
    stack = _as_mask_stack(masks)
    out = np.zeros((len(stack), 4), dtype=np.float32)
    if len(stack) == 0:
        return out
    rows_any = stack.any(axis=2)  # (N, H)
    cols_any = stack.any(axis=1)  # (N, W)
    nonempty = rows_any.any(axis=1)
    h, w = stack.shape[1:]
    y0 = rows_any.argmax(axis=1)
    y1 = h - rows_any[:, ::-1].argmax(axis=1)
    x0 = cols_any.argmax(axis=1)
    x1 = w - cols_any[:, ::-1].argmax(axis=1)
    out[:] = np.stack([x0, y0, x1, y1], axis=1)
    out[~nonempty] = 0
    return out


def box_area(boxes: np.ndarray) -> np.ndarray:
    """(N,) float32 areas of xyxy boxes (0 for degenerate boxes)."""
    b = _as_boxes(boxes)
    return (np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)).astype(np.float32)


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes.

    Args:
        a: (N, 4) xyxy absolute pixels.
        b: (M, 4) xyxy absolute pixels (same frame as ``a``).

    Returns:
        (N, M) float32 in [0, 1]; 0 where the union is empty.
    """
    a = _as_boxes(a, "a")
    b = _as_boxes(b, "b")
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou.astype(np.float32)


def mask_iou_matrix(a: np.ndarray, b: np.ndarray, *, chunk_pixels: int = 1 << 20) -> np.ndarray:
    """Pairwise IoU of binary masks, vectorised.

    Intersections are one matrix product per chunk of pixels, so memory stays bounded by
    ``(N + M) * chunk_pixels`` float32 values however large the image is.

    Args:
        a: (N, H, W) or (H, W) bool.
        b: (M, H, W) or (H, W) bool, same H, W as ``a``.
        chunk_pixels: pixels per chunk.

    Returns:
        (N, M) float32 in [0, 1]; 0 where both masks are empty.
    """
    a = _as_mask_stack(a, "a")
    b = _as_mask_stack(b, "b")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"mask_iou_matrix: expected masks of the same (H, W), got {a.shape[1:]} and {b.shape[1:]}")
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        return np.zeros((n, m), dtype=np.float32)
    fa = a.reshape(n, -1)
    fb = b.reshape(m, -1)
    inter = np.zeros((n, m), dtype=np.float64)
    for start in range(0, fa.shape[1], chunk_pixels):
        ca = fa[:, start : start + chunk_pixels].astype(np.float32)
        cb = fb[:, start : start + chunk_pixels].astype(np.float32)
        inter += ca @ cb.T  # exact: float32 sums of 0/1 stay exact below 2**24 per chunk
    area_a = fa.sum(axis=1, dtype=np.int64).astype(np.float64)
    area_b = fb.sum(axis=1, dtype=np.int64).astype(np.float64)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou.astype(np.float32)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) masks (0.0 when both are empty)."""
    return float(mask_iou_matrix(a, b)[0, 0])


def dedupe_masks(
    masks: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray | None = None,
    *,
    iou_threshold: float = 0.8,
) -> np.ndarray:
    """Greedy non-maximum suppression on masks, within each class.

    Objects are visited from the highest score down; one is dropped when its mask IoU with an
    already kept object of the same class exceeds ``iou_threshold``. Empty masks are dropped.

    Args:
        masks: (N, H, W) bool.
        scores: (N,) higher is better.
        class_ids: (N,) ints, or None to treat all objects as one class.
        iou_threshold: IoU above which two masks are the same object.

    Returns:
        (N,) bool ``keep`` aligned with the input order.
    """
    stack = _as_mask_stack(masks)
    n = len(stack)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != n:
        raise ValueError(f"dedupe_masks: expected {n} scores, got {len(scores)}")
    classes = np.zeros(n, np.int64) if class_ids is None else np.asarray(class_ids).reshape(-1)
    if len(classes) != n:
        raise ValueError(f"dedupe_masks: expected {n} class ids, got {len(classes)}")
    keep = stack.reshape(n, -1).any(axis=1) if n else np.zeros(0, bool)
    if n < 2:
        return keep
    iou = mask_iou_matrix(stack, stack)
    return _greedy_nms(iou, scores, classes, keep, iou_threshold)


def dedupe_boxes(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray | None = None,
    *,
    iou_threshold: float = 0.8,
) -> np.ndarray:
    """Like :func:`dedupe_masks` with box IoU; degenerate (zero-area) boxes are kept.

    Returns:
        (N,) bool ``keep`` aligned with the input order.
    """
    b = _as_boxes(boxes)
    n = len(b)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    classes = np.zeros(n, np.int64) if class_ids is None else np.asarray(class_ids).reshape(-1)
    if len(scores) != n or len(classes) != n:
        raise ValueError(f"dedupe_boxes: expected {n} scores and class ids, got {len(scores)} and {len(classes)}")
    return _greedy_nms(box_iou_matrix(b, b), scores, classes, np.ones(n, bool), iou_threshold)


def _greedy_nms(
    iou: np.ndarray, scores: np.ndarray, classes: np.ndarray, keep: np.ndarray, thr: float
) -> np.ndarray:
    keep = keep.copy()
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    for i in order:
        if not keep[i]:
            continue
        for j in kept:
            if classes[j] == classes[i] and iou[i, j] > thr:
                keep[i] = False
                break
        if keep[i]:
            kept.append(int(i))
    return keep


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clips xyxy boxes to the image [0, width] x [0, height] (pixel-edge coordinates)."""
    b = _as_boxes(boxes).copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, width)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, height)
    return b


def expand_box(
    xyxy: Sequence[float], width: int, height: int, *, pad: float = 0.0, pad_px: int = 0
) -> tuple[int, int, int, int]:
    """Integer crop window around a box, grown on each side and clipped to the image.

    Args:
        xyxy: one box, absolute pixel-edge coordinates.
        width, height: image size.
        pad: growth on each side as a fraction of the box's width / height.
        pad_px: extra growth on each side in pixels.

    Returns:
        (x0, y0, x1, y1) ints with 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, usable as
        ``image[y0:y1, x0:x1]`` (at least one pixel, even for degenerate boxes).
    """
    x_min, y_min, x_max, y_max = (float(v) for v in xyxy)
    dx = (x_max - x_min) * pad + pad_px
    dy = (y_max - y_min) * pad + pad_px
    x0 = int(np.clip(np.floor(x_min - dx), 0, max(width - 1, 0)))
    y0 = int(np.clip(np.floor(y_min - dy), 0, max(height - 1, 0)))
    x1 = int(np.clip(np.ceil(x_max + dx), x0 + 1, width))
    y1 = int(np.clip(np.ceil(y_max + dy), y0 + 1, height))
    return x0, y0, x1, y1


def masked_crop(
    image: np.ndarray,
    xyxy: Sequence[float],
    mask: np.ndarray | None = None,
    *,
    pad: float = 0.1,
    pad_px: int = 0,
    fill: Sequence[int] = NEUTRAL_FILL,
) -> np.ndarray:
    """The object's crop with everything outside its mask set to a constant colour.

    Args:
        image: (H, W, 3) uint8 RGB.
        xyxy: the object's box, absolute pixels.
        mask: (H, W) bool of the whole image, or None to keep the whole crop (box only).
        pad: context added on each side, as a fraction of the box size.
        pad_px: context added on each side, in pixels.
        fill: RGB colour for pixels outside the mask (default: ImageNet mean, i.e. neutral).

    Returns:
        (h, w, 3) uint8 crop (a copy; at least 1 x 1).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"masked_crop: expected an (H, W, 3) image, got {image.shape}")
    h, w = image.shape[:2]
    x0, y0, x1, y1 = expand_box(xyxy, w, h, pad=pad, pad_px=pad_px)
    crop = image[y0:y1, x0:x1].copy()
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (h, w):
            raise ValueError(f"masked_crop: expected a mask of shape {(h, w)}, got {mask.shape}")
        crop[~mask[y0:y1, x0:x1]] = np.asarray(fill, dtype=np.uint8)
    return crop


def resize_mask(mask: np.ndarray, size_hw: tuple[int, int], *, smooth: bool = True) -> np.ndarray:
    """Resizes a (H, W) bool mask (or float logits / probabilities) to ``size_hw`` = (rows, cols).

    Args:
        mask: (H, W) bool, or float where > 0 means inside (logits) when ``mask`` is float.
        size_hw: target (height, width).
        smooth: upsample with bilinear interpolation and threshold at 0.5 (bool input) / 0.0
            (float input): smooth edges instead of blocky nearest-neighbour staircases.

    Returns:
        (height, width) bool.
    """
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"resize_mask: expected a 2-D mask, got shape {arr.shape}")
    out_h, out_w = int(size_hw[0]), int(size_hw[1])
    if arr.shape == (out_h, out_w):
        return arr > 0 if arr.dtype != bool else arr.copy()
    if arr.dtype == bool or np.issubdtype(arr.dtype, np.integer):
        src, thr = (arr > 0).astype(np.float32), 0.5
    else:
        src, thr = arr.astype(np.float32), 0.0
    shrinking = out_h * out_w < arr.shape[0] * arr.shape[1]
    if not smooth:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(src, (out_w, out_h), interpolation=interp)
    return resized > thr


def fill_small_holes(mask: np.ndarray, max_hole_area: int) -> np.ndarray:
    """Fills background regions enclosed by the mask whose area is <= ``max_hole_area`` pixels.

    Regions touching the image border are never holes. Works on (H, W) bool, returns a copy.
    """
    mask = np.asarray(mask, dtype=bool)
    if max_hole_area <= 0 or not mask.any():
        return mask.copy()
    inv = (~mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    if n <= 1:
        return mask.copy()
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    small = stats[:, cv2.CC_STAT_AREA] <= max_hole_area
    small[0] = False  # label 0 = the mask itself
    small[border] = False
    return mask | small[labels]


def connected_components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """8-connected components of a (H, W) bool mask.

    Returns:
        (n, labels, areas): ``labels`` (H, W) int32 with 0 = background and 1..n-1 components,
        ``areas`` (n,) int64 pixel counts (areas[0] = background).
    """
    mask = np.asarray(mask, dtype=bool)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return int(n), labels, stats[:, cv2.CC_STAT_AREA].astype(np.int64)


def remove_small_components(mask: np.ndarray, min_fraction: float = 0.1, min_area: int = 0) -> np.ndarray:
    """Drops components smaller than ``min_fraction`` of the largest one (or than ``min_area``)."""
    n, labels, areas = connected_components(mask)
    if n <= 2:
        return np.asarray(mask, dtype=bool).copy()
    fg_areas = areas[1:]
    thr = max(min_area, min_fraction * fg_areas.max())
    keep = np.concatenate([[False], fg_areas >= thr])
    return keep[labels]
