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

    Only the columns that hold foreground are scanned and transposed (the rest are runs of
    zeros), which is several times faster than ``pycocotools.mask.encode`` on a full image for
    the typical object covering a few percent of it; the result is byte-identical.

    Raises:
        ValueError: ``mask`` is not 2-D.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a mask of shape (H, W), got shape {mask.shape}")
    if mask.dtype != np.bool_:
        mask = mask.astype(bool)
    h, w = mask.shape
    if h == 0 or w == 0:
        raise ValueError(f"expected a non-empty mask, got shape {mask.shape}")
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        counts = np.array([h * w], dtype=np.int64)
    else:
        c0, c1 = int(cols[0]), int(cols[-1]) + 1
        flat = np.ascontiguousarray(mask[:, c0:c1].T).ravel()  # column-major order of the slab
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        counts = np.diff(np.concatenate(([0], change, [flat.size]))).astype(np.int64)
        if flat[0]:
            counts = np.concatenate(([0], counts))  # RLE always starts with a run of zeros
        counts[0] += h * c0
        tail = h * (w - c1)
        if tail:
            if counts.size % 2 == 1:  # last run is zeros: extend it
                counts[-1] += tail
            else:
                counts = np.append(counts, tail)
    rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts.tolist()}, h, w)
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def encode_many(masks: Sequence[np.ndarray] | np.ndarray) -> list[RLE]:
    """Encodes each ``(H, W)`` bool mask of a sequence or an ``(N, H, W)`` array."""
    return [encode(m) for m in masks]


def _coco(rle: RLE) -> dict:
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


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


def box_iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Box IoU matrix ``(len(a), len(b))`` for xywh absolute-pixel boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    return np.asarray(mask_utils.iou(a.tolist(), b.tolist(), [0] * len(b)), dtype=np.float64).reshape(len(a), len(b))


def validate_many(rles: Sequence[RLE]) -> None:
    """:func:`validate` for many RLEs with a handful of numpy calls (registration batches).

    Decodes every counts string at once (segmented) and checks the runs are non-negative and
    sum to ``H*W`` per RLE. Raises ValueError naming the first bad RLE's position.
    """
    if not rles:
        return
    blobs, sizes = [], []
    for i, rle in enumerate(rles):
        try:
            h, w = (int(v) for v in rle["size"])
            counts = rle["counts"]
            blob = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
        except (KeyError, TypeError, ValueError, UnicodeEncodeError) as exc:
            raise ValueError(f"RLE {i}: expected {{'size': [H, W], 'counts': ASCII str}}, got {exc}") from exc
        if h <= 0 or w <= 0 or not blob:
            validate(rle)  # raises the precise message
        blobs.append(blob)
        sizes.append(h * w)
    lens = np.fromiter((len(b) for b in blobs), dtype=np.int64, count=len(blobs))
    c = np.frombuffer(b"".join(blobs), dtype=np.uint8).astype(np.int64) - 48
    owner = np.repeat(np.arange(len(blobs)), lens)
    bad_char = (c < 0) | (c > 63)
    if bad_char.any():
        raise ValueError(f"RLE {int(owner[np.argmax(bad_char)])}: expected counts characters in '0'..'o': the mask is corrupt")
    end = (c & 0x20) == 0
    last_of_blob = np.cumsum(lens) - 1
    if not end[last_of_blob].all():
        i = int(np.flatnonzero(~end[last_of_blob])[0])
        raise ValueError(f"RLE {i}: expected the counts string to end on a complete number: the mask is corrupt")
    starts = np.flatnonzero(np.concatenate(([True], end[:-1])))
    group = np.cumsum(np.concatenate(([0], end[:-1].astype(np.int64))))
    k = np.arange(c.size) - starts[group]
    if k.max() > 12:
        raise ValueError(f"RLE {int(owner[np.argmax(k)])}: expected run lengths below 2**60: the mask is corrupt")
    x = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    glen = k[end] + 1
    neg = (c[end] & 0x10) != 0
    x[neg] |= -(np.int64(1) << (5 * glen[neg]))
    # Position of each number inside its RLE, and the delta chains: entry j > 2 is stored
    # relative to entry j - 2, so odd entries form one running sum, even entries from 2 another.
    num_owner = owner[starts]
    first_num = np.flatnonzero(np.concatenate(([True], num_owner[1:] != num_owner[:-1])))
    j = np.arange(x.size) - np.repeat(first_num, np.diff(np.append(first_num, x.size)))
    chain = num_owner * 3 + np.where(j == 0, 0, np.where(j % 2 == 1, 1, 2))
    order = np.argsort(chain, kind="stable")
    xs = x[order]
    cs = np.cumsum(xs)
    chain_sorted = chain[order]
    chain_start = np.flatnonzero(np.concatenate(([True], chain_sorted[1:] != chain_sorted[:-1])))
    base = np.repeat(cs[chain_start] - xs[chain_start], np.diff(np.append(chain_start, cs.size)))
    runs = np.empty_like(x)
    runs[order] = cs - base
    if (runs < 0).any():
        raise ValueError(f"RLE {int(num_owner[np.argmax(runs < 0)])}: expected non-negative runs: the mask is corrupt")
    totals = np.bincount(num_owner, weights=runs.astype(np.float64), minlength=len(blobs))
    wrong = np.flatnonzero(totals != np.asarray(sizes, dtype=np.float64))
    if wrong.size:
        i = int(wrong[0])
        raise ValueError(f"RLE {i}: expected runs summing to H*W = {sizes[i]}, got {int(totals[i])}: the mask is corrupt")


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
    coco = [_coco(r) for r in rles]
    return np.concatenate([
        np.asarray(mask_utils.toBbox(coco[i:i + 255]), dtype=np.float64).reshape(-1, 4) for i in range(0, len(coco), 255)
    ])
