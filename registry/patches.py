"""Changes to stored objects: patch (validation, category, box, mask, embedding, flags) and delete.

Coordinate conventions: ``xyxy`` is absolute pixels of the source image (x = column, y = row),
stored as ``bbox_x/y/w/h``; a mask is an ``(H, W)`` bool array of the source image's size,
stored as compressed COCO RLE; an embedding is a ``(dim,)`` float32 vector.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from registry import masks as rle_ops
from registry import outbox
from registry.categories import check_category_name, resolve_category_tx
from registry.db import Connection
from registry.ids import utc_now
from registry.queries import get_object
from registry.records import ObjectIn
from registry.sources import get_source
from registry.validation import (
    STATUSES,
    check_box,
    check_embedding,
    check_mask,
    finite_unit,
    json_or_none,
)


def update_object(
    conn: Connection,
    data_dir: Path,
    object_id: str,
    *,
    dim: int,
    version: str,
    status: str | None = None,
    validated_by: str | None = None,
    category: str | None = None,
    quality_score: float | None = None,
    is_occluded: bool | None = None,
    is_truncated: bool | None = None,
    is_difficult: bool | None = None,
    mask: np.ndarray | None = None,
    xyxy: Sequence[float] | None = None,
    confidence: float | None = None,
    embedding: np.ndarray | None = None,
    metadata: dict | None = None,
) -> bool:
    """Patches an object; returns whether its vector was queued for the index (the caller then
    relays). Arguments left None are unchanged.

    ``status`` approved/rejected sets ``validated_at`` (now) and ``validated_by``; pending
    clears them. A new ``mask`` ((H, W) bool) recomputes ``area`` and, unless ``xyxy`` is
    given too, the box (the mask's tight box). Changes the index filters on (category,
    status, confidence) and a new embedding are queued for the index.
    """
    current = get_object(conn, version, object_id)
    source = get_source(conn, data_dir, current["source_id"])
    sets: dict[str, Any] = {}
    reindex = False
    if status is not None:
        if status not in STATUSES:
            raise ValueError(f"expected status in {STATUSES}, got {status!r}")
        sets["validation_status"] = status
        sets["is_validated"] = int(status != "pending")
        sets["validated_by"] = validated_by if status != "pending" else None
        sets["validated_at"] = utc_now() if status != "pending" else None
        reindex = True
    elif validated_by is not None:
        sets["validated_by"] = validated_by
    if quality_score is not None:
        sets["quality_score"] = finite_unit(quality_score, "quality_score")
    if confidence is not None:
        sets["confidence"] = finite_unit(confidence, "confidence")
        reindex = True
    for col, val in (("is_occluded", is_occluded), ("is_truncated", is_truncated), ("is_difficult", is_difficult)):
        if val is not None:
            sets[col] = int(bool(val))
    if metadata is not None:
        sets["metadata"] = json_or_none(metadata, "metadata")
    if mask is not None:
        rle = check_mask(ObjectIn(category="x", xyxy=(0, 0, 1, 1), mask=mask), source["width"], source["height"], object_id)
        sets.update(mask_counts=rle["counts"], mask_h=rle["size"][0], mask_w=rle["size"][1], area=float(rle_ops.area(rle)))
        if xyxy is None:
            x, y, w, h = rle_ops.bbox_xywh(rle)
            if w > 0 and h > 0:
                sets.update(bbox_x=x, bbox_y=y, bbox_w=w, bbox_h=h)
    if xyxy is not None:
        x0, y0, x1, y1 = check_box(xyxy, source["width"], source["height"], object_id)
        sets.update(bbox_x=x0, bbox_y=y0, bbox_w=x1 - x0, bbox_h=y1 - y0)
        if mask is None and not current["has_mask"]:
            sets["area"] = (x1 - x0) * (y1 - y0)
    emb_blob = None if embedding is None else check_embedding(embedding, object_id, dim, version)
    if category is not None:
        category = check_category_name(category)
    with conn.transaction() as tx:
        if category is not None:
            sets["category_id"] = resolve_category_tx(tx, category)
            reindex = True
        first = _keep_proposal(current, metadata, sets)
        if first is not None:
            sets["metadata"] = json_or_none(first, "metadata")
        if sets:
            cols = ", ".join(f"{k} = ?" for k in sets)
            tx.execute(f"UPDATE objects SET {cols} WHERE object_id = ?", (*sets.values(), object_id))
        if emb_blob is not None:
            tx.execute(
                "INSERT OR REPLACE INTO embeddings (object_id, version_id, dim, vector) VALUES (?, ?, ?, ?)",
                (object_id, version, dim, emb_blob),
            )
        if emb_blob is not None or (reindex and current["has_embedding"]):
            outbox.enqueue_tx(tx, [object_id], version, "upsert")
            queued = True
        else:
            queued = False
    return queued


def set_quality_scores(conn: Connection, scores: dict[str, float]) -> int:
    """Sets ``objects.quality_score`` for many objects in one transaction (all or nothing);
    returns how many rows changed. ValueError (naming the object) for a score outside [0, 1]."""
    rows = [(finite_unit(v, f"quality_score of {oid}"), oid) for oid, v in scores.items()]
    with conn.transaction() as tx:
        cur = tx.executemany("UPDATE objects SET quality_score = ? WHERE object_id = ?", rows)
    return int(cur.rowcount)


def _keep_proposal(current: dict, metadata: dict | None, sets: dict) -> dict | None:
    """The metadata plus what the object was before its first relabel (``proposed_category``)
    and first box change (``proposed_bbox_xywh``, pixels), recorded once so the auto-label
    evaluation can compare proposal and outcome; None when nothing new is recorded."""
    meta = metadata if metadata is not None else (current.get("metadata") or {})
    if not isinstance(meta, dict):
        return None
    meta = dict(meta)
    added = False
    if "category_id" in sets and sets["category_id"] != current["category_id"] and "proposed_category" not in meta:
        meta["proposed_category"] = current["category"]
        added = True
    if "bbox_x" in sets and "proposed_bbox_xywh" not in meta:
        box = [sets["bbox_x"], sets["bbox_y"], sets["bbox_w"], sets["bbox_h"]]
        if any(abs(float(a) - float(b)) > 1e-6 for a, b in zip(box, current["bbox_xywh"], strict=True)):
            meta["proposed_bbox_xywh"] = list(current["bbox_xywh"])
            added = True
    return meta if added else None


def delete_object(conn: Connection, object_id: str, version: str) -> bool:
    """Deletes an object (its mask, embedding, track/dataset links go with it; its vector
    leaves the index through the outbox). Returns whether a delete was queued for the index."""
    with conn.transaction() as tx:
        had = tx.execute(
            "SELECT EXISTS (SELECT 1 FROM embeddings WHERE object_id = ?)", (object_id,)
        ).fetchone()[0]
        cur = tx.execute("DELETE FROM objects WHERE object_id = ?", (object_id,))
        if cur.rowcount == 0:
            raise ValueError(f"unknown object id {object_id!r}; nothing deleted")
        if had:
            outbox.enqueue_tx(tx, [object_id], version, "delete")
    return bool(had)
