"""Relays ``embedding_outbox`` rows into a vector index: idempotent, batched, retried.

An outbox row says "make the index agree with SQLite for this object": ``upsert`` reads the
object's current vector from ``embeddings`` and its current metadata from ``objects`` at relay
time (so a later change always wins), ``delete`` removes the id. Both are idempotent, so a row
relayed twice (e.g. after a crash between the index write and the status update) does no harm.

A failing index never blocks registration: the rows stay ``pending`` with ``retry_count``
incremented and ``error_message`` set; after :data:`MAX_RETRIES` failures they become
``failed`` and wait for ``doctor --repair`` (which resets them and, if needed, rebuilds).
"""
from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

import numpy as np

from registry.db import Connection
from registry.ids import utc_now

log = logging.getLogger(__name__)

MAX_RETRIES = 3


def index_metadata(row: dict[str, Any]) -> dict[str, Any]:
    """The filterable metadata stored beside a vector (registry.vectors.METADATA_KEYS).

    Keys: ``category`` (the category's current name), ``project`` (str or None),
    ``confidence`` (float in [0, 1] or None), ``validation_status``.
    """
    return _metadata(row["category"], row.get("project_id"), row.get("confidence"), row.get("validation_status"))


def _metadata(category: str, project: str | None, confidence: float | None, status: str | None) -> dict[str, Any]:
    return {
        "category": category,
        "project": project,
        "confidence": float(confidence) if confidence is not None else None,
        "validation_status": status or "pending",
    }


def vector_from_blob(blob: bytes, dim: int) -> np.ndarray:
    vec = np.frombuffer(blob, dtype="<f4")
    if vec.size != dim:
        raise ValueError(f"expected a stored embedding of {dim} values, got {vec.size}")
    return vec


def fetch_vectors(conn: Connection, object_ids: list[str], version: str) -> dict[str, tuple[np.ndarray, dict]]:
    """``object_id -> (vector float32 (dim,), metadata)`` for the ids that still have embeddings."""
    ids, vectors, metas = fetch_batch(conn, object_ids, version)
    return {oid: (vectors[k], metas[k]) for k, oid in enumerate(ids)}


def fetch_batch(
    conn: Connection, object_ids: list[str], version: str, *, chunk: int = 30_000
) -> tuple[list[str], np.ndarray, list[dict]]:
    """The ids that still have embeddings, their vectors ``(n, dim)`` float32 and metadata
    (:func:`fetch_rows` without the rowids)."""
    _, ids, vectors, metas = fetch_rows(conn, object_ids, version, chunk=chunk)
    return ids, vectors, metas


def fetch_rows(
    conn: Connection, object_ids: list[str], version: str, *, chunk: int = 30_000
) -> tuple[np.ndarray, list[str], np.ndarray, list[dict]]:
    """``(objects.rowid (n,) int64, ids, vectors (n, dim) float32, metadata)`` of the ids that
    still have embeddings.

    One query per ``chunk`` ids (below SQLite's 32,766 bound parameters), rows read as tuples,
    and the vectors turned into one array from the concatenated blobs.

    Raises:
        ValueError: a stored blob does not hold ``dim`` float32 values.
    """
    rowids: list[int] = []
    ids: list[str] = []
    blobs: list[bytes] = []
    dims: set[int] = set()
    metas: list[dict] = []
    for start in range(0, len(object_ids), chunk):
        part = object_ids[start:start + chunk]
        marks = ",".join("?" * len(part))
        with conn.lock:
            rows = conn.conn.execute(
                f"""SELECT o.rowid, e.object_id, e.dim, e.vector, c.name, o.project_id, o.confidence,
                           o.validation_status
                    FROM embeddings e JOIN objects o ON o.object_id = e.object_id
                    JOIN categories c ON c.category_id = o.category_id
                    WHERE e.version_id = ? AND e.object_id IN ({marks})""",
                [version, *part],
            ).fetchall()
        for rowid, oid, dim, blob, category, project, conf, status in rows:
            if len(blob) != 4 * dim:
                raise ValueError(f"expected a stored embedding of {dim} values, got {len(blob) / 4:g}")
            rowids.append(rowid)
            ids.append(oid)
            blobs.append(blob)
            dims.add(dim)
            metas.append(_metadata(category, project, conf, status))
    if not ids:
        return np.zeros(0, np.int64), [], np.zeros((0, 0), dtype=np.float32), []
    if len(dims) != 1:
        raise ValueError(f"expected stored embeddings of one length, got lengths {sorted(dims)}")
    vectors = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(ids), dims.pop())
    return np.asarray(rowids, np.int64), ids, vectors, metas


def enqueue_tx(tx: sqlite3.Connection, object_ids: Sequence[str], version: str, operation: str) -> None:
    """Queues ``operation`` ("upsert" | "delete") of ``object_ids`` inside the caller's write
    transaction, so the index hears of a change exactly when the change commits."""
    if object_ids:
        tx.executemany(
            "INSERT INTO embedding_outbox (object_id, version_id, operation) VALUES (?, ?, ?)",
            [(oid, version, operation) for oid in object_ids],
        )


