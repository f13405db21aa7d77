"""COCO RLE of masks: encode, normalise, decode (whole or cropped to a box), areas, boxes.

Coordinate conventions: a mask is an ``(H, W)`` bool array, ``mask[row, col]``; an RLE is
``{"size": [H, W], "counts": ...}`` with column-major runs starting with background (COCO);
boxes are ``[x, y, w, h]`` / crops ``(x0, y0)`` in absolute pixels (x = column, y = row).
:mod:`registry.formats.mask_geometry` re-exports every public name here.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from pycocotools import _mask
from pycocotools import mask as mask_utils

# --------------------------------------------------------------------------------- RLE


def rle_encode(mask: np.ndarray) -> dict:
    """Encodes a mask as compressed COCO RLE.

    Args:
        mask: ``(H, W)`` bool (or 0/1 integer) array.

    Returns:
        ``{"size": [H, W], "counts": str}`` (counts as a UTF-8 string, JSON-ready).
    """
    if mask.ndim != 2:
        raise ValueError(f"expected a (H, W) mask, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def normalize_rle(rle: dict) -> dict:
    """Returns compressed RLE (bytes counts, pycocotools-ready) from compressed or uncompressed RLE.

    Args:
        rle: ``{"size": [H, W], "counts": str | bytes | list[int]}``; a list means uncompressed
            (column-major run lengths starting with zeros), as COCO writes for ``iscrowd=1``.
    """
    if isinstance(rle, dict) and type(rle.get("counts")) is bytes:
        size = rle.get("size")
        if type(size) is list and len(size) == 2 and type(size[0]) is int and type(size[1]) is int:
            return rle  # already normalised (the exporters normalise once, then reuse)
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"expected an RLE dict with 'size' and 'counts', got {rle!r:.80}")
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        if sum(int(c) for c in counts) != h * w:
            raise ValueError(
                f"uncompressed RLE counts sum to {sum(counts)}, expected H*W = {h * w}"
            )
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [h, w], "counts": counts}


def rle_decode(rle: dict) -> np.ndarray:
    """Decodes compressed or uncompressed COCO RLE to an ``(H, W)`` bool mask."""
    return mask_utils.decode(normalize_rle(rle)).astype(bool)


def rle_area(rle: dict) -> int:
    """Number of foreground pixels of an RLE (no decoding)."""
    return int(mask_utils.area(normalize_rle(rle)))


def rle_areas(rles: Sequence[dict], *, _normalized: bool = False) -> np.ndarray:
    """Foreground pixel counts of many RLEs in one pycocotools call; int64 ``(N,)``."""
    norm = rles if _normalized else [normalize_rle(r) for r in rles]
    # pycocotools 2.0.x builds a throw-away np.array((n,), dtype=np.uint8) in area(), which
    # numpy 2 rejects for n > 255: call it on slices of 255.
    parts = [np.asarray(_mask.area(norm[i:i + 255]), dtype=np.int64) for i in range(0, len(norm), 255)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def rle_bbox_xywh(rle: dict) -> list[float]:
    """Tight box ``[x, y, w, h]`` (absolute pixels) of an RLE's foreground (no decoding)."""
    return [float(v) for v in mask_utils.toBbox(normalize_rle(rle))]


# ------------------------------------------------------------------- cropped RLE decoding


def rle_runs(counts: str | bytes) -> np.ndarray:
    """Run lengths of a compressed COCO RLE string (pycocotools' LEB128-like code), vectorised.

    Each run is coded in 5-bit groups, least significant first, a 0x20 bit meaning "more
    follows" and 0x10 in the last group the sign; runs after the second are deltas from the
    run two before (pycocotools ``rleFrString``).

    Returns:
        int64 array of run lengths, alternating background/foreground, column-major, starting
        with background.
    """
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    v = np.frombuffer(counts, np.uint8).astype(np.int64) - 48
    if v.size == 0:
        return np.zeros(0, np.int64)
    last = (v & 0x20) == 0
    ends = np.flatnonzero(last)
    group = np.cumsum(np.concatenate([[0], last[:-1]]))  # group index of every char
    starts = np.flatnonzero(np.concatenate([[True], last[:-1]]))
    shift = 5 * (np.arange(v.size) - starts[group])
    x = np.add.reduceat((v & 0x1F) << shift, starts)
    neg = (v[ends] & 0x10) != 0
    if neg.any():
        nchar = ends - starts + 1
        x = np.where(neg, x - (np.int64(1) << (5 * nchar)), x)
    if x.size > 3:
        x[1::2] = np.cumsum(x[1::2])
        x[2::2] = np.cumsum(x[2::2])
    return x


