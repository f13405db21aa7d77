"""The bounds-checked decoder behind ``masks.validate_many``: one compiled pass over the
characters of a batch of compressed RLE counts strings.

Why compiled code, and why here: pycocotools decodes counts strings in C without bounds checks
(a corrupt string from an imported file could make it read or write past its buffers), so the
registry checks every caller-given RLE before pycocotools sees it: characters in the alphabet,
numbers complete and below 2**60, every run in [0, H*W] and the runs summing to H*W. That is
per *character* work (~550 characters per mask in the bench) for every registered object; the
earlier numpy formulation took ~13 vectorised passes with fancy indexing over the batch and was
the largest single cost of ingest (``bench registry``). numba compiles this loop to machine
code (~2.7 ns per character here, 10-13x the numpy version on the same batches, see docs/speed.md;
the tight box follows the current column instead of dividing per run, which halved it); no
RLE library offers a checked decoder, and pycocotools' own C decoder is the unchecked one.

The kernel is compiled on first use (cached on disk by numba, ``cache=True``) and releases the
GIL (``nogil``). ``MESSAGES`` words each error code.
"""
from __future__ import annotations

from typing import Any

import numpy as np

OK, INCOMPLETE, BAD_CHAR, TOO_LONG, OUT_OF_RANGE, BAD_SUM = range(6)

MESSAGES = {
    INCOMPLETE: "expected the counts string to end on a complete number: the mask is corrupt",
    BAD_CHAR: "expected counts characters in '0'..'o': the mask is corrupt",
    TOO_LONG: "expected run lengths below 2**60: the mask is corrupt",
    OUT_OF_RANGE: "expected runs between 0 and H*W: the mask is corrupt",
    BAD_SUM: "expected runs summing to H*W = {size}, got {detail}: the mask is corrupt",
}

_kernel: Any = None


def _check(raw: np.ndarray, blob_end: np.ndarray, sizes: np.ndarray, heights: np.ndarray, areas: np.ndarray,
           boxes: np.ndarray) -> tuple[int, int, int]:
    """Decodes and checks every RLE; fills ``areas`` (foreground pixels = the odd runs) and
    ``boxes`` (the tight xywh box of the foreground, as pycocotools' ``toBbox``; zeros when empty).

    Args:
        raw: (C,) uint8, every counts string concatenated.
        blob_end: (N,) int64, the end offset of each string in ``raw`` (cumulative lengths).
        sizes: (N,) int64, H*W of each RLE.
        heights: (N,) int64, H of each RLE (runs are column-major: pixel p is column p // H).
        areas: (N,) int64, written.
        boxes: (N, 4) float64, written.

    Returns:
        ``(i, code, detail)``: the first bad RLE, its error code and (for ``BAD_SUM``) the sum
        of its runs; ``(-1, OK, 0)`` when all pass.
    """
    pos = 0
    for r in range(blob_end.shape[0]):
        end = blob_end[r]
        size = sizes[r]
        h = heights[r]
        total = 0
        area = 0
        x0 = y0 = size
        x1 = y1 = -1
        j = 0
        prev1 = 0
        prev2 = 0
        base = 0
        col = 0
        while pos < end:
            x = 0
            k = 0
            c = 0
            more = True
            while more:
                if pos >= end:
                    return r, INCOMPLETE, 0
                c = np.int64(raw[pos]) - 48
                if c < 0 or c > 63:
                    return r, BAD_CHAR, 0
                if k >= 12:  # a 13th character: a magnitude of 2**60 or more
                    return r, TOO_LONG, 0
                x |= (c & 0x1F) << (5 * k)
                more = (c & 0x20) != 0
                pos += 1
                k += 1
            if c & 0x10:  # sign-extend from the last character's 0x10 bit
                x |= np.int64(-1) << (5 * k)
            if j > 2:  # entries after the third are stored relative to the entry two before
                x += prev2
            if x < 0 or x > size:  # also keeps the sums below from wrapping around
                return r, OUT_OF_RANGE, 0
            if j & 1 and x > 0:  # a foreground run: pixels total .. total + x - 1
                area += x
                # base: the first pixel of total's column (total only grows: usually one step)
                if total - base >= h:
                    if total - base >= 2 * h:
                        col = total // h
                        base = col * h
                    else:
                        base += h
                        col += 1
                r0 = total - base
                last = r0 + x - 1
                if x0 == size:
                    x0 = col
                if last >= h:  # it wraps into the next column: every row is covered
                    y0 = 0
                    y1 = h - 1
                    x1 = (total + x - 1) // h
                else:
                    y0 = min(y0, r0)
                    y1 = max(y1, last)
                    x1 = col
            total += x
            prev2 = prev1
            prev1 = x
            j += 1
        if total != size:
            return r, BAD_SUM, total
        areas[r] = area
        if x1 >= 0:
            boxes[r, 0] = x0
            boxes[r, 1] = y0
            boxes[r, 2] = x1 - x0 + 1
            boxes[r, 3] = y1 - y0 + 1
    return -1, OK, 0


def check(raw: np.ndarray, blob_end: np.ndarray, sizes: np.ndarray,
          heights: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """``(areas, boxes, first bad index or -1, code, detail)`` for the concatenated strings
    (see ``_check``)."""
    global _kernel
    if _kernel is None:
        import numba

        _kernel = numba.njit(cache=True, nogil=True)(_check)
    n = blob_end.shape[0]
    areas = np.zeros(n, dtype=np.int64)
    boxes = np.zeros((n, 4), dtype=np.float64)
    i, code, detail = _kernel(raw, blob_end.astype(np.int64), sizes.astype(np.int64), heights.astype(np.int64),
                              areas, boxes)
    return areas, boxes, int(i), int(code), int(detail)
