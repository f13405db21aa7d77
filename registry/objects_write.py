"""The object write path: validate a batch, resolve categories, skip duplicates, write rows,
embeddings and outbox entries in one transaction.

Coordinate conventions: input boxes are ``xyxy`` in absolute pixels of the source image and are
stored as ``bbox_x/y/w/h``; masks are ``(H, W)`` bool arrays (or compressed COCO RLE) of the
source image's size, stored as compressed RLE in the object's row; embeddings are
``(dim,)`` float32 vectors stored as little-endian bytes.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import numpy as np

from registry import dedupe as overlap
from registry import ingest_pipeline as pipe
from registry import masks as rle_ops
from registry.categories import check_category_name, name_key, resolve_category_tx
from registry.db import Connection
from registry.ids import new_ids, utc_now
from registry.records import ObjectIn, RegisterResult
from registry.validation import (
    STATUSES,
    check_box,
    check_embeddings,
    check_mask,
    finite_unit,
    json_or_none,
)


def prepare(source: dict, objects: Sequence[ObjectIn], project: str | None, dim: int, version: str) -> list[dict]:
    """Validates and converts every input (no writes); raises on the first bad one.

    Per-object work is kept to plain Python checks; category names are checked once per
    distinct name, and embeddings and caller-given RLEs are checked in one vectorised pass
    per batch (which re-runs the per-object check to word the error when one fails).
    """
    width, height = source["width"], source["height"]
    boxes = _boxes_if_valid(objects, width, height)  # None: check_box words the first bad one
    prepared = []
    given_rle: list[int] = []
    with_emb: list[int] = []
    names: dict[Any, str] = {}
    for i, obj in enumerate(objects):
        where = f"object {i}"
        if not isinstance(obj, ObjectIn):
            raise ValueError(f"{where}: expected an ObjectIn, got {type(obj).__name__}")
        raw_name = obj.category
        name = names.get(raw_name) if type(raw_name) is str else None
        if name is None:
            name = check_category_name(raw_name)
            names[raw_name] = name
        x0, y0, x1, y1 = check_box(obj.xyxy, width, height, where) if boxes is None else boxes[i]
        if obj.validation_status not in STATUSES:
            raise ValueError(f"{where}: expected validation_status in {STATUSES}, got {obj.validation_status!r}")
        # RLEs given by the caller are validated below in one vectorised pass.
        rle = check_mask(obj, width, height, where, validate=False)
        if obj.mask_rle is not None:
            given_rle.append(i)
        if obj.embedding is not None:
            with_emb.append(i)
        prepared.append({
            "category": name,
            "box": (x0, y0, x1 - x0, y1 - y0),
            "rle": rle,
            "area": (x1 - x0) * (y1 - y0),
            "confidence": _unit(obj.confidence, where, "confidence"),
            "classification_confidence": _unit(obj.classification_confidence, where, "classification_confidence"),
            "quality_score": _unit(obj.quality_score, where, "quality_score"),
            "embedding": None,
            "coco": None,
            "mask_box": None,
            "detection_model": obj.detection_model,
            "classification_model": obj.classification_model,
            "frame_id": obj.frame_id,
            "flags": (int(bool(obj.is_occluded)), int(bool(obj.is_truncated)), int(bool(obj.is_difficult))),
            "status": obj.validation_status,
            "validated_by": obj.validated_by,
            "metadata": json_or_none(obj.metadata, f"{where} metadata"),
            "project": project,
        })
    for i, blob in zip(with_emb, check_embeddings([objects[i].embedding for i in with_emb], with_emb, dim, version), strict=True):
        prepared[i]["embedding"] = blob
    given_area: dict[int, int] = {}
    if given_rle:
        try:
            coco: list[dict] = []
            boxes: list = []
            areas = rle_ops.validate_many([prepared[i]["rle"] for i in given_rle], coco, boxes)
        except ValueError as exc:
            pos = str(exc).split(":", 1)
            k = int(pos[0].split()[1]) if pos[0].startswith("RLE ") else 0
            raise ValueError(f"object {given_rle[k]} mask_rle: {pos[-1].strip()}") from exc
        given_area = dict(zip(given_rle, areas.tolist(), strict=True))
        for i, c, b in zip(given_rle, coco, boxes[0], strict=True):
            prepared[i]["coco"] = c
            prepared[i]["mask_box"] = b
    encoded = [i for i, it in enumerate(prepared) if it["rle"] is not None and i not in given_area]
    for i, a in zip(encoded, rle_ops.areas([prepared[i]["rle"] for i in encoded]).tolist(), strict=True):
        given_area[i] = a
    for i, a in given_area.items():
        prepared[i]["area"] = float(a)
    return prepared


def _unit(value: Any, where: str, what: str) -> float | None:
    """:func:`finite_unit` with a fast path for the common case (None or a float in [0, 1];
    NaN fails the comparison and takes the checked path, which words the error)."""
    if value is None or (type(value) is float and 0.0 <= value <= 1.0):
        return value
    return finite_unit(value, f"{where} {what}")


def _boxes_if_valid(objects: Sequence[ObjectIn], width: int | None, height: int | None) -> list | None:
    """Every ``xyxy`` as 4 floats when all pass :func:`check_box`'s rules (one vectorised pass
    for the batch), else None so the per-object check raises for the first bad one."""
    try:
        arr = np.asarray([o.xyxy for o in objects], dtype=np.float64)
    except (TypeError, ValueError, AttributeError):
        return None
    if arr.shape != (len(objects), 4) or not np.isfinite(arr).all():
        return None
    ok = (arr[:, 0] >= 0) & (arr[:, 1] >= 0) & (arr[:, 2] > arr[:, 0]) & (arr[:, 3] > arr[:, 1])
    if width is not None:
        ok &= arr[:, 2] <= width + 1e-6
    if height is not None:
        ok &= arr[:, 3] <= height + 1e-6
    return [tuple(r) for r in arr.tolist()] if ok.all() else None


def duplicates_tx(tx: sqlite3.Connection, source_id: str, items: list[dict], iou: float) -> dict[int, str]:
    """``input index -> id it duplicates`` for items overlapping an existing or earlier item
    of the same category (see :mod:`registry.dedupe`: only overlapping pairs are compared).

    The stored objects are read with one indexed query; their mask areas are recomputed
    from the RLEs rather than trusting the ``area`` column, so the pruning bounds stay exact.
    Objects on different frames of a video never duplicate each other: items are compared
    within their own frame (``frame_id``; None = the source's image) only.
    """
    by_frame: dict[str | None, list[int]] = {}
    for k, it in enumerate(items):
        by_frame.setdefault(it["frame_id"], []).append(k)
    if len(by_frame) > 1:
        out: dict[int, str] = {}
        for ks in by_frame.values():
            sub = duplicates_tx(tx, source_id, [items[k] for k in ks], iou)
            out.update({ks[i]: oid for i, oid in sub.items()})
        return out
    ids, stored = stored_items(tx, source_id, items[0]["frame_id"], sorted({it["category_id"] for it in items}))
    new = overlap.Items.build([it["category_id"] for it in items], [it["box"] for it in items],
                             [it["rle"] for it in items], [it["area"] for it in items],
                             [it["coco"] for it in items], [it["mask_box"] for it in items])
    found = overlap.find_duplicates(new, stored, iou)
    return {i: ids[j] if kind == "stored" else items[j]["object_id"] for i, (kind, j) in found.items()}


def stored_items(tx: sqlite3.Connection, source_id: str, frame_id: str | None,
                 category_ids: Sequence[int]) -> tuple[list[str], overlap.Items]:
    """``(ids, Items)`` of the stored objects of one frame (None = the image) in those categories."""
    rows = tx.execute(*stored_query(source_id, frame_id, category_ids)).fetchall()
    rles = [{"size": [r[6], r[7]], "counts": r[5]} if r[5] is not None else None for r in rows]
    with_mask = [k for k, r in enumerate(rles) if r is not None]
    areas = dict(zip(with_mask, rle_ops.areas([rles[k] for k in with_mask]).tolist(), strict=True))
    items = overlap.Items.build([r[8] for r in rows], [r[1:5] for r in rows], rles,
                                [areas.get(k) for k in range(len(rows))])
    return [r[0] for r in rows], items


def stored_query(source_id: str, frame_id: str | None, category_ids: Sequence[int]) -> tuple[str, tuple]:
    """``(sql, params)`` reading the stored objects a batch is deduplicated against.

    An image's objects (``frame_id`` None) come from ``idx_objects_source`` (source, category):
    written as ``frame_id IS ?``, SQLite picked ``idx_objects_frame`` for NULL and scanned every
    image object of the registry per batch. A frame's objects come from ``idx_objects_frame``.
    """
    marks = ",".join("?" * len(category_ids))
    cols = "object_id, bbox_x, bbox_y, bbox_w, bbox_h, mask_counts, mask_h, mask_w, category_id"
    if frame_id is None:
        return (f"SELECT {cols} FROM objects WHERE source_id = ? AND +frame_id IS NULL AND category_id IN ({marks})",
                (source_id, *category_ids))
    return (f"SELECT {cols} FROM objects WHERE frame_id = ? AND source_id = ? AND category_id IN ({marks})",
            (frame_id, source_id, *category_ids))


def register_objects(
    conn: Connection,
    source: dict,
    objects: list[ObjectIn],
    *,
    project: str | None,
    dedupe: bool,
    dedupe_iou: float,
    dim: int,
    version: str,
) -> tuple[RegisterResult, bool]:
    """Registers a batch of objects of one source in ONE transaction (all or nothing).

    Each object's row (with its mask as compressed RLE), its embedding and its outbox entry
    are written together. Categories are resolved by name or synonym and created on demand.
    With ``dedupe`` an object whose IoU (mask IoU when both have masks, else box IoU) with an
    existing object of the same source and category, or an earlier one of this batch,
    exceeds ``dedupe_iou`` is skipped.

    Batches of at least ``2 * CHUNK`` objects are pipelined (:mod:`registry.ingest_pipeline`):
    chunk ``k`` is inserted on a writer thread while this thread validates and deduplicates
    chunk ``k + 1``, in the same transaction, with the same result, errors and dedupe answers
    as the serial path.

    Returns:
        The result, and whether vectors were queued for the index (the caller then relays).

    Raises:
        ValueError: unknown source, bad box/mask/embedding/category/confidence; nothing is
            written.
    """
    if len(objects) >= 2 * pipe.CHUNK:
        ids, now = new_ids("obj", len(objects)), utc_now()
        with conn.transaction() as tx:
            done = _register_pipelined(tx, source, objects, ids, now, project=project, dedupe=dedupe,
                                       dedupe_iou=dedupe_iou, dim=dim, version=version)
            if done is not None:
                return done
            # An irregular input: the serial path (joining this transaction) words the error.
            return _register_serial(conn, source, objects, project=project, dedupe=dedupe,
                                    dedupe_iou=dedupe_iou, dim=dim, version=version)
    return _register_serial(conn, source, objects, project=project, dedupe=dedupe, dedupe_iou=dedupe_iou,
                            dim=dim, version=version)


def _register_serial(conn: Connection, source: dict, objects: list[ObjectIn], *, project: str | None,
                     dedupe: bool, dedupe_iou: float, dim: int, version: str) -> tuple[RegisterResult, bool]:
    source_id = source["source_id"]
    items = prepare(source, objects, project, dim, version)
    result = RegisterResult(object_ids=[None] * len(items))
    if not items:
        return result, False
    ids = new_ids("obj", len(items))
    for it, oid in zip(items, ids, strict=False):
        it["object_id"] = oid
    now = utc_now()
    with conn.transaction() as tx:
        frames = {it["frame_id"] for it in items if it["frame_id"] is not None}
        for fid in frames:
            row = tx.execute("SELECT source_id FROM frames WHERE frame_id = ?", (fid,)).fetchone()
            if row is None or row[0] != source_id:
                raise ValueError(f"expected frame_id of a frame of {source_id}, got {fid!r}; use add_frame() first")
        # One lookup for all the batch's names; only unknown ones are created one by one.
        keys = {c: name_key(c) for c in {it["category"] for it in items}}
        wanted = sorted(set(keys.values()))
        cat_ids: dict[str, int] = {}
        for start in range(0, len(wanted), 10_000):  # below SQLite's bound-parameter limit
            part = wanted[start:start + 10_000]
            cat_ids.update(tx.execute(
                f"SELECT name_key, category_id FROM category_names WHERE name_key IN ({','.join('?' * len(part))})",
                part,
            ).fetchall())
        for it in items:
            key = keys[it["category"]]
            if key not in cat_ids:
                cat_ids[key] = resolve_category_tx(tx, it["category"])
            it["category_id"] = cat_ids[key]
        dup = duplicates_tx(tx, source_id, items, dedupe_iou) if dedupe else {}
        rows = _rows(items, 0, dup, result, source_id, now, dim, version)
        pipe.insert_rows(tx, rows)
    return result, bool(rows.embeddings)


def _register_pipelined(tx: sqlite3.Connection, source: dict, objects: list[ObjectIn], ids: list[str], now: str,
                        *, project: str | None, dedupe: bool, dedupe_iou: float, dim: int,
                        version: str) -> tuple[RegisterResult, bool] | None:
    """The pipelined path inside the caller's transaction; None where :func:`pipe.plan` found an
    irregular input (nothing inserted yet; the serial path then words the error)."""
    source_id = source["source_id"]
    plan = pipe.plan(tx, source_id, objects, dedupe=dedupe, iou=dedupe_iou,
                     stored=lambda fid, cats: stored_items(tx, source_id, fid, cats))
    if plan is None:
        return None
    result = RegisterResult(object_ids=[None] * len(objects))
    queued = False
    writer: pipe.Writer | None = None
    try:
        for start, end in pipe.chunk_bounds(len(objects)):
            # From here to the writer's join: no SQLite call on this thread (see ingest_pipeline).
            try:
                items = prepare(source, objects[start:end], project, dim, version)
            except ValueError:
                # The serial path validates the whole batch first: word the error as it does.
                prepare(source, objects, project, dim, version)
                raise
            by_frame: dict[str | None, list[int]] = {}
            for k, (it, oid) in enumerate(zip(items, ids[start:end], strict=True)):
                it["object_id"] = oid
                it["category_id"] = plan.category_ids[it["category"]]
                by_frame.setdefault(it["frame_id"], []).append(k)
            dup: dict[int, str] = {}
            if dedupe:
                for fid, ks in by_frame.items():
                    found = plan.frames[fid].run([items[k] for k in ks])
                    dup.update({ks[i]: oid for i, oid in found.items()})
            rows = _rows(items, start, dup, result, source_id, now, dim, version)
            queued = queued or bool(rows.embeddings)
            if writer is not None:
                writer.join()
            writer = pipe.Writer(tx, rows)
        last, writer = writer, None
        if last is not None:
            last.join()
    finally:
        if writer is not None:  # an error on this thread: the insert in flight ends before ROLLBACK
            writer.thread.join()
    return result, queued


def _rows(items: list[dict], offset: int, dup: dict[int, str], result: RegisterResult, source_id: str, now: str,
          dim: int, version: str) -> pipe.Rows:
    """The rows of the items not in ``dup`` (flat, for :func:`pipe.insert_rows`); fills ``result``
    (input index = ``offset`` + item index)."""
    obj, emb, out = [], [], []
    for i, it in enumerate(items):
        if i in dup:
            result.duplicates.append((offset + i, dup[i]))
            continue
        oid = it["object_id"]
        result.object_ids[offset + i] = oid
        rle = it["rle"]
        status = it["status"]
        validated = status != "pending"
        obj.extend((
            oid, source_id, it["category_id"], it["frame_id"], it["project"],
            *it["box"],
            None if rle is None else rle["counts"], None if rle is None else rle["size"][0],
            None if rle is None else rle["size"][1], it["area"], it["confidence"],
            it["detection_model"], it["classification_model"], it["classification_confidence"],
            int(validated), status, it["validated_by"] if validated else None, now if validated else None,
            it["quality_score"], *it["flags"], it["metadata"], now, now,
        ))
        if it["embedding"] is not None:
            emb.extend((oid, version, dim, it["embedding"]))
            out.extend((oid, version))
    return pipe.Rows(obj, emb, out)
