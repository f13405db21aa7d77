"""Mask IoU of many (a, b) pairs of compressed RLEs in one compiled pass (registration dedupe).

Why our own code: pycocotools' ``mask.iou`` computes exactly this, but one call per row of
pairs costs ~20 us of Python-side conversion before its C loop runs, and dedupe makes dozens
of such calls per 500-object batch (``bench registry``: ~2-4 us per registered object, the
largest part of dedupe). Here every involved counts string is decoded once and every pair is
merged in one numba loop. The merge is pycocotools' ``rleIou`` loop (same integer counts,
same ``i / u`` in double, 0 when nothing intersects), so values are bit-identical; a parity
test holds it to ``pycocotools.mask.iou``.

Memory safety does not rest on the strings being valid: a decoded run is never used as an
index, every read is bounded by its string's or run list's end, and a run consumes at least
one character, and the merge takes at most one step per run, so a corrupt string gives a wrong
number, never an out-of-bounds access or a hang.
The kernel is compiled on first use (cached on disk, ``cache=True``) and releases the GIL.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_kernel: Any = None


def _decode(raw: np.ndarray, str_end: np.ndarray, runs: np.ndarray, run_end: np.ndarray) -> None:
    """Decodes every counts string of ``raw`` (ends ``str_end``) into ``runs``; ``run_end[r]``
    is where string r's runs end (``runs`` has room for one run per character)."""
    pos = 0
    k = 0
    for r in range(str_end.shape[0]):
        end = str_end[r]
        j = 0
        prev1 = 0
        prev2 = 0
        while pos < end:
            x = 0
            n = 0
            c = 0
            more = True
            while more and pos < end and n < 13:
                c = np.int64(raw[pos]) - 48
                x |= (c & 0x1F) << (5 * n)
                more = (c & 0x20) != 0
                pos += 1
                n += 1
            if c & 0x10:
                x |= np.int64(-1) << (5 * n)
            if j > 2:
                x += prev2
            runs[k] = x
            k += 1
            prev2 = prev1
            prev1 = x
            j += 1
        run_end[r] = k


def _iou(raw: np.ndarray, str_end: np.ndarray, pa: np.ndarray, pb: np.ndarray, out: np.ndarray) -> None:
    """``out[p]`` = mask IoU of strings ``pa[p]`` and ``pb[p]`` (pycocotools' ``rleIou``)."""
    runs = np.zeros(max(raw.shape[0], 1), dtype=np.int64)
    run_end = np.zeros(str_end.shape[0], dtype=np.int64)
    _decode(raw, str_end, runs, run_end)
    for p in range(pa.shape[0]):
        a0 = run_end[pa[p] - 1] if pa[p] > 0 else 0
        ka = run_end[pa[p]]
        b0 = run_end[pb[p] - 1] if pb[p] > 0 else 0
        kb = run_end[pb[p]]
        if a0 >= ka or b0 >= kb:
            out[p] = 0.0
            continue
        ca = runs[a0]
        cb = runs[b0]
        a = a0 + 1
        b = b0 + 1
        va = False
        vb = False
        inter = 0
        union = 0
        # pycocotools' ``while (ct > 0)``, bounded: each step moves a or b on (a corrupt run
        # list whose sum differs would otherwise spin there forever on c == 0).
        for _ in range(ka - a0 + kb - b0 + 1):
            c = min(ca, cb)
            if va or vb:
                union += c
                if va and vb:
                    inter += c
            ct = 0
            ca -= c
            if ca == 0 and a < ka:
                ca = runs[a]
                a += 1
                va = not va
            ct += ca
            cb -= c
            if cb == 0 and b < kb:
                cb = runs[b]
                b += 1
                vb = not vb
            ct += cb
            if ct <= 0:
                break
        out[p] = 0.0 if inter == 0 else inter / union


def _compile() -> Any:
    """Compiles the kernel on first use. numba resolves ``_decode`` as a module global when it
    compiles ``_iou``, so the compiled ``_decode`` replaces the Python one first."""
    global _kernel, _decode
    import numba

    _decode = numba.njit(cache=True, nogil=True)(_decode)
    _kernel = numba.njit(cache=True, nogil=True)(_iou)
    return _kernel


def pair_iou(counts: Sequence[str | bytes], pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """IoU of the masks ``counts[pa[p]]`` and ``counts[pb[p]]`` for every pair ``p``.

    Args:
        counts: compressed counts strings, all of masks of the same ``[H, W]`` (the caller's
            to ensure: pycocotools would refuse the pair).
        pa, pb: ``(P,)`` indices into ``counts``.

    Raises:
        ValueError: a string that is not ASCII (nothing to decode).
    """
    kernel = _kernel or _compile()
    try:
        blob = b"".join(c.encode("ascii") if isinstance(c, str) else bytes(c) for c in counts)
    except UnicodeEncodeError as exc:
        raise ValueError(f"expected ASCII RLE counts, got {exc}") from exc
    raw = np.frombuffer(blob, dtype=np.uint8)
    str_end = np.cumsum(np.fromiter(map(len, counts), dtype=np.int64, count=len(counts)))
    pa = np.asarray(pa, dtype=np.int64)
    pb = np.asarray(pb, dtype=np.int64)
    if pa.size and (min(pa.min(), pb.min()) < 0 or max(pa.max(), pb.max()) >= len(counts)):
        raise ValueError("expected pair indices into counts")
    out = np.zeros(pa.shape[0], dtype=np.float64)
    kernel(raw, str_end, pa, pb, out)
    return out
