"""Masks as compressed COCO RLE (pycocotools): encode, decode, validate, bbox, area, IoU.

Conventions: a dense mask is a numpy ``(H, W)`` bool array indexed ``[row, col]`` (``H`` = image
height). An RLE is ``{"size": [H, W], "counts": str}``: pycocotools' compressed counts string
of the column-major run lengths (zeros first), as COCO json files store it. Boxes returned here
are xywh in absolute pixels, (x, y) = (column, row) of the top-left corner.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils

RLE = dict


def encode(mask: np.ndarray) -> RLE:
    """Encodes one ``(H, W)`` bool mask as compressed RLE with a ``str`` counts.

    Only the foreground's bounding box is scanned: the crop, padded with one background row
    above and below (so no run crosses a column), is compared row to row; each change at crop
    ``(r, c)`` is a run boundary at the full-image column-major position ``(x0 + c) * H + (y0 + r)``,
    and the run lengths are the differences between the sorted boundaries. pycocotools then only compresses the counts.
    About 10x faster than ``pycocotools.mask.encode`` on a full image for objects covering a few
    percent of it; the result is byte-identical (tests/registry/test_masks.py).

    Raises:
        ValueError: ``mask`` is not 2-D or is empty.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a mask of shape (H, W), got shape {mask.shape}")
    if mask.dtype != np.bool_:
        mask = mask.astype(bool)
    h, w = mask.shape
    if h == 0 or w == 0:
        raise ValueError(f"expected a non-empty mask, got shape {mask.shape}")
    # Rows first: any() along the contiguous axis scans the full mask fastest, and the column
    # scan then only covers the foreground's rows.
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        counts = np.array([h * w])
    else:
        r0, r1 = int(rows[0]), int(rows[-1]) + 1
        cols = np.flatnonzero(mask[r0:r1].any(axis=0))
        c0, c1 = int(cols[0]), int(cols[-1]) + 1
        ww = c1 - c0
        padded = np.zeros((r1 - r0 + 2, ww), dtype=np.bool_)
        padded[1:-1] = mask[r0:r1, c0:c1]
        # Changes between vertically adjacent pixels of the crop, found row-major (flatnonzero on
        # a contiguous array is fast) and sorted into column-major order: they are few (about
        # two per column), so sorting them is far cheaper than transposing the crop.
        r, c = np.divmod(np.flatnonzero(padded[1:] != padded[:-1]), ww)
        bounds = np.sort((c + c0) * h + (r + r0))  # alternating fg starts and fg ends, full image
        # A run ending at a column's bottom and one starting at the next column's top are one run.
        joined = bounds[1:] == bounds[:-1]
        if joined.any():
            keep = np.ones(bounds.size, dtype=np.bool_)
            keep[1:][joined] = False
            keep[:-1][joined] = False
            bounds = bounds[keep]
        tail = [h * w] if bounds[-1] != h * w else []
        counts = np.diff(np.concatenate(([0], bounds, tail)))
    rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts.astype(np.uint32)}, h, w)
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def encode_many(masks: Sequence[np.ndarray] | np.ndarray) -> list[RLE]:
    """Encodes each ``(H, W)`` bool mask of a sequence or an ``(N, H, W)`` array."""
    return [encode(m) for m in masks]