def pending_count(conn: Connection, version: str | None = None) -> int:
    if version is None:
        return int(conn.scalar("SELECT count(*) FROM embedding_outbox WHERE status = 'pending'"))
    return int(
        conn.scalar(
            "SELECT count(*) FROM embedding_outbox WHERE status = 'pending' AND version_id = ?", (version,)
        )
    )


def failed_count(conn: Connection, version: str | None = None) -> int:
    if version is None:
        return int(conn.scalar("SELECT count(*) FROM embedding_outbox WHERE status = 'failed'"))
    return int(
        conn.scalar(
            "SELECT count(*) FROM embedding_outbox WHERE status = 'failed' AND version_id = ?", (version,)
        )
    )


def sync(
    conn: Connection, index: Any, version: str, *, batch_size: int = 512, max_batches: int | None = None,
    matrix: Any = None,
) -> dict:
    """Relays pending outbox rows of ``version`` into ``index`` (and ``matrix``) until none are left.

    Args:
        conn: the registry connection.
        index: a VectorIndex (``add(ids, vectors, metadatas)`` as upsert, ``delete(ids)``).
        matrix: optional :class:`registry.vectors.matrix.VectorMatrix` kept in step with the
            index (``upsert(rowids, ids, vectors)``, ``delete(ids)``); a batch counts as relayed
            only when both took it.
        version: the embedding version whose rows to relay (other versions' rows wait).
        batch_size: outbox rows per index call.
        max_batches: stop after this many batches (None = until the backlog is empty).

    Returns:
        ``{"synced": rows relayed, "failed": rows that failed this call, "pending": left}``.
    """
    synced = failed = 0
    batches = 0
    last_id = 0
    while max_batches is None or batches < max_batches:
        with conn.lock:
            rows = conn.conn.execute(
                "SELECT id, object_id, operation FROM embedding_outbox "
                "WHERE status = 'pending' AND version_id = ? AND id > ? ORDER BY id LIMIT ?",
                (version, last_id, int(batch_size)),
            ).fetchall()
        if not rows:
            break
        batches += 1
        last_id = rows[-1][0]
        row_ids = [r[0] for r in rows]
        # The last operation per object in this batch decides (rows are in id order).
        final: dict[str, str] = {oid: op for _, oid, op in rows}
        upsert_ids = [oid for oid, op in final.items() if op == "upsert"]
        delete_ids = [oid for oid, op in final.items() if op == "delete"]
        try:
            rowids, ids, vectors, metas = fetch_rows(conn, upsert_ids, version)
            # An upsert whose object is gone since: its own 'delete' row follows; remove it here
            # too so the index never keeps a vector SQLite no longer has.
            if len(ids) != len(upsert_ids):
                have = set(ids)
                delete_ids += [oid for oid in upsert_ids if oid not in have]
            if ids:
                index.add(ids, vectors, metas)
            if delete_ids:
                index.delete(delete_ids)
            if matrix is not None:
                if ids:
                    matrix.upsert(rowids, ids, vectors)
                if delete_ids:
                    matrix.delete(delete_ids)
        except Exception as exc:  # any index failure: keep the rows, count the retry
            message = f"{type(exc).__name__}: {exc}"[:1000]
            log.warning("outbox relay of %d rows failed: %s", len(row_ids), message)
            with conn.transaction() as tx:
                tx.executemany(
                    "UPDATE embedding_outbox SET retry_count = retry_count + 1, error_message = ?, "
                    "status = CASE WHEN retry_count + 1 >= ? THEN 'failed' ELSE 'pending' END "
                    "WHERE id = ? AND status = 'pending'",
                    [(message, MAX_RETRIES, rid) for rid in row_ids],
                )
            failed += len(row_ids)
            continue
        now = utc_now()
        with conn.transaction() as tx:
            tx.executemany(
                "UPDATE embedding_outbox SET status = 'synced', synced_at = ?, error_message = NULL "
                "WHERE id = ? AND status = 'pending'",
                [(now, rid) for rid in row_ids],
            )
        synced += len(row_ids)
    return {"synced": synced, "failed": failed, "pending": pending_count(conn, version)}


def reset_failed(conn: Connection, version: str | None = None) -> int:
    """Puts ``failed`` rows back to ``pending`` with ``retry_count = 0``; returns how many."""
    with conn.transaction() as tx:
        if version is None:
            cur = tx.execute(
                "UPDATE embedding_outbox SET status = 'pending', retry_count = 0 WHERE status = 'failed'"
            )
        else:
            cur = tx.execute(
                "UPDATE embedding_outbox SET status = 'pending', retry_count = 0 "
                "WHERE status = 'failed' AND version_id = ?",
                (version,),
            )
        return cur.rowcount
