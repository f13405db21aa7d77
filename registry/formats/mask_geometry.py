"""Mask geometry for the exporters and importers: RLE, polygons, areas, boxes.

Coordinate conventions (all functions in this module):

* A mask is a 2-D ``np.ndarray`` of shape ``(H, W)``, dtype ``bool``; ``mask[row, col]``.
* Points and polygons are ``(x, y)`` = ``(col, row)`` in **absolute pixels** of the image the
  mask belongs to, as float arrays of shape ``(K, 2)``. COCO flattens them to
  ``[x1, y1, x2, y2, ...]``.
* Boxes are ``[x, y, w, h]`` (xywh) in absolute pixels, with the mask's pixel ``(row, col)``
  covering the continuous square ``[col, col+1) x [row, row+1)`` as in COCO.

Two polygon conventions are needed because the two consumers rasterise differently:

* **COCO** (pycocotools ``frPyObjects``): a pixel belongs to the polygon when its centre
  ``(col + 0.5, row + 0.5)`` lies inside. We trace the boundary on the mask upsampled x2 and map
  the upsampled pixel centres back, so vertices sit a quarter pixel inside each boundary pixel
  edge; pycocotools then reproduces the mask bit for bit for hole-free single-part masks. Whether
  a given mask is reproduced is *checked* (rasterise and compare), never assumed:
  :func:`coco_segmentation` writes polygons only when the check passes, else compressed RLE
  (always for masks with holes or several parts).
* **YOLO** (ultralytics ``polygon2mask`` → ``cv2.fillPoly``): a pixel belongs to the polygon when
  the polygon passes through or around its centre, and its integer coordinates are the pixel
  index. We use ``cv2.findContours`` points as they are (pixel indices, no offset).

YOLO segment labels hold exactly one polygon per object. Policy for masks with holes or several
parts (:func:`yolo_polygon`): all rings are kept and joined into one ring by zero-width bridges
between their closest points (each new ring is spliced into the path at the point nearest to
it), the way ultralytics' own ``merge_multi_segment`` joins COCO multi-polygons. The filled ring
reproduces every part and every hole; the only loss is the one-pixel-wide bridge lines that
``fillPoly`` draws. This keeps strictly more of the mask than "largest part only".

The RLE functions (encode, decode, cropped decoding, areas) live in
:mod:`registry.formats.rle_codec` and are re-exported here.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from pycocotools import _mask
from pycocotools import mask as mask_utils

from registry.formats.rle_codec import (
    normalize_rle,
    rle_area,
    rle_areas,
    rle_bbox_xywh,
    rle_crops_to_foreground,
    rle_decode,
    rle_decode_crop,
    rle_encode,
    rle_runs,
)

__all__ = [
    "rle_encode",
    "rle_decode",
    "rle_area",
    "rle_bbox_xywh",
    "normalize_rle",
    "mask_bbox_xywh",
    "mask_rings",
    "coco_polygons",
    "coco_segmentation",
    "coco_segmentation_from_rle",
    "rle_crop_to_foreground",
    "rle_decode_crop",
    "rle_runs",
    "yolo_polygon_from_rle",
    "yolo_polygon_from_crop",
    "rle_crops_to_foreground",
    "rle_areas",
    "coco_polygon_quarters",
    "coco_polygons_to_mask",
    "coco_segmentation_to_mask",
    "yolo_polygon",
    "yolo_polygon_to_mask",
    "merge_rings",
    "mask_iou",
    "polygon_area",
]

#: COCO polygon rasterisation must reproduce the mask at least this well to be written as
#: polygons (1.0 = bit-exact). Default: bit-exact.
POLYGON_MIN_IOU = 1.0


def mask_bbox_xywh(mask: np.ndarray) -> list[float]:
    """Tight box ``[x, y, w, h]`` in absolute pixels of a ``(H, W)`` bool mask; zeros when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    cols = np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two same-shape bool masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def polygon_area(points: np.ndarray) -> float:
    """Shoelace area of a ``(K, 2)`` (x, y) ring, in square pixels (absolute value)."""
    x, y = points[:, 0], points[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


# ----------------------------------------------------------------------------- contours


def _crop(mask: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Crops a mask to its foreground box; returns (crop, x0, y0). Work is proportional to the box."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return mask[:0, :0], 0, 0
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], int(cols[0]), int(rows[0])


def mask_rings(mask: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Outer boundaries and hole boundaries of a mask, as pixel-index rings.

    Args:
        mask: ``(H, W)`` bool.

    Returns:
        ``(outers, holes)``: lists of ``(K, 2)`` int32 arrays of (x, y) pixel indices (the
        centres of boundary pixels, ``cv2.findContours`` convention, RETR_CCOMP so holes are
        found), in absolute image coordinates.
    """
    return _rings(*_crop(mask))


def _rings(crop: np.ndarray, x0: int, y0: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if crop.size == 0 or not crop.any():
        return [], []
    contours, hierarchy = cv2.findContours(
        crop.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
    )
    outers: list[np.ndarray] = []
    holes: list[np.ndarray] = []
    offset = np.array([x0, y0], dtype=np.int32)
    for contour, h in zip(contours, hierarchy[0], strict=True):
        ring = contour[:, 0, :] + offset
        # RETR_CCOMP: top-level contours (parent -1) are outer boundaries, their children holes.
        (outers if h[3] < 0 else holes).append(ring)
    return outers, holes


# ---------------------------------------------------------------------------------- COCO


def coco_polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons (outer boundaries only) tracing a mask's pixel edges.

    Vertices lie a quarter pixel inside the boundary pixels (see the module docstring), in
    absolute (x, y) pixels, flattened ``[x1, y1, x2, y2, ...]``. Holes are *not* represented:
    use :func:`coco_segmentation`, which checks representability.
    """
    return _coco_polygons(*_crop(mask))


def _coco_polygons(crop: np.ndarray, x0: int, y0: int) -> list[list[float]]:
    if crop.size == 0:
        return []
    up = crop.astype(np.uint8).repeat(2, axis=0).repeat(2, axis=1)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for contour in contours:
        # Drop staircase vertices that lie within a quarter pixel of a straight run: a third
        # fewer points, same rasterisation (checked by the caller).
        contour = cv2.approxPolyDP(contour, 0.5, True)
        # Quarter-pixel values are exact in binary floating point: no rounding needed.
        pts = (contour[:, 0, :].astype(np.float64) + 0.5) / 2.0 + np.array([x0, y0])
        if len(pts) < 3:
            # A single pixel or a one-pixel line: pad to a valid polygon (pycocotools needs 3).
            pts = np.concatenate([pts, pts[::-1]])[:3] if len(pts) else pts
            if len(pts) < 3:
                continue
        polys.append(pts.ravel().tolist())
    return polys


def coco_polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Rasterises COCO polygons (flattened absolute (x, y)) with pycocotools; union of parts."""
    polys = [list(map(float, p)) for p in polygons if len(p) >= 6]
    if not polys:
        return np.zeros((height, width), dtype=bool)
    rles = mask_utils.frPyObjects(polys, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def coco_segmentation_to_mask(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """``(H, W)`` bool mask from a COCO ``segmentation`` (polygons, compressed or uncompressed RLE)."""
    if isinstance(segmentation, dict):
        mask = rle_decode(segmentation)
        if mask.shape != (height, width):
            raise ValueError(
                f"RLE size {list(mask.shape)} does not match the image size [{height}, {width}]"
            )
        return mask
    if isinstance(segmentation, list):
        return coco_polygons_to_mask(segmentation, height, width)
    raise ValueError(f"expected polygons (list) or RLE (dict), got {type(segmentation).__name__}")


def coco_segmentation(mask: np.ndarray, *, min_iou: float = POLYGON_MIN_IOU) -> tuple[list | dict, str]:
    """The COCO ``segmentation`` for a mask: polygons when they reproduce it, else RLE.

    Polygons are used only for a mask with one part and no holes whose pycocotools
    rasterisation matches the mask with IoU ≥ ``min_iou`` (default 1.0: bit-exact); anything
    else (holes, several parts, thin shapes the rasteriser rounds differently) becomes
    compressed RLE, which is always exact.

    Args:
        mask: ``(H, W)`` bool.
        min_iou: the acceptance threshold for polygons.

    Returns:
        ``(segmentation, kind)`` with kind ``"polygon"`` or ``"rle"``.
    """
    kind, polys = _coco_choice(*_crop(mask), min_iou=min_iou)
    return (polys, kind) if kind == "polygon" else (rle_encode(mask), "rle")


def coco_segmentation_from_rle(rle: dict, *, min_iou: float = POLYGON_MIN_IOU) -> tuple[list | dict, str]:
    """:func:`coco_segmentation` for a mask given as COCO RLE, decoding only its bounding box.

    Returns the polygons, or the RLE itself (``counts`` as str) when polygons would not be exact.
    """
    crop, x0, y0 = rle_crop_to_foreground(rle)
    kind, polys = _coco_choice(crop, x0, y0, min_iou=min_iou)
    if kind == "polygon":
        return polys, kind
    counts = rle["counts"]
    if isinstance(counts, list):
        return rle_encode(rle_decode(rle)), "rle"
    return {"size": [int(v) for v in rle["size"]], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}, "rle"


def rle_crop_to_foreground(rle: dict) -> tuple[np.ndarray, int, int]:
    """Decodes an RLE's foreground bounding box only; returns ``(crop (h, w) bool, x0, y0)``."""
    x, y, w, h = (int(round(v)) for v in mask_utils.toBbox(normalize_rle(rle)))
    if w == 0 or h == 0:
        return np.zeros((0, 0), bool), 0, 0
    return rle_decode_crop(rle, x, y, x + w, y + h), x, y


def _coco_choice(crop: np.ndarray, x0: int, y0: int, *, min_iou: float) -> tuple[str, list]:
    q = coco_polygon_quarters(crop, min_iou=min_iou)
    if q is None:
        return "rle", []
    pts = q.astype(np.float64) / 4.0 + np.array([x0, y0], dtype=np.float64)
    return "polygon", [pts.ravel().tolist()]


def coco_polygon_quarters(
    crop: np.ndarray,
    *,
    min_iou: float = POLYGON_MIN_IOU,
    rle: dict | None = None,
    x0: int = 0,
    y0: int = 0,
) -> np.ndarray | None:
    """The exact COCO polygon of a cropped mask, in quarter pixels of the crop, or None.

    One ``cv2.findContours`` pass on the crop upsampled x2 gives both the topology check and
    the polygon: upsampling by 2 keeps 8-connected parts and 4-connected holes as they are, so
    exactly one contour (``RETR_LIST``) means one part without holes. The polygon is then
    rasterised with pycocotools and accepted only if it reproduces the mask (bit-exact when
    ``min_iou`` ≥ 1).

    Args:
        crop: ``(h, w)`` bool, the mask cropped to (at least) its foreground box.
        min_iou: the acceptance threshold (1.0 = bit-exact).
        rle: optionally the whole mask as compressed RLE (bytes counts, :func:`normalize_rle`)
            with the crop's top-left corner ``(x0, y0)`` in it: the bit-exact check then
            compares pycocotools' RLE of the polygon with it as strings (RLE is canonical), no
            decoding; a mismatch falls back to comparing pixels (in case the stored RLE is
            not canonical).
        x0, y0: the crop's top-left corner in ``rle``'s image, absolute pixels.

    Returns:
        ``(K, 2)`` int64 array ``q`` with ``q / 4`` the (x, y) vertices in the crop's pixel
        frame (add ``(x0, y0)`` for absolute pixels); every value is odd (a quarter pixel
        inside a pixel edge). None when polygons would not reproduce the mask (holes, several
        parts, thin shapes pycocotools rounds differently, empty).
    """
    if crop.size == 0:
        return None
    u8 = crop.view(np.uint8) if crop.dtype == bool and crop.flags.c_contiguous else np.ascontiguousarray(crop, dtype=np.uint8)
    h, w = u8.shape
    up = cv2.resize(u8, (2 * w, 2 * h), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(up, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) != 1:
        return None
    # Drop staircase vertices that lie within a quarter pixel of a straight run: a third fewer
    # points, same rasterisation (checked below).
    contour = cv2.approxPolyDP(contours[0], 0.5, True)
    # Upsampled pixel centre c maps back to (c + 0.5) / 2 = (2c + 1) / 4: exact in quarters.
    q = contour.reshape(-1, 2).astype(np.int64) * 2 + 1
    if len(q) < 3:
        # A one-pixel line: pad to a valid polygon (pycocotools needs 3 points).
        q = np.concatenate([q, q[::-1]])[:3]
        if len(q) < 3:
            return None
    if rle is not None and min_iou >= 1.0:
        size = rle["size"]
        poly = (q + (4 * x0, 4 * y0)).ravel() * 0.25
        if _mask.frPoly([poly], int(size[0]), int(size[1]))[0]["counts"] == rle["counts"]:
            return q
    raster = _mask.decode(_mask.frPoly([q.ravel() * 0.25], h, w))[:, :, 0]
    if min_iou >= 1.0:
        ok = np.array_equal(raster, u8)
    else:
        ok = mask_iou(raster.astype(bool), u8.astype(bool)) >= min_iou
    return q if ok else None


# ---------------------------------------------------------------------------------- YOLO


def _closest_pair(path: np.ndarray, ring: np.ndarray, chunk: int = 4096) -> tuple[int, int]:
    """Indices (i in path, j in ring) of the closest pair of points, in bounded memory.

    Squared distances as ``|a|² + |b|² - 2 a·b`` (one matrix product, no (K, M, 2) temporary).
    Pixel coordinates are integers, so every term is an exact integer in float64 and the
    first minimum in (i, j) row-major order is the same pair a direct computation picks.
    """
    best = (np.inf, 0, 0)
    ring_f = np.asarray(ring, dtype=np.float64)
    ring_sq = (ring_f * ring_f).sum(1)
    for start in range(0, len(path), chunk):
        block = np.asarray(path[start : start + chunk], dtype=np.float64)
        d = (block * block).sum(1)[:, None] + ring_sq[None, :] - 2.0 * (block @ ring_f.T)
        k = int(np.argmin(d))
        i, j = divmod(k, d.shape[1])
        if d[i, j] < best[0]:
            best = (float(d[i, j]), start + i, j)
    return best[1], best[2]


def merge_rings(rings: Sequence[np.ndarray]) -> np.ndarray:
    """Joins several rings into one ring with zero-width bridges (ultralytics-style merge).

    The first ring is the start; each further ring (nearest first) is spliced into the path at
    the closest pair of points: path[..i] → ring[j..] → ring[..j] → path[i..]. Holes keep their
    opposite orientation, so filling the merged ring leaves them empty.

    Args:
        rings: ``(K, 2)`` (x, y) arrays, absolute pixels.

    Returns:
        One ``(K', 2)`` array.
    """
    rings = [np.asarray(r) for r in rings if len(r)]
    if not rings:
        return np.zeros((0, 2))
    path = rings[0]
    rest = list(rings[1:])
    while rest:
        # Nearest ring next, so bridges stay short and do not cross other parts.
        pairs = [_closest_pair(path, r) for r in rest]
        dists = [
            float(((path[i].astype(np.float64) - r[j]) ** 2).sum())
            for (i, j), r in zip(pairs, rest, strict=True)
        ]
        k = int(np.argmin(dists))
        (i, j), ring = pairs[k], rest.pop(k)
        rolled = np.concatenate([ring[j:], ring[:j]])  # np.roll(ring, -j, axis=0), cheaper
        path = np.concatenate([path[: i + 1], rolled, rolled[:1], path[i:]])
    return path


def yolo_polygon(mask: np.ndarray) -> np.ndarray:
    """The one polygon a YOLO segment label holds for a mask (policy in the module docstring).

    Args:
        mask: ``(H, W)`` bool.

    Returns:
        ``(K, 2)`` float array of (x, y) absolute pixel indices, K ≥ 3, or shape ``(0, 2)`` for
        an empty mask. Divide by (W, H) to normalise.
    """
    return _yolo_polygon(*_crop(mask)).astype(np.float64)


def yolo_polygon_from_rle(rle: dict) -> np.ndarray:
    """:func:`yolo_polygon` for a mask given as COCO RLE, decoding only its bounding box."""
    return _yolo_polygon(*rle_crop_to_foreground(rle)).astype(np.float64)


def yolo_polygon_from_crop(crop: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """:func:`yolo_polygon` of a cropped mask (e.g. from :func:`rle_crops_to_foreground`).

    Args:
        crop: ``(h, w)`` bool, the mask cropped to its foreground box.
        x0, y0: the crop's top-left corner in absolute pixels.

    Returns:
        ``(K, 2)`` int64 (x, y) absolute pixel indices (K ≥ 3), or shape ``(0, 2)`` when empty.
    """
    return _yolo_polygon(crop, x0, y0)


def _yolo_polygon(crop: np.ndarray, x0: int, y0: int) -> np.ndarray:
    outers, holes = _rings(crop, x0, y0)
    if not outers:
        return np.zeros((0, 2), np.int64)
    if len(outers) > 1:
        outers.sort(key=lambda r: -cv2.contourArea(r.astype(np.float32)))
    path = merge_rings(outers + holes).astype(np.int64)
    if len(path) < 3:
        # One pixel or a straight line: pad so the label parses as a polygon.
        path = np.concatenate([path, path[::-1], path])[:3]
    return path


def yolo_polygon_to_mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rasterises a YOLO polygon (absolute (x, y) pixels, ``(K, 2)``) as ultralytics does (fillPoly)."""
    out = np.zeros((height, width), dtype=np.uint8)
    if len(points) >= 3:
        cv2.fillPoly(out, [np.round(points).astype(np.int32)], 1)
    return out.astype(bool)