def to_coco(rle: RLE) -> dict:
    """The RLE as pycocotools' C functions take it: ``{"size": [H, W] ints, "counts": bytes}``."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


_coco = to_coco


def decode(rle: RLE) -> np.ndarray:
    """Decodes a compressed RLE into an ``(H, W)`` bool mask (validated first)."""
    validate(rle)
    return mask_utils.decode(_coco(rle)).astype(bool)


def counts_of(rle: RLE) -> np.ndarray:
    """The run lengths (int64) of a compressed RLE, decoded in numpy without trusting the input.

    pycocotools' C decoder writes runs without bounds checks, so a corrupt counts string could
    write past its buffer; this decoder lets :func:`validate` reject such strings first.

    Raises:
        ValueError: the string holds characters outside the RLE alphabet or ends mid-number.
    """
    counts = rle.get("counts")
    if isinstance(counts, list):
        return np.asarray(counts, dtype=np.int64)
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError as exc:
            raise ValueError("expected an ASCII RLE counts string, got non-ASCII characters") from exc
    if not isinstance(counts, (bytes, bytearray)):
        raise ValueError(f"expected RLE counts as str, bytes or list, got {type(counts).__name__}")
    c = np.frombuffer(bytes(counts), dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    if c.min() < 0 or c.max() > 63:
        raise ValueError("expected RLE counts characters in '0'..'o', got others: the mask is corrupt")
    end = (c & 0x20) == 0
    if not end[-1]:
        raise ValueError("expected the RLE counts string to end on a complete number: the mask is corrupt")
    group = np.concatenate(([0], np.cumsum(end)[:-1]))
    starts = np.flatnonzero(np.concatenate(([True], end[:-1])))
    k = np.arange(c.size) - starts[group]
    if k.max() > 12:
        raise ValueError("expected RLE run lengths below 2**60, got longer ones: the mask is corrupt")
    x = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    last = c[end]
    glen = k[end] + 1
    neg = (last & 0x10) != 0
    x[neg] |= -(np.int64(1) << (5 * glen[neg]))
    out = x.copy()
    # Deltas: entry i (i > 2) was stored relative to entry i - 2.
    if out.size > 3:
        out[3::2] = x[1] + np.cumsum(x[3::2])
    if out.size > 4:
        out[4::2] = x[2] + np.cumsum(x[4::2])
    return out


def validate(rle: RLE) -> None:
    """Raises ValueError unless ``rle`` is a well-formed RLE whose runs cover ``H*W`` pixels."""
    try:
        h, w = (int(v) for v in rle["size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"expected an RLE dict with 'size': [H, W], got {rle!r:.80}") from exc
    if h <= 0 or w <= 0:
        raise ValueError(f"expected a positive RLE size, got {[h, w]}")
    counts = counts_of(rle)
    if counts.size and counts.min() < 0:
        raise ValueError("expected non-negative RLE runs, got a negative one: the mask is corrupt")
    if counts.size and counts.max() > h * w:  # also keeps the int64 sum below from wrapping
        raise ValueError(f"expected RLE runs of at most H*W = {h * w}, got {int(counts.max())}: the mask is corrupt")
    total = int(counts.sum())
    if total != h * w:
        raise ValueError(f"expected RLE runs summing to H*W = {h * w}, got {total}: the mask is corrupt")


def area(rle: RLE) -> int:
    """Foreground pixel count."""
    return int(mask_utils.area(_coco(rle)))


def bbox_xywh(rle: RLE) -> tuple[float, float, float, float]:
    """Tight box of the foreground, xywh absolute pixels; (0, 0, 0, 0) for an empty mask."""
    x, y, w, h = mask_utils.toBbox(_coco(rle)).tolist()
    return float(x), float(y), float(w), float(h)


def iou(a: Sequence[RLE], b: Sequence[RLE]) -> np.ndarray:
    """Mask IoU matrix ``(len(a), len(b))`` computed on the RLEs (no decoding)."""
    if not a or not b:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    return np.asarray(
        mask_utils.iou([_coco(r) for r in a], [_coco(r) for r in b], [0] * len(b)), dtype=np.float64
    ).reshape(len(a), len(b))


def iou_coco(a: Sequence[dict], b: Sequence[dict]) -> np.ndarray:
    """:func:`iou` for RLEs already in :func:`to_coco` form (no per-call conversion)."""
    if not a or not b:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    return np.asarray(mask_utils.iou(list(a), list(b), [0] * len(b)), dtype=np.float64).reshape(len(a), len(b))


def box_iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Box IoU matrix ``(len(a), len(b))`` for xywh absolute-pixel boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    return np.asarray(mask_utils.iou(a.tolist(), b.tolist(), [0] * len(b)), dtype=np.float64).reshape(len(a), len(b))


def validate_many(rles: Sequence[RLE], coco_out: list | None = None, boxes_out: list | None = None) -> np.ndarray:
    """:func:`validate` for many RLEs in one compiled pass (registration batches).

    Decodes every counts string (``registry.rle_check``: numba, bounds-checked) and checks the
    characters, that numbers are complete and below 2**60, every run is in [0, H*W] and the runs
    sum to ``H*W`` per RLE.

    Args:
        rles: the RLEs to check.
        coco_out: when given, each RLE in :func:`to_coco` form (bytes counts, made here anyway)
            is appended to it, in order, once all passed.
        boxes_out: when given, the ``(N, 4)`` xywh tight boxes (as :func:`bboxes`) are appended
            to it, once all passed (the decoder computes them on the way).

    Returns:
        The foreground pixel count (int64) of each RLE, which the caller would otherwise
        compute with another pass over the strings.

    Raises:
        ValueError: naming the first bad RLE's position.
    """
    from registry import rle_check

    if not rles:
        return np.zeros(0, dtype=np.int64)
    blobs, sizes, hws = [], [], []
    for i, rle in enumerate(rles):
        try:
            h, w = map(int, rle["size"])
            counts = rle["counts"]
            blob = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
        except (KeyError, TypeError, ValueError, UnicodeEncodeError) as exc:
            raise ValueError(f"RLE {i}: expected {{'size': [H, W], 'counts': ASCII str}}, got {exc}") from exc
        if h <= 0 or w <= 0 or not blob:
            try:
                validate(rle)  # raises the precise message
            except ValueError as exc:
                raise ValueError(f"RLE {i}: {exc}") from exc
        blobs.append(blob)
        sizes.append(h * w)
        hws.append((h, w))
    n = len(blobs)
    blob_end = np.cumsum(np.fromiter((len(b) for b in blobs), dtype=np.int64, count=n))
    raw = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    heights = np.fromiter((h for h, _ in hws), dtype=np.int64, count=n)
    areas, boxes, bad, code, detail = rle_check.check(raw, blob_end, np.asarray(sizes, dtype=np.int64), heights)
    if bad >= 0:
        raise ValueError(f"RLE {bad}: " + rle_check.MESSAGES[code].format(size=sizes[bad], detail=detail))
    if coco_out is not None:
        coco_out.extend({"size": [h, w], "counts": b} for (h, w), b in zip(hws, blobs, strict=True))
    if boxes_out is not None:
        boxes_out.append(boxes)
    return areas


def validate_counts(counts: Sequence[str], h: int, w: int, boxes_out: list | None = None) -> np.ndarray:
    """:func:`validate_many` for str counts of RLEs that are all ``[h, w]`` (registration's
    common case): one join and one ASCII encode for the batch instead of one per RLE, and no
    :func:`to_coco` forms made (dedupe converts the few masks it compares).

    Returns and raises as :func:`validate_many` (which runs instead where a string is empty or
    not ASCII, or the size is not positive, to word those errors).
    """
    from registry import rle_check

    n = len(counts)
    if not n:
        return np.zeros(0, dtype=np.int64)
    try:
        raw = np.frombuffer("".join(counts).encode("ascii"), dtype=np.uint8)
        blob_end = np.cumsum(np.fromiter(map(len, counts), dtype=np.int64, count=n))
    except (TypeError, UnicodeEncodeError):  # not all str / not ASCII: validate_many words it
        raw = blob_end = None
    if raw is None or h <= 0 or w <= 0 or blob_end[0] == 0 or (np.diff(blob_end) == 0).any():
        return validate_many([{"size": [h, w], "counts": c} for c in counts], None, boxes_out)
    sizes = np.full(n, h * w, dtype=np.int64)
    areas, boxes, bad, code, detail = rle_check.check(raw, blob_end, sizes, np.full(n, h, dtype=np.int64))
    if bad >= 0:
        raise ValueError(f"RLE {bad}: " + rle_check.MESSAGES[code].format(size=h * w, detail=detail))
    if boxes_out is not None:
        boxes_out.append(boxes)
    return areas


def areas(rles: Sequence[RLE]) -> np.ndarray:
    """Foreground pixel counts of many RLEs in one pycocotools call."""
    if not rles:
        return np.zeros(0, dtype=np.int64)
    # pycocotools' area() overflows a uint8 counter for 256+ RLEs in one call: chunk.
    coco = [_coco(r) for r in rles]
    return np.concatenate([
        np.asarray(mask_utils.area(coco[i:i + 255]), dtype=np.int64).reshape(-1) for i in range(0, len(coco), 255)
    ])


def bboxes(rles: Sequence[RLE]) -> np.ndarray:
    """``(N, 4)`` xywh tight boxes of many RLEs in one pycocotools call."""
    if not rles:
        return np.zeros((0, 4))
    return bboxes_coco([_coco(r) for r in rles])


def bboxes_coco(coco: Sequence[dict]) -> np.ndarray:
    """:func:`bboxes` for RLEs already in :func:`to_coco` form."""
    if not coco:
        return np.zeros((0, 4))
    return np.concatenate([
        np.asarray(mask_utils.toBbox(list(coco[i:i + 255])), dtype=np.float64).reshape(-1, 4)
        for i in range(0, len(coco), 255)
    ])
