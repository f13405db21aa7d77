"""The filter postings of the quantized path: each ``(category_id, validation_status)`` cell's
rowids, and their sign bits laid out cell by cell.

:class:`Postings` reads the rowids of every cell of ``objects`` from SQLite's covering index in
one ``GROUP BY`` with ``group_concat`` and keeps them in memory. Reading 50k rowids from SQLite
per query costs ~6-8 ms (and 31 ms for a third of 1M), more than the scan itself, hence the
cache. It is keyed by ``PRAGMA data_version`` + ``total_changes`` like the planner's counts and,
by default, used only while that key is unchanged (no commit since it was read): otherwise a
refresh starts in a background thread and the query takes another path meanwhile. Results of
this path are filtered on the SQLite rows all the same (see :func:`registry.search._quantized`).

Given the matrix, a refresh also copies the cells' sign bits into one **slab**, cell after cell
(:class:`Slab`: 96 bytes a row at 768 dims, the size of the matrix's own ``bits.u64``), so a
filter's candidates are a few contiguous ranges read in order instead of rows gathered one by
one through ``row_of`` (a third of 1M: 33.7 ms gathered, the bound of the status filter). The
slab holds rowids, not matrix rows: a row moved by a delete since is found through the current
``row_of`` when the picked candidates are re-scored. Every matrix write comes with a commit (the
relay marks its outbox rows done after writing), so bits copied before the key changed are
never used after it.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from registry.db import Connection

Cell = tuple[int, str]

# Rows copied into the slab per hold of the matrix lock (the relay's writes wait between).
SLAB_CHUNK = 65_536


@dataclass
class Slab:
    """Sign bits of the cells' rowids that had a matrix row at the refresh, cell after cell."""

    rowids: np.ndarray  # (T,) int64
    bits: np.ndarray  # (T, words) uint64
    spans: dict[Cell, tuple[int, int]]  # cell -> [lo, hi) in rowids/bits

    def ranges(self, cells: list[Cell]) -> list[tuple[int, int]]:
        """The slab ranges of ``cells`` (sorted), adjacent ones merged (one category, every status)."""
        out: list[tuple[int, int]] = []
        for c in cells:
            lo, hi = self.spans.get(c, (0, 0))
            if out and out[-1][1] == lo:
                out[-1] = (out[-1][0], hi)
            elif hi > lo:
                out.append((lo, hi))
        return out


@dataclass
class Selection:
    """A filter's candidates: its cells' rowids, and their slab ranges when a slab exists."""

    cells: list[np.ndarray]
    slab: Slab | None
    ranges: list[tuple[int, int]]
    count: int

    def __len__(self) -> int:
        return self.count

    def rowids(self) -> np.ndarray:
        """Every candidate rowid (concatenated on demand)."""
        return np.concatenate(self.cells) if self.cells else np.zeros(0, np.int64)


def build_slab(matrix: Any, cells: dict[Cell, np.ndarray]) -> Slab:
    """The sign bits of ``cells``' rowids copied out of ``matrix`` (rowids without a row left out)."""
    order = sorted(cells)
    total = sum(len(cells[c]) for c in order)
    words = int(matrix.bits.shape[1])
    rowids = np.empty(total, np.int64)
    bits = np.empty((total, words), np.uint64)
    spans: dict[Cell, tuple[int, int]] = {}
    at = 0
    for cell in order:
        lo = at
        ids = cells[cell]
        for start in range(0, len(ids), SLAB_CHUNK):
            part = ids[start:start + SLAB_CHUNK]
            with matrix.lock:  # bits and row_of are read together (a resize swaps both)
                rows = matrix.rows_for(part)
                ok = rows >= 0
                n = int(ok.sum())
                np.take(np.asarray(matrix.bits), rows[ok].astype(np.int64), axis=0, out=bits[at:at + n])
            rowids[at:at + n] = part[ok]
            at += n
        spans[cell] = (lo, at)
    return Slab(rowids=rowids[:at], bits=bits[:at], spans=spans)


class Postings:
    """The rowids of every ``(category_id, validation_status)`` cell of ``objects``, cached.

    Args:
        conn: the registry connection (its data key; the reads go through a second connection
            in a background thread, or through ``conn`` for an in-memory database).
        min_interval_s: background refreshes start at most this often (a burst of writes).
        matrix: the exact matrix whose sign bits each refresh copies into the :class:`Slab`
            (None: no slab; the scan then gathers each candidate's bits from the matrix).
    """

    def __init__(self, conn: Connection, min_interval_s: float = 1.0, matrix: Any = None) -> None:
        self.conn = conn
        self.min_interval_s = float(min_interval_s)
        self.matrix = matrix
        self._lock = threading.Lock()
        self._cells: dict[Cell, np.ndarray] = {}
        self._slab: Slab | None = None
        self._key: tuple[int, int] | None = None
        self._at = 0.0  # monotonic time of the read
        self._started = -1e9
        self._thread: threading.Thread | None = None
        self.refreshes = 0
        self.last_refresh_s = 0.0
        self.last_slab_s = 0.0

    def _data_key(self) -> tuple[int, int]:
        with self.conn.lock:
            version = self.conn.conn.execute("PRAGMA data_version").fetchone()[0]
            return int(version), int(self.conn.conn.total_changes)

    def refresh(self) -> float:
        """Reads the cells now (the key first: a commit racing the read only makes the cache
        look stale, never current with old rows), then copies their bits into the slab;
        returns the seconds it took."""
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
        t1 = time.perf_counter()
        slab = None if self.matrix is None else build_slab(self.matrix, cells)
        with self._lock:
            self._cells, self._slab, self._key, self._at = cells, slab, key, time.monotonic()
            self.refreshes += 1
            self.last_refresh_s = time.perf_counter() - t0
            self.last_slab_s = time.perf_counter() - t1 if slab is not None else 0.0
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

    def select(self, category_ids: list[int] | None, statuses: list[str] | None,
               max_stale_s: float = 0.0) -> tuple[Selection | None, str]:
        """``(the candidates passing the category and status filters, state)``; ``(None, why)``
        while the cache is not current (a refresh is started then). ``max_stale_s > 0`` also
        accepts a cache read at most that long ago although the database changed since
        (objects that entered the filter since are missed; those that left it are dropped by
        the caller's SQLite filter). A stale cache's slab is not used: its bits may predate the
        relay's last writes."""
        key = self._data_key()
        with self._lock:
            cells, slab, cached, at = self._cells, self._slab, self._key, self._at
        if cached != key:
            self._start_refresh()
            if cached is None:
                return None, "filter postings not loaded yet (loading in the background)"
            if not (max_stale_s > 0 and time.monotonic() - at <= max_stale_s):
                return None, "filter postings older than the last commit (refreshing in the background)"
            slab = None
        cats = None if category_ids is None else set(category_ids)
        sts = None if statuses is None else set(statuses)
        chosen = sorted(c for c in cells if (cats is None or c[0] in cats) and (sts is None or c[1] in sts))
        parts = [cells[c] for c in chosen]
        ranges = [] if slab is None else slab.ranges(chosen)
        sel = Selection(cells=parts, slab=slab, ranges=ranges, count=sum(len(p) for p in parts))
        return sel, "current" if cached == key else "stale"

    def candidates(self, category_ids: list[int] | None, statuses: list[str] | None,
                   max_stale_s: float = 0.0) -> tuple[np.ndarray | None, str]:
        """:meth:`select`'s candidates as one rowid array (or ``None``, why)."""
        sel, state = self.select(category_ids, statuses, max_stale_s)
        return (None, state) if sel is None else (sel.rowids(), state)
