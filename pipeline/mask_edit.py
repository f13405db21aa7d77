"""Hand edits of a mask and its compact wire format for the browser canvas.

Conventions: masks are (H, W) bool arrays indexed [row, col]; points are (x, y) absolute pixels
with x = column; polygons are lists of (x, y) vertices (closed implicitly, no repeated first
vertex); boxes ``xywh`` absolute pixels. No registry, UI or model imports.

Wire format (:func:`encode_mask`): ``{"bbox": [x, y, w, h], "rle": [n0, n1, n2, ...]}`` where
the runs cover the ``w * h`` pixels of the box in row-major order, alternating background /
foreground and starting with background (``n0`` may be 0). An empty mask is
``{"bbox": [0, 0, 0, 0], "rle": []}``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check_mask(mask: np.ndarray, what: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{what}: expected an (H, W) array, got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def encode_mask(mask: np.ndarray) -> dict:
    """The mask's bounding-box crop as row-major run lengths (see the module docstring)."""
    mask = _check_mask(mask)
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return {"bbox": [0, 0, 0, 0], "rle": []}
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    flat = mask[y0:y1, x0:x1].reshape(-1).astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0, *runs]
    return {"bbox": [x0, y0, x1 - x0, y1 - y0], "rle": [int(r) for r in runs]}


def decode_mask(data: dict, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`encode_mask`: an (height, width) bool mask."""
    x, y, w, h = (int(v) for v in data.get("bbox", [0, 0, 0, 0]))
    out = np.zeros((height, width), bool)
    runs = [int(r) for r in data.get("rle", [])]
    if not runs or w == 0 or h == 0:
        return out
    if sum(runs) != w * h:
        raise ValueError(f"mask rle: expected runs summing to {w}x{h} = {w * h}, got {sum(runs)}")
    values = np.zeros(w * h, bool)
    pos = 0
    for i, r in enumerate(runs):
        if i % 2:
            values[pos:pos + r] = True
        pos += r
    out[y:y + h, x:x + w] = values.reshape(h, w)
    return out


def _points(points: Sequence[Sequence[float]], what: str) -> np.ndarray:
    pts = np.asarray(points, np.float64).reshape(-1, 2) if len(points) else np.zeros((0, 2))
    if not np.isfinite(pts).all():
        raise ValueError(f"{what}: expected finite (x, y) pixel coordinates, got {points!r}")
    return pts


def paint_stroke(mask: np.ndarray, points: Sequence[Sequence[float]], radius: float, *, erase: bool = False) -> np.ndarray:
    """A copy of ``mask`` with a brush stroke painted (or erased along it).

    Args:
        mask: (H, W) bool.
        points: the stroke's (x, y) pixel positions in order; one point paints a disc.
        radius: brush radius in pixels (>= 1).
        erase: remove the stroke's pixels instead of adding them.
    """
    import cv2

    mask = _check_mask(mask)
    pts = _points(points, "brush stroke")
    if not len(pts):
        raise ValueError("brush stroke: expected at least one (x, y) point, got none")
    if not radius or radius < 1:
        raise ValueError(f"brush radius: expected >= 1 pixel, got {radius}")
    r = int(round(radius))
    stroke = np.zeros(mask.shape, np.uint8)
    ip = np.round(pts).astype(np.int32)
    for (x, y) in ip:
        cv2.circle(stroke, (int(x), int(y)), r, 1, -1)
    for a, b in zip(ip[:-1], ip[1:], strict=True):
        cv2.line(stroke, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 1, thickness=2 * r)
    hit = stroke.astype(bool)
    return (mask & ~hit) if erase else (mask | hit)


def mask_to_polygons(mask: np.ndarray, *, tolerance: float = 1.0, min_area: float = 4.0,
                     max_vertices: int = 200) -> list[list[list[float]]]:
    """The outer outlines of the mask's parts as simplified polygons, biggest first.

    Args:
        mask: (H, W) bool.
        tolerance: Douglas-Peucker tolerance in pixels (raised until a ring has at most
            ``max_vertices`` vertices).
        min_area: parts smaller than this (pixels) are skipped.

    Returns:
        Rings of [x, y] vertices (pixel corners, x = column); holes are not listed (an edit of
        a ring keeps the holes inside it, see :func:`replace_polygon`).
    """
    import cv2

    mask = _check_mask(mask)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    rings = []
    for c in sorted(contours, key=cv2.contourArea, reverse=True):
        if cv2.contourArea(c) < min_area and len(contours) > 1:
            continue
        eps = tolerance
        approx = cv2.approxPolyDP(c, eps, True)
        while len(approx) > max_vertices:
            eps *= 1.5
            approx = cv2.approxPolyDP(c, eps, True)
        if len(approx) >= 3:
            rings.append([[float(x), float(y)] for x, y in approx.reshape(-1, 2)])
    return rings


def fill_polygon(points: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """The (height, width) bool mask inside one polygon (its outline included)."""
    import cv2

    pts = _points(points, "polygon")
    if len(pts) < 3:
        raise ValueError(f"polygon: expected at least 3 vertices, got {len(pts)}")
    out = np.zeros((height, width), np.uint8)
    cv2.fillPoly(out, [np.round(pts).astype(np.int32)], 1)
    return out.astype(bool)


def replace_polygon(mask: np.ndarray, old: Sequence[Sequence[float]], new: Sequence[Sequence[float]]) -> np.ndarray:
    """A copy of ``mask`` where the part outlined by ``old`` is redrawn as ``new``.

    Pixels outside ``old`` stay as they are; holes inside ``old`` (background pixels the old
    outline enclosed) stay holes where ``new`` still covers them.
    """
    mask = _check_mask(mask)
    h, w = mask.shape
    if len(new) < 3:
        raise ValueError(f"polygon: expected at least 3 vertices after the edit, got {len(new)}; "
                         "delete the object instead of its last vertices")
    old_fill = fill_polygon(old, h, w)
    holes = old_fill & ~mask
    return (mask & ~old_fill) | (fill_polygon(new, h, w) & ~holes)


def bbox_xyxy(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """The mask's tight box ``xyxy`` (absolute pixels, exclusive max), None when empty."""
    ys, xs = np.nonzero(_check_mask(mask))
    if not len(xs):
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
