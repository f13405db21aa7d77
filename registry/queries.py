"""Reads of objects: filters, lists, counts, streams, and an object's mask and embedding.

Objects come back as plain dicts with ``bbox_xywh`` in absolute pixels of the source image
(x = column, y = row), ``has_mask``/``has_embedding`` flags, and decoded ``metadata``; masks as
compressed COCO RLE ``{"size": [H, W], "counts": str}`` or ``(H, W)`` bool arrays; embeddings
as ``(dim,)`` float32 vectors of the registry's embedding version.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from registry import masks as rle_ops
from registry import outbox
from registry.categories import category_ids_for
from registry.db import Connection
from registry.ids import format_ts
from registry.validation import STATUSES

ORDERS = {
    "confidence_asc": "o.confidence ASC, o.rowid ASC",
    "confidence_desc": "o.confidence DESC, o.rowid DESC",
    "created_desc": "o.created_at DESC, o.rowid DESC",
    "created_asc": "o.created_at ASC, o.rowid ASC",
    "quality_score_asc": "o.quality_score IS NULL, o.quality_score ASC, o.rowid ASC",  # unscored last
    # least sure few-shot classification first (issue 12); unclassified last
    "classification_confidence_asc": ("o.classification_confidence IS NULL, o.classification_confidence ASC, "
                                      "o.rowid ASC"),
}
OBJECT_COLUMNS = """
    o.object_id, o.source_id, o.frame_id, o.project_id, o.category_id, c.name AS category,
    o.bbox_x, o.bbox_y, o.bbox_w, o.bbox_h, o.area, o.confidence, o.detection_model,
    o.classification_model, o.classification_confidence, o.validation_status, o.is_validated,
    o.validated_by, o.validated_at, o.quality_score, o.is_occluded, o.is_truncated, o.is_difficult,
    o.mask_h IS NOT NULL AS has_mask, o.metadata, o.created_at, o.updated_at,
    EXISTS (SELECT 1 FROM embeddings e WHERE e.object_id = o.object_id AND e.version_id = ?) AS has_embedding
"""


def object_dict(r: dict) -> dict:
    """A row of :data:`OBJECT_COLUMNS` as the dict the registry returns (``bbox_xywh`` in pixels)."""
    meta = r.get("metadata")
    return {
        "object_id": r["object_id"],
        "source_id": r["source_id"],
        "frame_id": r["frame_id"],
        "project_id": r["project_id"],
        "category": r["category"],
        "category_id": r["category_id"],
        "bbox_xywh": [r["bbox_x"], r["bbox_y"], r["bbox_w"], r["bbox_h"]],
        "area": r["area"],
        "confidence": r["confidence"],
        "detection_model": r["detection_model"],
        "classification_model": r["classification_model"],
        "classification_confidence": r["classification_confidence"],
        "validation_status": r["validation_status"],
        "is_validated": bool(r["is_validated"]),
        "validated_by": r["validated_by"],
        "validated_at": r["validated_at"],
        "quality_score": r["quality_score"],
        "is_occluded": bool(r["is_occluded"]),
        "is_truncated": bool(r["is_truncated"]),
        "is_difficult": bool(r["is_difficult"]),
        "has_mask": bool(r["has_mask"]),
        "has_embedding": bool(r["has_embedding"]),
        "metadata": json.loads(meta) if meta else None,
        "created_at": r["created_at"],
        "updated_at": r["updated_at"],
    }


def get_object(conn: Connection, version: str, object_id: str) -> dict:
    """The object as a dict (see the module docstring for conventions); ValueError if unknown."""
    rows = conn.query(
        f"SELECT {OBJECT_COLUMNS} FROM objects o JOIN categories c ON c.category_id = o.category_id "
        "WHERE o.object_id = ?",
        (version, object_id),
    )
    if not rows:
        raise ValueError(f"unknown object id {object_id!r}: no such object (deleted, or from another data folder); find ids in Review or Search")
    return object_dict(rows[0])


def get_objects(conn: Connection, version: str, object_ids: Sequence[str]) -> list[dict]:
    """Objects by id, in the given order; unknown ids are left out."""
    found: dict[str, dict] = {}
    ids = list(object_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        rows = conn.query(
            f"SELECT {OBJECT_COLUMNS} FROM objects o JOIN categories c ON c.category_id = o.category_id "
            f"WHERE o.object_id IN ({','.join('?' * len(chunk))})",
            (version, *chunk),
        )
        for r in rows:
            found[r["object_id"]] = object_dict(r)
    return [found[i] for i in ids if i in found]


def get_mask_rle(conn: Connection, object_id: str) -> dict | None:
    """The compressed COCO RLE ``{"size": [h, w], "counts": str}``, or None without a mask."""
    rows = conn.query("SELECT mask_counts, mask_h, mask_w FROM objects WHERE object_id = ?", (object_id,))
    if not rows:
        raise ValueError(f"unknown object id {object_id!r}")
    r = rows[0]
    if r["mask_counts"] is None:
        return None
    return {"size": [r["mask_h"], r["mask_w"]], "counts": r["mask_counts"]}


def get_mask(conn: Connection, object_id: str) -> np.ndarray | None:
    """The ``(H, W)`` bool mask, or None without a mask."""
    rle = get_mask_rle(conn, object_id)
    return None if rle is None else rle_ops.decode(rle)


def get_embedding(conn: Connection, version: str, object_id: str) -> np.ndarray | None:
    """The ``(embedding_dim,)`` float32 vector of this registry's embedding version, or None."""
    row = conn.query(
        "SELECT dim, vector FROM embeddings WHERE object_id = ? AND version_id = ?",
        (object_id, version),
    )
    if not row:
        if conn.scalar("SELECT 1 FROM objects WHERE object_id = ?", (object_id,)) is None:
            raise ValueError(f"unknown object id {object_id!r}")
        return None
    return outbox.vector_from_blob(row[0]["vector"], row[0]["dim"]).copy()


