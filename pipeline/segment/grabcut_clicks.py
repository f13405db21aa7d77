"""Refine clicks on a previous mask: what a positive or a negative click may change.

GrabCut's colour model, re-run on the whole object, often ignores a click: on a photo of a red
cup whose stored mask is only its rim, eight clicks on the red body left the mask as it was, and
on a good cat mask the first click *shrank* it (the re-run drew a slightly different border).
So with a previous mask the clicks are applied as set operations, in the order they were made:

- a **positive** click adds the region it lands in: the colour-coherent region connected to the
  click (flood fill on a median-filtered copy, :meth:`GrabCutSegmenter._flood`), plus (newest
  click only) the pixels the GrabCut re-run newly assigns to the object in the component
  touching the click. It never removes anything.
- a **negative** click removes the region it lands in (the previous mask's part around the
  click, :meth:`GrabCutSegmenter._negative_carve`) and never adds anything.

Re-applying the earlier clicks on each call is harmless: the same sequence of unions and
differences applied to its own result gives that result again (the colour regions depend on
the image only). A box, when given, still clips
what a positive click adds (the object lies inside its box).

Coordinates: image (H, W, 3) uint8 RGB indexed [row, col]; points (x, y) absolute pixels;
box xyxy absolute pixels; masks (H, W) bool.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline.mask_ops import expand_box

if TYPE_CHECKING:  # pragma: no cover - typing only
    from pipeline.segment.grabcut import GrabCutSegmenter


def _clip_to_box(mask: np.ndarray, box: np.ndarray | None) -> np.ndarray:
    if box is None:
        return mask
    inside = np.zeros_like(mask)
    inside[int(np.floor(box[1])) : int(np.ceil(box[3])), int(np.floor(box[0])) : int(np.ceil(box[2]))] = True
    return mask & inside


def positive_region(
    seg: GrabCutSegmenter, image: np.ndarray, x: float, y: float, prior: np.ndarray, cut: np.ndarray | None
) -> np.ndarray:
    """(H, W) bool: the region a positive click at (x, y) adds to ``prior``.

    The colour-coherent region connected to the click (within ``seed_reach`` of it), united with
    the component of ``cut & ~prior`` (what the GrabCut re-run newly calls object) that touches
    the click's neighbourhood (``cut`` None: the colour region only).
    """
    h, w = prior.shape
    xi, yi = int(np.clip(round(float(x)), 0, w - 1)), int(np.clip(round(float(y)), 0, h - 1))
    reach = int(seg.seed_reach * max(h, w)) + 1
    x0, y0, x1, y1 = expand_box((xi, yi, xi + 1, yi + 1), w, h, pad_px=reach)
    window_region, _ = seg._flood(image[y0:y1, x0:x1], np.array([[xi - x0, yi - y0]], np.float32), None)
    region = np.zeros((h, w), bool)
    region[y0:y1, x0:x1] = window_region
    # Resizing may detach bits of the fill: keep what is connected to the click.
    region[yi, xi] = True
    n, comp = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    region = comp == comp[yi, xi]
    new = None if cut is None else cut & ~prior
    if new is not None and new.any():
        r = max(seg.click_radius, int(0.01 * max(h, w)))
        n, comp = cv2.connectedComponents(new.astype(np.uint8), connectivity=8)
        near = comp[max(yi - r, 0) : yi + r + 1, max(xi - r, 0) : xi + r + 1]
        ids = [int(v) for v in np.unique(near) if v]
        if ids:
            region |= np.isin(comp, ids)
    return region


def apply_clicks(
    seg: GrabCutSegmenter,
    image: np.ndarray,
    prior: np.ndarray,
    cut: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    box: np.ndarray | None,
) -> np.ndarray:
    """The previous mask ``prior`` changed by each click in order (see the module docstring).

    Args:
        seg: the segmenter (its flood and carve helpers and parameters).
        image: (H, W, 3) uint8 RGB.
        prior: (H, W) bool, the previous mask (non-empty).
        cut: (H, W) bool, GrabCut's re-run from the same prompt (seeded with ``prior``).
        points: (N, 2) float (x, y) absolute pixels; labels: (N,) 1 = object, 0 = not object.
        box: xyxy absolute pixels clipped to the image, or None.

    Returns:
        (H, W) bool: ``prior`` plus every positive click's region, minus every negative click's
        region, applied in click order.
    """
    mask = prior.copy()
    pos = points[labels == 1]
    last = len(points) - 1
    for i, ((x, y), lab) in enumerate(zip(points, labels, strict=True)):
        if lab == 1:
            # GrabCut's proposal counts for the newest click only: re-applied for the earlier
            # ones on every call, it would let the mask creep along GrabCut's leaks.
            region = positive_region(seg, image, x, y, prior, cut if i == last else None)
            mask |= _clip_to_box(region, box)
        elif mask.any():
            mask &= ~seg._negative_carve(image, mask, pos, np.array([[x, y]], np.float32), box)
    return mask


def mask_score(seg: GrabCutSegmenter, image: np.ndarray, mask: np.ndarray) -> float:
    """Colour separability (see :class:`GrabCutSegmenter`) of ``mask`` in a window around it."""
    if not mask.any():
        return 0.0
    h, w = mask.shape
    rows, cols = np.nonzero(mask)
    x0, y0, x1, y1 = expand_box((cols.min(), rows.min(), cols.max() + 1, rows.max() + 1), w, h, pad=0.1, pad_px=4)
    return seg._separability(np.ascontiguousarray(image[y0:y1, x0:x1]), mask[y0:y1, x0:x1])
