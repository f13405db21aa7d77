"""Binary quantisation with rescoring: the planner's ``quantized`` path for large filters.

Beside the float32 rows the exact matrix (:mod:`registry.vectors.matrix`) keeps one sign bit per
dimension of every unit row (``bits.u64``: ``(capacity, ceil(dim / 64))`` uint64, 96 bytes per
768-d vector, 1/32 of the float32 row), written in the same upserts and deletes, under the same
lock and the same ``"dirty"`` header, so the two never disagree. A query's sign bits are XORed
with the candidates' and the set bits counted (Hamming distance; a small numba kernel, nogil);
the ``R`` nearest by Hamming are then re-scored exactly on their float32 rows and the best
``need`` kept. This is Weaviate's and Qdrant's "binary quantisation with rescoring".

The candidates of a filter come from :class:`Postings`: the rowids of every
``(category_id, validation_status)`` cell of ``objects``, read from SQLite's covering index in
one ``GROUP BY`` with ``group_concat`` and kept in memory. Reading 50k rowids from SQLite per
query costs ~6-8 ms (and 31 ms for a third of 1M), more than the scan itself, hence the cache.
It is keyed by ``PRAGMA data_version`` + ``total_changes`` like the planner's counts and, by
default, used only while that key is unchanged (no commit since it was read): otherwise a
refresh starts in a background thread and the query takes another path meanwhile. Results of
this path are filtered on the SQLite rows all the same (see :func:`registry.search._quantized`).
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

from registry.db import Connection


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
def _scan_range(bits, qbits, lo, hi, dist, hist):  # pragma: no cover - compiled
    """Hamming distance of rows ``lo .. hi-1`` to ``qbits`` into ``dist``, counted in ``hist``."""
    words = bits.shape[1]
    for i in range(lo, hi):
        d = 0
        for w in range(words):
            d += _popcount(bits[i, w] ^ qbits[w])
        dist[i] = d
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


def scan_all(bits: np.ndarray, qbits: np.ndarray, rows: int, r: int) -> np.ndarray:
    """The ``r`` rows of ``bits[:rows]`` nearest to ``qbits`` by Hamming distance (row order)."""
    dist = np.empty(rows, np.int32)
    parts = max(1, min(SCAN_THREADS, rows // MIN_ROWS_PER_THREAD))
    hists = np.zeros((parts, bits.shape[1] * 64 + 1), np.int64)
    bounds = np.linspace(0, rows, parts + 1).astype(np.int64)
    futures = [_pool().submit(_scan_range, bits, qbits, int(bounds[i]), int(bounds[i + 1]), dist, hists[i])
               for i in range(1, parts)]
    _scan_range(bits, qbits, int(bounds[0]), int(bounds[1]), dist, hists[0])
    for f in futures:
        f.result()
    out = np.empty(max(int(r), 1), np.int32)
    m = _pick(dist, rows, hists.sum(axis=0), out.shape[0], out)
    return out[:m].astype(np.int64)


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


class Postings:
    """The rowids of every ``(category_id, validation_status)`` cell of ``objects``, cached.

    Args:
        conn: the registry connection (its data key; the reads go through a second connection
            in a background thread, or through ``conn`` for an in-memory database).
        min_interval_s: background refreshes start at most this often (a burst of writes).
    """

    def __init__(self, conn: Connection, min_interval_s: float = 1.0) -> None:
        self.conn = conn
        self.min_interval_s = float(min_interval_s)
        self._lock = threading.Lock()
        self._cells: dict[tuple[int, str], np.ndarray] = {}
        self._key: tuple[int, int] | None = None
        self._at = 0.0  # monotonic time of the read
        self._started = -1e9
        self._thread: threading.Thread | None = None
        self.refreshes = 0
        self.last_refresh_s = 0.0

    def _data_key(self) -> tuple[int, int]:
        with self.conn.lock:
            version = self.conn.conn.execute("PRAGMA data_version").fetchone()[0]
            return int(version), int(self.conn.conn.total_changes)

    def refresh(self) -> float:
        """Reads the cells now (the key first: a commit racing the read only makes the cache
        look stale, never current with old rows); returns the seconds it took."""
        t0 = time.perf_counter()
        key = self._data_key()
        sql = ("SELECT category_id, validation_status, group_concat(rowid) FROM objects "
               "GROUP BY category_id, validation_status")
        if str(self.conn.path) == ":memory:":
            with self.conn.lock:
                rows = self.conn.conn.execute(sql).fetchall()
        else:
            snap = sqlite3.connect(str(self.conn.path), timeout=60)
            try:
                rows = snap.execute(sql).fetchall()
            finally:
                snap.close()
        cells = {(-1 if c is None else int(c), str(s)): np.sort(np.fromstring(t, dtype=np.int64, sep=","))
                 for c, s, t in rows if t}
        with self._lock:
            self._cells, self._key, self._at = cells, key, time.monotonic()
            self.refreshes += 1
            self.last_refresh_s = time.perf_counter() - t0
        return self.last_refresh_s

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - a failed refresh leaves the cache stale (unused)
            pass

    def _start_refresh(self) -> None:
        with self._lock:
            now = time.monotonic()
            if (self._thread is not None and self._thread.is_alive()) or now - self._started < self.min_interval_s:
                return
            self._started = now
            self._thread = threading.Thread(target=self._refresh_quietly, name="postings-refresh", daemon=True)
            self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Waits for a background refresh in progress (tests, the bench's warm-up)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def candidates(self, category_ids: list[int] | None, statuses: list[str] | None,
                   max_stale_s: float = 0.0) -> tuple[np.ndarray | None, str]:
        """``(rowids passing the category and status filters, state)``; ``(None, why)`` while
        the cache is not current (a refresh is started then). ``max_stale_s > 0`` also accepts
        a cache read at most that long ago although the database changed since (objects that
        entered the filter since are missed; those that left it are dropped by the caller's
        SQLite filter)."""
        key = self._data_key()
        with self._lock:
            cells, cached, at = self._cells, self._key, self._at
        if cached != key:
            self._start_refresh()
            if cached is None:
                return None, "filter postings not loaded yet (loading in the background)"
            if not (max_stale_s > 0 and time.monotonic() - at <= max_stale_s):
                return None, "filter postings older than the last commit (refreshing in the background)"
        cats = None if category_ids is None else set(category_ids)
        sts = None if statuses is None else set(statuses)
        parts = [v for (c, s), v in cells.items() if (cats is None or c in cats) and (sts is None or s in sts)]
        out = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return out, "current" if cached == key else "stale"