def get_embeddings(conn: Connection, version: str, object_ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The ids (in the given order) that have an embedding of ``version`` and their ``(n, dim)``
    float32 vectors; ids without one are left out (one query per 30,000 ids)."""
    ids, vectors, _ = outbox.fetch_batch(conn, list(object_ids), version)
    pos = {oid: k for k, oid in enumerate(ids)}
    keep = [oid for oid in dict.fromkeys(object_ids) if oid in pos]
    return keep, vectors[[pos[o] for o in keep]] if keep else vectors


def embedding_versions(conn: Connection) -> list[dict]:
    """``[{"version", "dim", "count"}]`` of the stored embeddings, most vectors first."""
    return conn.query("SELECT version_id AS version, dim, count(*) AS count FROM embeddings "
                      "GROUP BY version_id, dim ORDER BY count(*) DESC")


def where_clause(
    conn: Connection,
    *,
    category: str | Sequence[str] | None = None,
    project: str | None = None,
    source_id: str | None = None,
    min_confidence: float | None = None,
    max_confidence: float | None = None,
    status: str | Sequence[str] | None = None,
    created_after: datetime | str | None = None,
    created_before: datetime | str | None = None,
) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause (or "") over ``objects o`` and its parameters for the filters of
    :func:`list_objects`; ValueError for an unknown status."""
    clauses: list[str] = []
    params: list[Any] = []
    if category is not None:
        ids = category_ids_for(conn, category)
        if not ids:
            clauses.append("0")
        else:
            clauses.append(f"o.category_id IN ({','.join('?' * len(ids))})")
            params += ids
    if project is not None:
        clauses.append("o.project_id = ?")
        params.append(project)
    if source_id is not None:
        clauses.append("o.source_id = ?")
        params.append(source_id)
    if min_confidence is not None:
        clauses.append("o.confidence >= ?")
        params.append(float(min_confidence))
    if max_confidence is not None:
        clauses.append("o.confidence <= ?")
        params.append(float(max_confidence))
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        for s in statuses:
            if s not in STATUSES:
                raise ValueError(f"expected status in {STATUSES}, got {s!r}")
        clauses.append(f"o.validation_status IN ({','.join('?' * len(statuses))})")
        params += statuses
    if created_after is not None:
        clauses.append("o.created_at >= ?")
        params.append(format_ts(created_after))
    if created_before is not None:
        clauses.append("o.created_at < ?")
        params.append(format_ts(created_before))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def list_objects(
    conn: Connection, version: str, *, order: str = "confidence_asc", limit: int | None = 50, offset: int = 0, **filters: Any
) -> list[dict]:
    """Objects matching the filters, sorted and paginated.

    Filters: ``category`` (name/synonym or list), ``project``, ``source_id``,
    ``min_confidence``/``max_confidence`` (inclusive), ``status`` ("pending" | "approved" |
    "rejected" or a list), ``created_after`` (inclusive)/``created_before`` (exclusive).
    ``order``: confidence_asc | confidence_desc | created_desc | created_asc | quality_score_asc.
    """
    if order not in ORDERS:
        raise ValueError(f"expected order in {sorted(ORDERS)}, got {order!r}")
    where, params = where_clause(conn, **filters)
    rows = conn.query(
        f"SELECT {OBJECT_COLUMNS} FROM objects o JOIN categories c ON c.category_id = o.category_id"
        f"{where} ORDER BY {ORDERS[order]} LIMIT ? OFFSET ?",
        [version, *params, -1 if limit is None else int(limit), int(offset)],
    )
    return [object_dict(r) for r in rows]


def count_objects(conn: Connection, **filters: Any) -> int:
    """The number of objects matching the filters of :func:`list_objects`."""
    where, params = where_clause(conn, **filters)
    return int(conn.scalar(f"SELECT count(*) FROM objects o{where}", params))


def iter_objects(conn: Connection, version: str, *, batch_size: int = 1000, order: str | None = None, **filters: Any) -> Iterator[dict]:
    """Streams matching objects in batches (bounded memory).

    Without ``order`` (or with "created_asc") it walks by insertion order with keyset
    pagination, so concurrent inserts never shift pages; other orders page by offset.
    """
    if order not in (None, "created_asc"):
        offset = 0
        while True:
            page = list_objects(conn, version, order=order, limit=batch_size, offset=offset, **filters)
            yield from page
            if len(page) < batch_size:
                return
            offset += batch_size
    where, params = where_clause(conn, **filters)
    joiner = " AND " if where else " WHERE "
    last = 0
    while True:
        rows = conn.query(
            f"SELECT o.rowid AS _rowid, {OBJECT_COLUMNS} FROM objects o "
            f"JOIN categories c ON c.category_id = o.category_id{where}{joiner}o.rowid > ? "
            "ORDER BY o.rowid LIMIT ?",
            [version, *params, last, int(batch_size)],
        )
        for r in rows:
            yield object_dict(r)
        if len(rows) < batch_size:
            return
        last = rows[-1]["_rowid"]
