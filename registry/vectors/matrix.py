"""The exact vector store: one contiguous float32 matrix, memory-mapped, rows addressed by the
``objects`` table's SQLite rowid.

The query planner (:mod:`registry.search_planner`) scores filtered candidates here exactly and
re-ranks ANN candidates on the stored vectors. It mirrors the ``embeddings`` table of one
embedding version, like the ANN index, and is kept in step by the same outbox relay
(:func:`registry.outbox.sync`); it can always be rebuilt from SQLite.

Layout of a persistent matrix (a folder, ``<data>/matrix/<collection>/``):

* ``vectors.f32``: ``(capacity, dim)`` float32, C order, L2-normalised rows (cosine = dot).
* ``rowids.i64``: ``(capacity,)`` int64, the ``objects.rowid`` of each row.
* ``ids.bytes``: ``(capacity,)`` fixed ``S40``, the object id of each row (deletes name ids).
* ``bits.u64``: ``(capacity, ceil(dim / 64))`` uint64, the sign bits of each row
  (:mod:`registry.vectors.quantized`), written with the row; missing or of the wrong size at
  open (a matrix written before they existed), they are recomputed from ``vectors.f32``.
* ``matrix.json``: ``{"format", "dim", "rows", "capacity", "state"}``; ``state`` is ``"dirty"``
  while a write is in progress, so a crash mid-write is detected at open (then rebuild).

Rows ``0 .. rows-1`` are live and dense (a delete moves the last row into the hole). The
rowid → row map is a dense int32 array rebuilt in memory at open (-1 = no row). An in-memory
matrix (``folder=None``) has the same behaviour without files.

Every registry of a folder in one process shares one matrix (:func:`open_shared`), as they share
the index-writer lock and Chroma's client; its methods take the matrix's lock, so relays and
queries of different threads see whole writes.
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from registry.vectors import quantized

FORMAT = 1
BITS_FILE = "bits.u64"
ID_DTYPE = "S40"
MAX_ID_BYTES = 40


class MatrixCorruptError(RuntimeError):
    """The matrix files are missing, torn or inconsistent: rebuild from SQLite."""


class VectorMatrix:
    """A dense ``(rows, dim)`` float32 matrix of unit vectors keyed by SQLite rowid.

    Args:
        folder: where the files live; None keeps everything in memory.
        dim: vector length.
        capacity: rows allocated when the matrix is created (doubles when full).

    Raises:
        MatrixCorruptError: existing files that do not agree with each other or with ``dim``.
    """

    def __init__(self, folder: Path | None, dim: int, capacity: int = 1024) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.folder = None if folder is None else Path(folder)
        self.dim = dim
        self.rows = 0
        self.lock = threading.RLock()
        self._row_of = np.full(0, -1, dtype=np.int32)
        self._id_rows: dict[bytes, int] | None = None  # built on the first delete
        if self.folder is not None and (self.folder / "matrix.json").exists():
            self._load()
        else:
            self._create(max(int(capacity), 16))

    # -- storage -----------------------------------------------------------------------------
    def _files(self) -> tuple[Path, Path, Path, Path]:
        assert self.folder is not None
        f = self.folder
        return f / "vectors.f32", f / "rowids.i64", f / "ids.bytes", f / "matrix.json"

    def _map(self, capacity: int, mode: str) -> None:
        words = quantized.words_for(self.dim)
        if self.folder is None:
            self.vectors = np.zeros((capacity, self.dim), np.float32)
            self.rowids = np.zeros(capacity, np.int64)
            self.ids = np.zeros(capacity, ID_DTYPE)
            self.bits = np.zeros((capacity, words), np.uint64)
            return
        vec_f, rid_f, ids_f, _ = self._files()
        self.vectors = np.memmap(vec_f, np.float32, mode, shape=(capacity, self.dim))
        self.rowids = np.memmap(rid_f, np.int64, mode, shape=(capacity,))
        self.ids = np.memmap(ids_f, ID_DTYPE, mode, shape=(capacity,))
        self.bits = np.memmap(self.folder / BITS_FILE, np.uint64, mode, shape=(capacity, words))

    def _create(self, capacity: int) -> None:
        self.capacity = capacity
        self.rows = 0
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            for f in (*self._files()[:3], self.folder / BITS_FILE):
                f.unlink(missing_ok=True)
        self._map(capacity, "w+")
        self._row_of = np.full(0, -1, dtype=np.int32)
        self._id_rows = None
        self._write_header("clean")

    def _load(self) -> None:
        vec_f, rid_f, ids_f, head_f = self._files()
        try:
            head = json.loads(head_f.read_text())
            rows, cap, dim = int(head["rows"]), int(head["capacity"]), int(head["dim"])
            state, fmt = head["state"], int(head["format"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MatrixCorruptError(f"unreadable {head_f}: {exc}") from exc
        if fmt != FORMAT or dim != self.dim or state != "clean" or not 0 <= rows <= cap:
            raise MatrixCorruptError(
                f"{head_f}: expected format {FORMAT}, dim {self.dim}, state 'clean' and rows <= capacity, "
                f"got format {fmt}, dim {dim}, state {state!r}, rows {rows}, capacity {cap}"
            )
        sizes = {vec_f: cap * dim * 4, rid_f: cap * 8, ids_f: cap * MAX_ID_BYTES}
        for f, size in sizes.items():
            actual = f.stat().st_size if f.exists() else None
            if actual != size:
                raise MatrixCorruptError(f"{f}: expected {size} bytes for {cap} rows, got {actual}")
        self.capacity, self.rows = cap, rows
        bits_f = self.folder / BITS_FILE
        bits_size = cap * quantized.words_for(dim) * 8
        stale_bits = not bits_f.exists() or bits_f.stat().st_size != bits_size
        if stale_bits:
            with open(bits_f, "wb") as fh:
                fh.truncate(bits_size)
        self._map(cap, "r+")
        if stale_bits:
            self._write_header("dirty")
            for start in range(0, rows, 65_536):
                self.bits[start:min(rows, start + 65_536)] = quantized.encode(self.vectors[start:min(rows, start + 65_536)])
            self._flush()
            self._write_header("clean")
        self._index_rowids()

    def _write_header(self, state: str) -> None:
        if self.folder is None:
            return
        head = self._files()[3]
        tmp = head.with_name(f".tmp-{head.name}")
        tmp.write_text(json.dumps({"format": FORMAT, "dim": self.dim, "rows": self.rows,
                                   "capacity": self.capacity, "state": state}))
        os.replace(tmp, head)

    def _flush(self) -> None:
        if self.folder is not None:
            for arr in (self.vectors, self.rowids, self.ids, self.bits):
                arr.flush()

    def _index_rowids(self) -> None:
        live = self.rowids[: self.rows]
        size = int(live.max()) + 1 if self.rows else 0
        self._row_of = np.full(max(size, 1), -1, dtype=np.int32)
        if self.rows:
            self._row_of[live] = np.arange(self.rows, dtype=np.int32)
        self._id_rows = None

    def _grow(self, needed: int) -> None:
        if needed <= self.capacity:
            return
        new_cap = max(needed, 2 * self.capacity)
        if self.folder is None:
            old = (self.vectors, self.rowids, self.ids, self.bits)
            self._map(new_cap, "w+")
            for new, prev in zip((self.vectors, self.rowids, self.ids, self.bits), old, strict=True):
                new[: self.rows] = prev[: self.rows]
        else:
            self._flush()
            del self.vectors, self.rowids, self.ids, self.bits  # unmap before resizing the files
            vec_f, rid_f, ids_f, _ = self._files()
            for f, width in ((vec_f, self.dim * 4), (rid_f, 8), (ids_f, MAX_ID_BYTES),
                             (self.folder / BITS_FILE, quantized.words_for(self.dim) * 8)):
                with open(f, "r+b") as fh:
                    fh.truncate(new_cap * width)  # zero-filled growth
            self._map(new_cap, "r+")
        self.capacity = new_cap

    # -- writes --------------------------------------------------------------------------------
    def upsert(self, rowids: Sequence[int] | np.ndarray, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Inserts or replaces rows (see :meth:`_upsert`), under the matrix's lock."""
        with self.lock:
            self._upsert(rowids, ids, vectors)

    def _upsert(self, rowids: Sequence[int] | np.ndarray, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Inserts or replaces the rows of ``rowids`` (objects.rowid) with ``vectors``.

        Args:
            rowids: ``(n,)`` int SQLite rowids of the objects.
            ids: the ``n`` object ids (at most 40 ASCII bytes each).
            vectors: ``(n, dim)`` float32, need not be normalised (they are, before storing).

        Raises:
            ValueError: mismatched lengths, a wrong dimension, a zero vector or a too-long id.
        """
        rid = np.asarray(rowids, dtype=np.int64).reshape(-1)
        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape != (len(rid), self.dim) or len(ids) != len(rid):
            raise ValueError(
                f"expected {len(rid)} ids and vectors of shape ({len(rid)}, {self.dim}), "
                f"got {len(ids)} ids and shape {vecs.shape}"
            )
        if not len(rid):
            return
        raw_ids = [i.encode("ascii") for i in ids]
        long = [i for i in raw_ids if len(i) > MAX_ID_BYTES]
        if long:
            raise ValueError(f"expected object ids of at most {MAX_ID_BYTES} bytes, got {long[0]!r}")
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        if (norms == 0).any():
            raise ValueError("a vector is all zeros; cosine similarity is undefined for it")
        vecs = vecs / norms
        self._write_header("dirty")
        if int(rid.max()) >= len(self._row_of):
            grown = np.full(max(int(rid.max()) + 1, 2 * len(self._row_of)), -1, dtype=np.int32)
            grown[: len(self._row_of)] = self._row_of
            self._row_of = grown
        rows = self._row_of[rid].copy()
        # Rowids given twice in one call: the last vector wins (rows are written in order).
        new_mask = rows < 0
        new_rid = rid[new_mask]
        uniq, first = np.unique(new_rid, return_index=True)
        self._grow(self.rows + len(uniq))
        fresh = np.arange(self.rows, self.rows + len(uniq), dtype=np.int32)
        self._row_of[uniq[np.argsort(first)]] = fresh
        self.rows += len(uniq)
        rows = self._row_of[rid]
        if self._id_rows is not None and not new_mask.all():
            # A rowid SQLite reused for a new object: its old id no longer names this row.
            for r in rows[~new_mask].tolist():
                self._id_rows.pop(bytes(self.ids[r]), None)
        self.vectors[rows] = vecs
        self.bits[rows] = quantized.encode(vecs)
        self.rowids[rows] = rid
        self.ids[rows] = np.asarray(raw_ids, dtype=ID_DTYPE)
        if self._id_rows is not None:
            for r, i in zip(rows.tolist(), raw_ids, strict=True):
                self._id_rows[i] = r
        self._flush()
        self._write_header("clean")

    def delete(self, ids: Sequence[str]) -> int:
        """Removes the rows of these object ids (unknown ids are ignored); returns how many."""
        with self.lock:
            return self._delete(ids)

    def _delete(self, ids: Sequence[str]) -> int:
        if not ids or not self.rows:
            return 0
        if self._id_rows is None:
            self._id_rows = {bytes(b): r for r, b in enumerate(self.ids[: self.rows].tolist())}
        self._write_header("dirty")
        removed = 0
        for oid in ids:
            row = self._id_rows.pop(oid.encode("ascii"), None)
            if row is None:
                continue
            removed += 1
            last = self.rows - 1
            self._row_of[self.rowids[row]] = -1
            if row != last:  # move the last row into the hole: rows stay dense
                self.vectors[row] = self.vectors[last]
                self.bits[row] = self.bits[last]
                self.rowids[row] = self.rowids[last]
                self.ids[row] = self.ids[last]
                self._row_of[self.rowids[row]] = row
                self._id_rows[bytes(self.ids[row])] = row
            self.rows = last
        self._flush()
        self._write_header("clean")
        return removed

    def reset(self) -> None:
        """Drops every row (the files shrink back to a small capacity)."""
        with self.lock:
            self._close_maps()
            self._create(1024)

    # -- reads ---------------------------------------------------------------------------------
    @property
    def row_of(self) -> np.ndarray:
        """rowid -> matrix row (int32, -1 = none); read it under :attr:`lock`."""
        return self._row_of

    def rows_for(self, rowids: np.ndarray) -> np.ndarray:
        """The matrix row of each rowid, ``-1`` where the matrix holds none (int32)."""
        rid = np.asarray(rowids, dtype=np.int64)
        out = np.full(rid.shape, -1, dtype=np.int32)
        ok = (rid >= 0) & (rid < len(self._row_of))
        out[ok] = self._row_of[rid[ok]]
        return out

    def scores(self, query: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Cosine similarity of the unit ``query`` ``(dim,)`` to ``rows`` (all rows when None)."""
        if rows is None:
            return self.vectors[: self.rows] @ query
        rows = np.asarray(rows, dtype=np.int64)
        # np.take on the underlying ndarray: no memmap subclass bookkeeping per call.
        return np.take(np.asarray(self.vectors), rows, axis=0) @ query

    def score_rowids(self, query: np.ndarray, rowids: np.ndarray) -> np.ndarray:
        """Cosine of the unit ``query`` to the rows of ``rowids`` (float32, NaN where the
        matrix holds no row), read under the lock."""
        with self.lock:
            rows = self.rows_for(rowids)
            out = np.full(rows.shape, np.nan, dtype=np.float32)
            ok = rows >= 0
            if ok.any():
                out[ok] = self.scores(query, rows[ok])
            return out

    def top_rowids(self, query: np.ndarray, rowids: np.ndarray, n: int) -> tuple[list[str], np.ndarray]:
        """``(object ids, cosines)`` of the ``n`` rows of ``rowids`` nearest to the unit ``query``
        (any order; rowids without a row are skipped), read under the lock."""
        with self.lock:
            rows = self.rows_for(rowids)
            rows = np.sort(rows[rows >= 0])  # gather in file order: sequential reads
            if rows.size == 0:
                return [], np.zeros(0, np.float32)
            sims = self.scores(query, rows)
            top = np.argpartition(-sims, n - 1)[:n] if n < sims.size else np.arange(sims.size)
            return self.ids_at(rows[top]), sims[top]

    def ids_at(self, rows: np.ndarray) -> list[str]:
        """The object ids of ``rows``."""
        return [b.decode("ascii") for b in self.ids[np.asarray(rows, dtype=np.int64)].tolist()]

    def check(self, sample_rows: int = 0) -> str | None:
        """A problem with the in-memory maps (duplicate or out-of-range rowids), or None."""
        live = self.rowids[: self.rows]
        if self.rows and (live.min() < 0 or len(np.unique(live)) != self.rows):
            return "the matrix holds a rowid twice or a negative rowid"
        return None

    # -- lifecycle -----------------------------------------------------------------------------
    def _close_maps(self) -> None:
        self._flush()
        for name in ("vectors", "rowids", "ids", "bits"):
            if hasattr(self, name):
                delattr(self, name)

    def close(self) -> None:
        """Flushes and unmaps the files; the object is unusable afterwards."""
        if hasattr(self, "vectors"):
            self._close_maps()


_SHARED: dict[str, list] = {}  # resolved folder -> [matrix, open count]
_SHARED_LOCK = threading.Lock()


def open_shared(folder: Path, dim: int) -> tuple[VectorMatrix, bool]:
    """This process's matrix of ``folder`` (opened on first use, counted); returns it and whether
    this call opened it (so the caller fills a new one).

    Raises:
        MatrixCorruptError: see :class:`VectorMatrix` (nothing is counted then).
    """
    key = str(Path(folder).resolve())
    with _SHARED_LOCK:
        held = _SHARED.get(key)
        if held is not None:
            if held[0].dim != dim:
                raise ValueError(f"the matrix at {folder} holds {held[0].dim}-d vectors, got dim={dim}")
            held[1] += 1
            return held[0], False
        m = VectorMatrix(Path(folder), dim)
        _SHARED[key] = [m, 1]
        return m, True


def release_shared(matrix: VectorMatrix) -> None:
    """One :func:`open_shared` fewer; the last closes the matrix. In-memory ones just close."""
    if matrix.folder is None:
        matrix.close()
        return
    key = str(matrix.folder.resolve())
    with _SHARED_LOCK:
        held = _SHARED.get(key)
        if held is None or held[0] is not matrix:
            matrix.close()
            return
        held[1] -= 1
        if held[1] <= 0:
            del _SHARED[key]
            with matrix.lock:
                matrix.close()


def remove_files(folder: Path) -> None:
    """Deletes a matrix folder's files (before a rebuild from SQLite)."""
    for name in ("vectors.f32", "rowids.i64", "ids.bytes", BITS_FILE, "matrix.json", ".tmp-matrix.json"):
        (Path(folder) / name).unlink(missing_ok=True)
