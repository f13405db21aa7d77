"""The vector index of one data folder: opening it (probed), the writer lock, the outbox relay,
the exact matrix beside it, and the rebuild from SQLite.

SQLite is the source of truth; the index only mirrors the ``embeddings`` table of one
embedding version, fed through the outbox (:mod:`registry.outbox`). A persistent index has one
writer process per data folder (:mod:`registry.index_lock`); other processes only fill the
outbox. Vectors are ``(embedding_dim,)`` float32.

Beside the ANN index the writer keeps the exact matrix (:mod:`registry.vectors.matrix`,
``<data>/matrix/<collection>/`` for persistent kinds, in memory otherwise): the same vectors in
one float32 memory map, relayed by the same outbox batches, used by the query planner for exact
scoring and re-ranking. Missing or torn matrix files are rebuilt from SQLite when opened.
"""
from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np

from registry import index_lock, outbox
from registry.db import Connection
from registry.ids import utc_now
from registry.search_planner import PlannerConfig

log = logging.getLogger(__name__)

SHARED_INDEX_KINDS = ("chroma", "hnsw")  # on disk, one writer process per data folder


class IndexHandle:
    """Opens, relays to and rebuilds the vector index of one data folder.

    Args:
        spec: "chroma", "exact", "hnsw", or a VectorIndex instance (``add``/``delete``/``query``/
            ``count``/``ids``/``reset``).
        conn: the registry's connection (outbox and embeddings are read through it).
        data_dir: the data folder (the index lives under it; the writer lock too).
        embedding_dim: length of the vectors.
        embedding_version: names the embedding model; one index collection per version.
        sync_on_write: :meth:`after_write` relays the outbox (else the caller syncs).

    Attributes:
        recovery: set when a damaged index was moved aside and rebuilt (what happened).
        repair_on_open: False: a damaged index raises instead (doctor's checks).
    """

    def __init__(
        self, spec: Any, conn: Connection, data_dir: Path, embedding_dim: int, embedding_version: str,
        *, sync_on_write: bool = True,
    ) -> None:
        self.spec = spec
        self.conn = conn
        self.data_dir = data_dir
        self.embedding_dim = embedding_dim
        self.embedding_version = embedding_version
        self.sync_on_write = sync_on_write
        self._index: Any = None if isinstance(spec, str) else spec
        self._index_lock = threading.Lock()
        self._sync_lock = threading.RLock()  # reentrant: opening a damaged index rebuilds it
        self._writer = False  # holds the folder's index-writer lock (registry.index_lock)
        self.recovery: dict | None = None
        self.repair_on_open = True
        self._matrix: Any = None
        self._matrix_lock = threading.Lock()
        self.matrix_recovery: str | None = None  # why the matrix was rebuilt at open, if it was
        self.planner = PlannerConfig()  # the query planner's knobs (registry.search_planner)
        self.cardinality: Any = None  # its cached counts, made by the first search
        self.fresh: Any = None  # the fresh segment's cache (registry.search_fresh), idem
        self.postings: Any = None  # the quantized path's filter postings (registry.vectors.quantized), idem

    @property
    def is_open(self) -> bool:
        """Whether the index object exists already (opening a Chroma folder probes it first)."""
        return self._index is not None

    @property
    def index(self) -> Any:
        """The vector index, opened on first use.

        A Chroma folder not known to be clean is probed in a child process first
        (:mod:`registry.vectors.probe`), so damaged HNSW files cannot crash this process. When
        the probe fails, the index writer moves the folder aside (``chroma.corrupt-<time>``),
        rebuilds the index from SQLite and records what happened in ``recovery``; other
        processes get a ``RuntimeError`` saying so.
        """
        recovered = None
        with self._index_lock:
            if self._index is None:
                from registry.vectors.probe import open_index_checked

                may_repair = self.repair_on_open and self.is_writer
                self._index, recovered = open_index_checked(
                    self.spec, self.data_dir, self.embedding_version, self.embedding_dim,
                    may_repair=may_repair,
                )
            index = self._index
        if recovered is not None:
            log.warning("vector index at %s was damaged (%s); moved it to %s, rebuilding from SQLite",
                        self.data_dir / "chroma", recovered["error"], recovered["moved_to"])
            self.recovery = recovered
            recovered["rebuilt"] = self.rebuild()
        return index

    def reopen(self) -> Any:
        """Drops the open index (e.g. after its folder was deleted) and opens it again."""
        with self._index_lock:
            old, self._index = self._index, None if isinstance(self.spec, str) else self.spec
        close = getattr(old, "close", None)
        if callable(close) and old is not self._index:
            with contextlib.suppress(Exception):
                close()
        return self.index

    @property
    def is_writer(self) -> bool:
        """Whether this process may write the vector index (see :mod:`registry.index_lock`).

        A persistent index named by kind ("chroma", "hnsw") has one writer process per data
        folder: the first registry to ask takes the cross-process lock (non-blocking) and keeps
        it until it closes; registries of other processes only fill the outbox. In-memory
        indexes and index objects passed in are private to this process: always True.
        """
        if self.spec not in SHARED_INDEX_KINDS:
            return True
        if not self._writer:
            self._writer = index_lock.acquire(self.data_dir)
            if self._writer and self._index is not None:
                # Opened while another process wrote: load the files afresh before writing.
                self.reopen()
        return self._writer

    @property
    def matrix_dir(self) -> Path | None:
        """``<data>/matrix/<collection>`` for persistent index kinds, None (in memory) otherwise."""
        if self.spec not in SHARED_INDEX_KINDS:
            return None
        from registry.vectors.chroma_index import collection_name_for

        return Path(self.data_dir) / "matrix" / collection_name_for(self.embedding_version)

    @property
    def matrix(self) -> Any:
        """The exact matrix (:class:`registry.vectors.matrix.VectorMatrix`), or None in a process
        that is not the index writer (it would read files another process is writing).

        Opened on first use; missing files (while SQLite holds embeddings), torn or inconsistent
        ones are rebuilt from the ``embeddings`` table, and ``matrix_recovery`` says why.
        """
        if self._matrix is not None:
            return self._matrix
        if not self.is_writer:
            return None
        with self._sync_lock, self._matrix_lock:
            if self._matrix is None:
                from registry.vectors.matrix import (
                    MatrixCorruptError,
                    VectorMatrix,
                    open_shared,
                    remove_files,
                )

                folder = self.matrix_dir
                if folder is None:
                    m, fresh = VectorMatrix(None, self.embedding_dim), True
                else:
                    # One matrix per folder and process, shared by its registries (as the lock is).
                    missing = not (folder / "matrix.json").exists()
                    try:
                        m, opened = open_shared(folder, self.embedding_dim)
                    except MatrixCorruptError as exc:
                        log.warning("exact matrix at %s is damaged (%s); rebuilding it from SQLite", folder, exc)
                        self.matrix_recovery = str(exc)
                        remove_files(folder)
                        (m, opened), missing = open_shared(folder, self.embedding_dim), True
                    fresh = opened and missing
                if fresh and self._embedding_count():
                    # Missing although vectors were relayed before (a persistent matrix would
                    # hold them): say so. In memory, or before any relay, filling is routine.
                    if folder is not None and self.conn.scalar(
                            "SELECT EXISTS (SELECT 1 FROM embedding_outbox WHERE status = 'synced' AND version_id = ?)",
                            (self.embedding_version,)):
                        self.matrix_recovery = self.matrix_recovery or "missing; rebuilt from SQLite"
                    self._fill_matrix(m)
                self._matrix = m
        return self._matrix

    def _embedding_count(self) -> int:
        return int(self.conn.scalar("SELECT count(*) FROM embeddings WHERE version_id = ?", (self.embedding_version,)))

    def _fill_matrix(self, m: Any, batch_size: int = 5000) -> int:
        """Loads every stored vector of this version into the empty matrix ``m``; returns how many."""
        snap = sqlite3.connect(str(self.conn.path), timeout=60)
        try:
            cur = snap.execute(
                "SELECT o.rowid, e.object_id, e.dim, e.vector FROM embeddings e "
                "JOIN objects o ON o.object_id = e.object_id WHERE e.version_id = ?",
                (self.embedding_version,),
            )
            n = 0
            while chunk := cur.fetchmany(batch_size):
                m.upsert([r[0] for r in chunk], [r[1] for r in chunk],
                         np.stack([outbox.vector_from_blob(r[3], r[2]) for r in chunk]))
                n += len(chunk)
            return n
        finally:
            snap.close()

    def rebuild_matrix(self) -> int:
        """Rebuilds the exact matrix alone from the ``embeddings`` table; returns its rows."""
        with self._sync_lock:
            if not self.is_writer:
                raise RuntimeError(index_lock.not_writer_message(self.data_dir, "rebuild the exact matrix"))
            m = self.matrix
            m.reset()
            return self._fill_matrix(m)

    def close(self) -> None:
        """Closes the index and the matrix and gives the writer lock back."""
        if self._matrix is not None:
            from registry.vectors.matrix import release_shared

            with contextlib.suppress(Exception):
                release_shared(self._matrix)
            self._matrix = None
        close = getattr(self._index, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()
        if self._writer:
            self._writer = False
            index_lock.release(self.data_dir)

    def sync_outbox(self, batch_size: int = 512) -> dict:
        """Relays pending outbox rows to the index: ``{"synced", "failed", "pending"}``.

        Only the index-writer process relays (:attr:`is_writer`); elsewhere nothing is
        relayed and the result also holds ``"writer_pid"`` (the holder, when known).
        """
        with self._sync_lock:
            if not self.is_writer:
                return {"synced": 0, "failed": 0, "pending": outbox.pending_count(self.conn, self.embedding_version),
                        "writer_pid": index_lock.holder_pid(self.data_dir)}
            return outbox.sync(self.conn, self.index, self.embedding_version, batch_size=batch_size,
                               matrix=self.matrix)

    def after_write(self) -> None:
        """Called after a write that queued vectors: relays them when ``sync_on_write``."""
        if self.sync_on_write:
            self.sync_quietly()

    def sync_quietly(self) -> None:
        """:meth:`sync_outbox`, logging instead of raising."""
        # The outbox keeps what failed; a failing or missing index must never fail a write.
        try:
            self.sync_outbox()
        except Exception as exc:  # noqa: BLE001 - logged, retried at the next sync
            log.warning("vector index sync failed (will retry): %s", exc)

    def rebuild(self, batch_size: int = 1000) -> int:
        """Rebuilds the index from the ``embeddings`` table; returns the number of vectors.

        Reads a consistent snapshot on a separate connection (writers are not blocked); outbox
        rows older than the snapshot are marked synced, newer ones are relayed afterwards.
        """
        with self._sync_lock:
            if not self.is_writer:
                raise RuntimeError(index_lock.not_writer_message(self.data_dir, "rebuild the vector index"))
            index = self.index
            index.reset()
            matrix = self.matrix
            matrix.reset()
            snap = sqlite3.connect(str(self.conn.path), timeout=60)
            try:
                snap.execute("BEGIN")
                max_id = snap.execute("SELECT coalesce(max(id), 0) FROM embedding_outbox").fetchone()[0]
                cur = snap.execute(
                    """SELECT o.rowid AS rowid, e.object_id, e.dim, e.vector, c.name AS category, o.project_id,
                              o.confidence, o.validation_status
                       FROM embeddings e JOIN objects o ON o.object_id = e.object_id
                       JOIN categories c ON c.category_id = o.category_id
                       WHERE e.version_id = ?""",
                    (self.embedding_version,),
                )
                cols = [c[0] for c in cur.description]
                n = 0
                while True:
                    chunk = cur.fetchmany(batch_size)
                    if not chunk:
                        break
                    rows = [dict(zip(cols, r, strict=False)) for r in chunk]
                    ids = [r["object_id"] for r in rows]
                    vecs = np.stack([outbox.vector_from_blob(r["vector"], r["dim"]) for r in rows])
                    index.add(ids, vecs, [outbox.index_metadata(r) for r in rows])
                    matrix.upsert([r["rowid"] for r in rows], ids, vecs)
                    n += len(rows)
                snap.execute("COMMIT")
            finally:
                snap.close()
            with self.conn.transaction() as tx:
                tx.execute(
                    "UPDATE embedding_outbox SET status = 'synced', synced_at = ?, error_message = NULL "
                    "WHERE id <= ? AND version_id = ? AND status <> 'synced'",
                    (utc_now(), max_id, self.embedding_version),
                )
        self.after_write()
        return n
