"""Binary quantisation with rescoring: the planner's ``quantized`` path for large filters.

Beside the float32 rows the exact matrix (:mod:`registry.vectors.matrix`) keeps one sign bit per
dimension of every unit row (``bits.u64``: ``(capacity, ceil(dim / 64))`` uint64, 96 bytes per
768-d vector, 1/32 of the float32 row), written in the same upserts and deletes, under the same
lock and the same ``"dirty"`` header, so the two never disagree. A query's sign bits are XORed
with the candidates' and the set bits counted (Hamming distance; a small numba kernel, nogil);
the ``R`` nearest by Hamming are then re-scored exactly on their float32 rows and the best
``need`` kept. This is Weaviate's and Qdrant's "binary quantisation with rescoring".

The candidates of a filter come from :mod:`registry.vectors.postings`: the rowids of each
``(category_id, validation_status)`` cell, and their sign bits copied cell by cell into a slab
that :func:`quantized_top_slab` reads in order. Without a slab (stale postings allowed)
:func:`quantized_top` gathers each candidate's bits through the matrix's ``row_of``. An
unfiltered query (or a wide filter) scans every row of the matrix's own bits
(:func:`quantized_top_all`). Scans of more than ``MIN_ROWS_PER_THREAD`` rows are split across
the cores (the kernel releases the GIL).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic


def words_for(dim: int) -> int:
    """uint64 words of one vector's sign bits."""
    return (int(dim) + 63) // 64


def encode(vectors: np.ndarray) -> np.ndarray:
    """``(n, dim)`` float -> ``(n, words)`` uint64 sign bits (bit set where the value > 0)."""
    vecs = np.atleast_2d(np.asarray(vectors))
    words = words_for(vecs.shape[1])
    packed = np.packbits(vecs > 0, axis=1)
    if packed.shape[1] != words * 8:
        packed = np.concatenate([packed, np.zeros((len(packed), words * 8 - packed.shape[1]), np.uint8)], axis=1)
    return np.ascontiguousarray(packed).view(np.uint64)


@intrinsic
def _popcount(typingctx, x):  # noqa: ARG001 - numba's intrinsic signature
    def codegen(context, builder, sig, args):  # noqa: ARG001
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


@numba.njit(nogil=True, cache=True)
def _scan(rowids, row_of, bits, qbits, exclude, r, out_rows):  # pragma: no cover - compiled
    """Hamming distance of every candidate's row to ``qbits``; writes the ``r`` nearest rows to
    ``out_rows`` (ties at the cut in candidate order); returns ``(rows written, scanned)``."""
    n = rowids.shape[0]
    words = bits.shape[1]
    rows = np.empty(n, np.int32)
    dist = np.empty(n, np.int32)
    hist = np.zeros(words * 64 + 1, np.int64)
    n_rowid = row_of.shape[0]
    n_ex = exclude.shape[0]
    c = 0
    for i in range(n):
        rid = rowids[i]
        if rid < 0 or rid >= n_rowid:
            continue
        row = row_of[rid]
        if row < 0:
            continue
        if n_ex:
            j = np.searchsorted(exclude, rid)
            if j < n_ex and exclude[j] == rid:
                continue
        d = 0
        for w in range(words):
            d += _popcount(bits[row, w] ^ qbits[w])
        rows[c] = row
        dist[c] = d
        hist[d] += 1
        c += 1
    picked = np.empty(max(r, 1), np.int32)
    m = _pick(dist, c, hist, r, picked)  # the cut by distance, shared with the all-rows scan
    for j in range(m):
        out_rows[j] = rows[picked[j]]
    return m, c


