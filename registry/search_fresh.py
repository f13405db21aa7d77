"""The fresh segment: vectors committed to SQLite but not yet relayed into the ANN index and the
matrix, scanned exactly beside them (as Milvus's growing segments and Qdrant's unindexed
points are), so an object is searchable as soon as it commits.

The fresh objects are those with ``pending`` or ``failed`` outbox rows of the embedding version.
Their vectors are cached in memory (unit float32 rows) and the cache is keyed by
``(count, min id, max id)`` of the unrelayed outbox rows: a query costs one range count over
``idx_outbox_status`` while nothing changed; new rows are appended (only rows past the cached
max id are read), and a relay (rows leaving ``pending``) reloads it. Scoring ranks every fresh
vector, then asks SQLite which of the best pass the filter (doubling until enough do), so the
filter stays authoritative and deleted objects drop out.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from registry.db import Connection

MAX_FRESH = 200_000
"""Above this many unrelayed outbox rows (a bulk import racing the relay) the segment is not
loaded (it would hold ``MAX_FRESH · dim · 4`` bytes): those objects become searchable when the
relay reaches them, and the plan's ``reason`` says so."""


class FreshSegment:
    """The in-memory cache of one registry's fresh vectors (see the module docstring)."""

    def __init__(self, version: str, max_rows: int = MAX_FRESH) -> None:
        self.version = version
        self.max_rows = int(max_rows)
        self.overflow = 0  # unrelayed rows when they exceed max_rows (the segment is skipped)
        self._lock = threading.Lock()
        self._key: tuple[int, int | None, int | None] | None = None
        self._clear()

    def _clear(self) -> None:
        self.id_set: set[str] = set()
        self._pos: dict[str, int] = {}
        self._vecs = np.zeros((0, 0), np.float32)
        self._n = 0
        self.rowids: set[int] = set()

    def _read(self, conn: Connection, after: int) -> None:
        with conn.lock:
            oids = [r[0] for r in conn.conn.execute(
                "SELECT object_id FROM embedding_outbox WHERE status IN ('pending', 'failed') AND version_id = ? "
                "AND id > ? ORDER BY id", (self.version, after)).fetchall()]
        # Copy on write: a query may be reading the current sets without the lock.
        self.id_set = self.id_set | set(oids)
        self.rowids = set(self.rowids)
        todo = list(dict.fromkeys(oids))
        for start in range(0, len(todo), 10_000):
            part = todo[start:start + 10_000]
            with conn.lock:
                rows = conn.conn.execute(
                    f"SELECT e.object_id, e.vector, o.rowid FROM embeddings e JOIN objects o "
                    f"ON o.object_id = e.object_id WHERE e.version_id = ? AND e.object_id IN "
                    f"({','.join('?' * len(part))})", [self.version, *part]).fetchall()
            if not rows:
                continue
            mat = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1)
            mat = mat / np.linalg.norm(mat, axis=1, keepdims=True)
            if self._vecs.shape[1] != mat.shape[1]:
                self._vecs = np.zeros((0, mat.shape[1]), np.float32)
            self.rowids.update(r[2] for r in rows)
            positions = []
            for r in rows:  # known ids keep their slot (a newer vector replaces the old one)
                pos = self._pos.get(r[0])
                if pos is None:
                    pos = self._pos[r[0]] = self._n
                    self._n += 1
                positions.append(pos)
            if self._n > len(self._vecs):
                grown = np.zeros((max(16, 2 * self._n), mat.shape[1]), np.float32)
                grown[: len(self._vecs)] = self._vecs
                self._vecs = grown
            self._vecs[np.asarray(positions, np.int64)] = mat

    def refresh(self, conn: Connection) -> None:
        """Brings the cache in step with the outbox (cheap when nothing changed)."""
        with conn.lock:
            # Every version's rows: the key only detects change, and without the version term
            # the count is answered from idx_outbox_status alone (no table lookups).
            key = tuple(conn.conn.execute(
                "SELECT count(*), min(id), max(id) FROM embedding_outbox "
                "WHERE status IN ('pending', 'failed')").fetchone())
        with self._lock:
            if key == self._key:
                return
            old = self._key
            self.overflow = int(key[0]) if key[0] > self.max_rows else 0
            if self.overflow:
                self._clear()
                self._key = key  # type: ignore[assignment]
                return
            if old is not None and key[0] > old[0] and key[1] == old[1] and old[2] is not None:
                self._read(conn, int(old[2]))  # only new rows since: append
            else:
                self._clear()
                if key[0]:
                    self._read(conn, 0)
            self._key = key  # type: ignore[assignment]

    def search(self, conn: Connection, q: np.ndarray, where_sql: str, params: list, need: int) -> dict[str, Any]:
        """``{"ids", "rowids", "hits"}``: every fresh id, their rowids (to leave out of the
        matrix) and the best ``need`` fresh objects passing the filter, scored exactly."""
        self.refresh(conn)
        with self._lock:
            ids, n = list(self._pos), self._n
            vecs = self._vecs[:n]
            id_set, rowids = self.id_set, self.rowids  # replaced, never mutated (copy on write)
        out: dict[str, Any] = {"ids": id_set, "rowids": rowids, "hits": []}
        if not n:
            return out
        sims = vecs @ q
        head = 8 * max(int(need), 1)  # the best few first; a full sort only when they do not suffice
        if n > head:
            top = np.argpartition(-sims, head - 1)[:head]
            order = top[np.argsort(-sims[top], kind="stable")]
        else:
            order = np.argsort(-sims, kind="stable")
        take = max(int(need), 1)
        start = 0
        seen: set[str] = set()
        while start < n and len(out["hits"]) < need:
            if start >= len(order):  # the head ran out of survivors: rank everything
                order = np.argsort(-sims, kind="stable")
            chunk = order[start:start + take]
            cand = [ids[i] for i in chunk]
            with conn.lock:  # the filter as a column: ids looked up by primary key (see search._ann)
                keep = {r[0] for r in conn.conn.execute(
                    f"SELECT o.object_id, CASE WHEN {where_sql} THEN 1 ELSE 0 END FROM objects o "
                    f"WHERE o.object_id IN ({','.join('?' * len(cand))})", [*params, *cand]).fetchall() if r[1]}
            keep -= seen  # the switch to the full order may repeat a tie at the boundary
            seen |= keep
            out["hits"] += [{"object_id": ids[i], "rowid": None, "ann": None, "exact": float(sims[i])}
                            for i in chunk if ids[i] in keep]
            start += len(chunk)
            take = min(2 * take, 10_000)  # below SQLite's bound-parameter limit
        return out