def rle_decode_crop(rle: dict, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Decodes only the window ``[x0, x1) x [y0, y1)`` (absolute pixels) of a compressed RLE.

    Work is proportional to the window's columns times the image height plus the number of
    runs, not to the image: pycocotools' full ``decode`` of a 640x480 mask costs ~0.3 ms, which
    alone would exceed the export budget for 100k objects.

    Returns:
        ``(y1 - y0, x1 - x0)`` bool array.
    """
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        runs = np.asarray(counts, dtype=np.int64)
    else:
        runs = rle_runs(counts)
    ends = np.cumsum(runs)
    lo, hi = x0 * h, x1 * h  # column-major flat window covering the crop's columns
    starts = ends - runs
    first = int(np.searchsorted(ends, lo, side="right"))
    last = int(np.searchsorted(starts, hi, side="left"))
    # Clip the runs overlapping the window and expand them: np.repeat is memcpy-fast, where a
    # cumsum over an int8 diff array is several times slower.
    lengths = np.minimum(ends[first:last], hi) - np.maximum(starts[first:last], lo)
    values = (np.arange(first, last) & 1).astype(bool)
    flat = np.repeat(values, lengths)
    if flat.size != hi - lo:
        raise ValueError(f"RLE runs cover {int(ends[-1]) if ends.size else 0} pixels, expected H*W = {h * w}")
    return np.ascontiguousarray(flat.reshape(x1 - x0, h)[:, y0:y1].T)


def _segmented_cumsum(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``values`` restarting wherever ``groups`` (non-decreasing ids) changes."""
    if values.size == 0:
        return values.copy()
    cs = np.cumsum(values)
    first = np.flatnonzero(np.concatenate([[True], groups[1:] != groups[:-1]]))
    base = cs[first] - values[first]
    return cs - np.repeat(base, np.diff(np.append(first, values.size)))


def _decode_crops(counts: Sequence[bytes], heights: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    """Crops ``boxes`` (``[x, y, w, h]`` ints, non-empty) of many compressed RLEs, in one pass.

    Numpy's per-call overhead, not the arithmetic, dominates decoding one small object at a
    time (~25 calls each), so the LEB128 decode, the delta decode and the expansion run for a
    whole batch at once. The expansion touches only the crops' pixels: a pixel is foreground
    when an odd number of run boundaries precede it, so each boundary becomes a toggle at the
    first crop pixel it affects, and a running sum (mod 2) over the crops fills them in.

    Returns:
        ``(crops, cover)``: one ``(h, w)`` bool C-contiguous array per box, and per RLE the
        number of pixels its runs cover (to be checked against H*W by the caller).
    """
    n = len(counts)
    lens = np.fromiter((len(c) for c in counts), np.int64, n)
    if (lens == 0).any():
        bad = int(np.flatnonzero(lens == 0)[0])
        raise ValueError(f"RLE #{bad} has empty counts; expected a compressed COCO RLE string")
    v = np.frombuffer(b"".join(counts), np.uint8).astype(np.int64) - 48
    char_end = np.cumsum(lens)
    last = (v & 0x20) == 0  # the last 5-bit group of a run
    if not last[char_end - 1].all():
        bad = int(np.flatnonzero(~last[char_end - 1])[0])
        raise ValueError(f"RLE #{bad} ends inside a run (truncated counts); expected a valid compressed COCO RLE")
    starts = np.flatnonzero(np.concatenate([[True], last[:-1]]))
    group = np.cumsum(np.concatenate([[0], last[:-1]]))
    x = np.add.reduceat((v & 0x1F) << (5 * (np.arange(v.size) - starts[group])), starts)
    ends = np.flatnonzero(last)
    neg = (v[ends] & 0x10) != 0
    if neg.any():
        x = np.where(neg, x - (np.int64(1) << (5 * (ends - starts + 1))), x)
    # Runs per RLE, and each run's RLE and index within it.
    nruns = np.add.reduceat(last, np.concatenate([[0], char_end[:-1]])).astype(np.int64)
    obj = np.repeat(np.arange(n), nruns)
    first_run = np.cumsum(nruns) - nruns
    local = np.arange(x.size) - np.repeat(first_run, nruns)
    # pycocotools rleFrString: run m > 2 is stored as a delta from run m - 2.
    for sel in ((local & 1) == 1, ((local & 1) == 0) & (local >= 2)):
        idx = np.flatnonzero(sel)
        x[idx] = _segmented_cumsum(x[idx], obj[idx])
    run_end = _segmented_cumsum(x, obj)
    last_run = first_run + nruns - 1
    bx, by, bw, bh = (boxes[:, k].astype(np.int64) for k in range(4))
    cover = run_end[last_run]
    if (x < 0).any():
        bad = int(obj[np.flatnonzero(x < 0)[0]])
        raise ValueError(f"RLE #{bad} has a negative run; expected a valid compressed COCO RLE")
    # Boundaries: where each run but the last ends, i.e. the first pixel of the next run.
    keep = np.ones(x.size, bool)
    keep[last_run] = False
    b, o = run_end[keep], obj[keep]
    hh = heights[o]
    col = b // hh
    row = b - col * hh
    k = col - bx[o]
    hc = bh[o]
    # The first crop pixel a boundary affects (column-major crop of shape (w, h) flattened):
    # above the crop rows -> top of its column; below -> top of the next column; left of the
    # crop -> the crop's first pixel; right of it -> none.
    first = np.where(row < by[o], k * hc, np.where(row < by[o] + hc, k * hc + row - by[o], (k + 1) * hc))
    first = np.where(k < 0, 0, first)
    size = bw * bh
    valid = first < size[o]
    offset = np.cumsum(size) - size
    o, pos = o[valid], offset[o[valid]] + first[valid]  # non-decreasing: runs and objects in order
    # After its r-th toggle (r = 0, 1, ...) within its object the value is (r + 1) mod 2; each
    # object starts at 0. Segment starts + values, then one np.repeat fills every crop.
    per_obj = np.bincount(o, minlength=n)
    first_tog = np.cumsum(per_obj) - per_obj
    value = ((np.arange(o.size) - np.repeat(first_tog, per_obj)) & 1) == 0
    pos = np.insert(pos, first_tog, offset)
    value = np.insert(value, first_tog, False)
    flat = np.repeat(value, np.diff(np.append(pos, size.sum()))).view(np.uint8)
    return [cv2.transpose(flat[off:off + w * h].reshape(w, h)).view(bool)
            for off, w, h in zip(offset.tolist(), bw.tolist(), bh.tolist(), strict=True)], cover


def rle_crops_to_foreground(
    rles: Sequence[dict], *, max_crop_pixels: int = 1 << 24, _normalized: bool = False
) -> list[tuple[np.ndarray, int, int]]:
    """:func:`rle_crop_to_foreground` for many RLEs at once (same results, a fraction of the time).

    The RLEs may have different sizes. Crops are decoded in batches of at most
    ``max_crop_pixels`` pixels (one byte each, plus a few per run), so memory stays bounded
    whatever the masks.

    Args:
        rles: COCO RLE dicts (compressed or uncompressed).
        max_crop_pixels: memory bound of one batch, in pixels.

    Returns:
        One ``(crop (h, w) bool C-contiguous, x0, y0)`` per RLE, (x0, y0) the crop's top-left
        corner in absolute pixels; ``(zeros((0, 0)), 0, 0)`` for an empty mask.

    Raises:
        ValueError: an RLE is malformed (runs not covering H*W, truncated counts).
    """
    norm = rles if _normalized else [normalize_rle(r) for r in rles]  # the exporter normalises once
    out: list[tuple[np.ndarray, int, int]] = [(np.zeros((0, 0), bool), 0, 0)] * len(norm)
    if not norm:
        return out
    boxes = np.rint(_mask.toBbox(norm)).astype(np.int64).reshape(-1, 4)
    hw = np.array([[int(r["size"][0]), int(r["size"][1])] for r in norm], dtype=np.int64).reshape(-1, 2)
    todo = np.flatnonzero((boxes[:, 2] > 0) & (boxes[:, 3] > 0))
    pixels = boxes[todo, 2] * boxes[todo, 3]
    start = 0
    while start < todo.size:
        # Grow the batch until the pixel budget is reached (at least one RLE per batch).
        stop = start + 1 + int(np.searchsorted(np.cumsum(pixels[start + 1:]),
                                                max_crop_pixels - pixels[start], side="right"))
        idx = todo[start:stop]
        crops, cover = _decode_crops([norm[i]["counts"] for i in idx], hw[idx, 0], boxes[idx])
        expected = hw[idx, 0] * hw[idx, 1]
        if not np.array_equal(cover, expected):
            j = int(np.flatnonzero(cover != expected)[0])
            raise ValueError(
                f"RLE #{int(idx[j])} runs cover {int(cover[j])} pixels, expected H*W = {int(expected[j])}; "
                "the stored mask is corrupt (re-save it)"
            )
        for i, crop in zip(idx.tolist(), crops, strict=True):
            out[i] = (crop, int(boxes[i, 0]), int(boxes[i, 1]))
        start = stop
    return out