def quantized_top(matrix: Any, query: np.ndarray, rowids: np.ndarray, rescore: int, n: int,
                  exclude: np.ndarray | None = None) -> tuple[list[str], np.ndarray, int]:
    """``(object ids, exact cosines, candidates scanned)``: the ``rescore`` candidates nearest to
    the unit ``query`` by Hamming distance, re-scored on their float32 rows, best ``n`` first.

    Args:
        matrix: the :class:`~registry.vectors.matrix.VectorMatrix` (its sign bits and rows).
        rowids: candidate ``objects.rowid`` values (those without a matrix row are skipped).
        rescore: ``R``, how many Hamming-nearest candidates are re-scored exactly.
        exclude: sorted int64 rowids to leave out (the fresh segment's).
    """
    qbits = encode(query[None, :])[0]
    excl = np.zeros(0, np.int64) if exclude is None else np.ascontiguousarray(exclude, np.int64)
    out = np.empty(max(int(rescore), 1), np.int32)
    with matrix.lock:
        m, scanned = _scan(np.ascontiguousarray(rowids, np.int64), matrix.row_of, np.asarray(matrix.bits),
                           qbits, excl, out.shape[0], out)
        rows = np.sort(out[:m]).astype(np.int64)
        if not rows.size:
            return [], np.zeros(0, np.float32), int(scanned)
        sims = matrix.scores(query, rows)
        order = np.argsort(-sims, kind="stable")[:n]
        return matrix.ids_at(rows[order]), sims[order], int(scanned)


@numba.njit(nogil=True, cache=True)
def _scan_pieces(bits, rowids, exclude, qbits, pieces, dist, hist):  # pragma: no cover - compiled
    """Hamming distance to ``qbits`` of the rows of each piece ``(lo, hi, off)`` of ``bits``,
    written to ``dist[off + i - lo]`` and counted in ``hist``; a row whose ``rowids`` entry is
    in the sorted ``exclude`` gets ``len(hist)`` (never picked, not counted)."""
    words = bits.shape[1]
    skip = hist.shape[0]
    n_ex = exclude.shape[0]
    for p in range(pieces.shape[0]):
        lo = pieces[p, 0]
        off = pieces[p, 2] - lo
        for i in range(lo, pieces[p, 1]):
            if n_ex:
                rid = rowids[i]
                j = np.searchsorted(exclude, rid)
                if j < n_ex and exclude[j] == rid:
                    dist[off + i] = skip
                    continue
            d = 0
            for w in range(words):
                d += _popcount(bits[i, w] ^ qbits[w])
            dist[off + i] = d
            hist[d] += 1


@numba.njit(nogil=True, cache=True)
def _pick(dist, n, hist, r, out_rows):  # pragma: no cover - compiled
    """The ``r`` rows of ``dist[:n]`` nearest by distance (ties at the cut in row order)."""
    if n <= r:
        for i in range(n):
            out_rows[i] = i
        return n
    below = 0
    cut = 0
    while below + hist[cut] < r:
        below += hist[cut]
        cut += 1
    ties = r - below
    m = 0
    for i in range(n):
        d = dist[i]
        if d < cut or (d == cut and ties > 0):
            if d == cut:
                ties -= 1
            out_rows[m] = i
            m += 1
    return m


# Threads of a scan over every row: the kernel releases the GIL, so a large scan is split
# across cores (one part in the calling thread). Below MIN_ROWS_PER_THREAD rows a part, one.
SCAN_THREADS = max(1, min(4, os.cpu_count() or 1))
MIN_ROWS_PER_THREAD = 150_000
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, SCAN_THREADS - 1), thread_name_prefix="bits-scan")
        return _POOL


def _split(ranges: list[tuple[int, int]], parts: int) -> list[np.ndarray]:
    """``ranges`` of rows cut into ``parts`` pieces lists of about equal rows: ``(lo, hi, off)``
    each, ``off`` the piece's place in the ranges laid end to end."""
    total = sum(hi - lo for lo, hi in ranges)
    bounds = np.linspace(0, total, parts + 1).astype(np.int64)
    out: list[list[tuple[int, int, int]]] = [[] for _ in range(parts)]
    off = 0
    for lo, hi in ranges:
        for k in range(parts):  # the part of [off, off + hi - lo) inside [bounds[k], bounds[k+1])
            a, b = max(off, int(bounds[k])), min(off + hi - lo, int(bounds[k + 1]))
            if a < b:
                out[k].append((lo + a - off, lo + b - off, a))
        off += hi - lo
    return [np.array(p, np.int64).reshape(-1, 3) for p in out]


def scan_ranges(bits: np.ndarray, qbits: np.ndarray, ranges: list[tuple[int, int]], r: int,
                rowids: np.ndarray | None = None, exclude: np.ndarray | None = None) -> np.ndarray:
    """The ``r`` rows of ``bits`` within ``ranges`` nearest to ``qbits`` by Hamming distance
    (ascending row indices of ``bits``), the scan split across threads when it is large.

    Args:
        rowids: the rowid of each row of ``bits``; rows whose rowid is in ``exclude`` (sorted
            int64) are left out. Both None: nothing is left out.
    """
    total = sum(hi - lo for lo, hi in ranges)
    words = bits.shape[1]
    if total == 0:
        return np.zeros(0, np.int64)
    excl = np.zeros(0, np.int64) if exclude is None or rowids is None else np.ascontiguousarray(exclude, np.int64)
    rid = np.zeros(0, np.int64) if rowids is None else rowids
    dist = np.empty(total, np.int32)
    parts = max(1, min(SCAN_THREADS, total // MIN_ROWS_PER_THREAD))
    hists = np.zeros((parts, words * 64 + 1), np.int64)
    pieces = _split(ranges, parts)
    futures = [_pool().submit(_scan_pieces, bits, rid, excl, qbits, pieces[i], dist, hists[i])
               for i in range(1, parts)]
    _scan_pieces(bits, rid, excl, qbits, pieces[0], dist, hists[0])
    for f in futures:
        f.result()
    hist = hists.sum(axis=0)
    if int(hist.sum()) <= r:
        picked = np.nonzero(dist < hist.shape[0])[0].astype(np.int64)
    else:
        out = np.empty(max(int(r), 1), np.int32)
        picked = out[:_pick(dist, total, hist, out.shape[0], out)].astype(np.int64)
    # Place in the ranges laid end to end -> row of bits.
    los = np.array([lo for lo, _ in ranges], np.int64)
    offs = np.cumsum([0] + [hi - lo for lo, hi in ranges])[:-1]
    k = np.searchsorted(offs, picked, side="right") - 1
    return los[k] + (picked - offs[k])


def scan_all(bits: np.ndarray, qbits: np.ndarray, rows: int, r: int) -> np.ndarray:
    """The ``r`` rows of ``bits[:rows]`` nearest to ``qbits`` by Hamming distance (row order)."""
    return scan_ranges(bits, qbits, [(0, int(rows))], r)


def quantized_top_slab(matrix: Any, query: np.ndarray, selection: Any, rescore: int, n: int,
                       exclude: np.ndarray | None = None) -> tuple[list[str], np.ndarray, int]:
    """:func:`quantized_top` over a :class:`~registry.vectors.postings.Selection`'s slab ranges
    (its candidates' bits in order, no gather through ``row_of``): ``(object ids, exact
    cosines, candidates scanned)``. The picked rowids are re-scored on their current rows."""
    slab = selection.slab
    qbits = encode(query[None, :])[0]
    picked = scan_ranges(slab.bits, qbits, selection.ranges, rescore, slab.rowids, exclude)
    scanned = sum(hi - lo for lo, hi in selection.ranges)
    with matrix.lock:
        rows = matrix.rows_for(slab.rowids[picked])
        rows = np.sort(rows[rows >= 0]).astype(np.int64)
        if not rows.size:
            return [], np.zeros(0, np.float32), scanned
        sims = matrix.scores(query, rows)
        order = np.argsort(-sims, kind="stable")[:n]
        return matrix.ids_at(rows[order]), sims[order], scanned


def quantized_top_all(matrix: Any, query: np.ndarray, rescore: int, n: int) -> tuple[list[str], np.ndarray, int]:
    """:func:`quantized_top` over every row of the matrix (no candidate list: the rows are read
    in order, split across threads): ``(object ids, exact cosines, rows scanned)``."""
    qbits = encode(query[None, :])[0]
    with matrix.lock:
        total = int(matrix.rows)
        if total == 0:
            return [], np.zeros(0, np.float32), 0
        rows = scan_all(np.asarray(matrix.bits), qbits, total, rescore)
        sims = matrix.scores(query, rows)
        order = np.argsort(-sims, kind="stable")[:n]
        return matrix.ids_at(rows[order]), sims[order], total
