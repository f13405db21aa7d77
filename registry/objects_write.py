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
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

import numpy as np

from registry import dedupe as overlap
from registry import masks as rle_ops
from registry.categories import check_category_name, name_key, resolve_category_tx
from registry.db import Connection
from registry.ids import new_ids, utc_now
from registry.objects_batch import (
    Batch,
    boxes_pass,
    f32_blobs,
    fast_batch,
    from_items,
    is_plain_rle,
)
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
    plain = True  # every given RLE a str-counts RLE of the image's size (rle_ops.validate_counts)
    with_emb: list[int] = []
    names: dict[Any, str] = {}
    append = prepared.append
    for i, obj in enumerate(objects):
        # The "object i" prefix of error messages is only formatted on the way to an error.
        if not isinstance(obj, ObjectIn):
            raise ValueError(f"object {i}: expected an ObjectIn, got {type(obj).__name__}")
        raw_name = obj.category
        name = names.get(raw_name) if type(raw_name) is str else None
        if name is None:
            name = check_category_name(raw_name)
            names[raw_name] = name
        x0, y0, x1, y1 = check_box(obj.xyxy, width, height, f"object {i}") if boxes is None else boxes[i]
        if obj.validation_status not in STATUSES:
            raise ValueError(f"object {i}: expected validation_status in {STATUSES}, got {obj.validation_status!r}")
        # RLEs given by the caller are validated below in one vectorised pass.
        mask_rle = obj.mask_rle
        if obj.mask is None and mask_rle is None:
            rle = None
        else:
            rle = _given_rle(mask_rle, width, height) if obj.mask is None else None
            if rle is None:  # a dense mask, or anything check_mask may have to word an error for
                rle = check_mask(obj, width, height, f"object {i}", validate=False)
                plain = plain and mask_rle is None
            if mask_rle is not None:
                given_rle.append(i)
        if obj.embedding is not None:
            with_emb.append(i)
        # _unit's fast path inline (None or a float in [0, 1]), in the same order.
        conf, cls_conf, quality = obj.confidence, obj.classification_confidence, obj.quality_score
        if not (conf is None or (type(conf) is float and 0.0 <= conf <= 1.0)):
            conf = _unit(conf, i, "confidence")
        if not (cls_conf is None or (type(cls_conf) is float and 0.0 <= cls_conf <= 1.0)):
            cls_conf = _unit(cls_conf, i, "classification_confidence")
        if quality is not None:
            quality = _unit(quality, i, "quality_score")
        append({
            "category": name,
            "box": (x0, y0, x1 - x0, y1 - y0),
            "rle": rle,
            "area": (x1 - x0) * (y1 - y0),
            "confidence": conf,
            "classification_confidence": cls_conf,
            "quality_score": quality,
            "embedding": None,
            "coco": None,
            "mask_box": None,
            "detection_model": obj.detection_model,
            "classification_model": obj.classification_model,
            "frame_id": obj.frame_id,
            "flags": (1 if obj.is_occluded else 0, 1 if obj.is_truncated else 0, 1 if obj.is_difficult else 0),
            "status": obj.validation_status,
            "validated_by": obj.validated_by,
            "metadata": None if obj.metadata is None else json_or_none(obj.metadata, f"object {i} metadata"),
            "project": project,
        })
    embs = [objects[i].embedding for i in with_emb]
    blobs = f32_blobs(embs, dim)
    if blobs is None:  # anything but C-contiguous float32 (dim,) arrays, or a bad value
        blobs = check_embeddings(embs, with_emb, dim, version)
    for i, blob in zip(with_emb, blobs, strict=True):
        prepared[i]["embedding"] = blob
    given_area: dict[int, int] = {}
    if given_rle:
        try:
            coco: list[dict | None] = []
            boxes: list = []
            if plain:  # dedupe converts the masks it compares to pycocotools' form itself
                areas = rle_ops.validate_counts([prepared[i]["rle"]["counts"] for i in given_rle], height, width,
                                                boxes)
                coco = [None] * len(given_rle)
            else:
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


def _unit(value: Any, i: int, what: str) -> float | None:
    """:func:`finite_unit` with a fast path for the common case (None or a float in [0, 1];
    NaN fails the comparison and takes the checked path, which words the error)."""
    if value is None or (type(value) is float and 0.0 <= value <= 1.0):
        return value
    return finite_unit(value, f"object {i} {what}")


def _given_rle(mask_rle: Any, width: int | None, height: int | None) -> dict | None:
    """:func:`check_mask`'s result for a plain ``{"size": [H, W] ints, "counts": str}`` of the
    image's size (counts decoded later, in the batch pass), else None: check_mask then converts
    or words the error."""
    if not is_plain_rle(mask_rle, width, height):
        return None
    return {"size": [height, width], "counts": mask_rle["counts"]}


def _boxes_if_valid(objects: Sequence[ObjectIn], width: int | None, height: int | None) -> list | None:
    """Every ``xyxy`` as 4 floats when all pass :func:`check_box`'s rules (one vectorised pass
    for the batch), else None so the per-object check raises for the first bad one."""
    try:
        arr = np.asarray([o.xyxy for o in objects], dtype=np.float64)
    except (TypeError, ValueError, AttributeError):
        return None
    return [tuple(r) for r in arr.tolist()] if boxes_pass(arr, len(objects), width, height) else None


def duplicates_tx(tx: sqlite3.Connection, source_id: str, batch: Batch, category_ids: list[int], ids: list[str],
                  iou: float) -> dict[int, str]:
    """``input index -> id it duplicates`` for items overlapping an existing or earlier item
    of the same category (see :mod:`registry.dedupe`: only overlapping pairs are compared).

    The stored objects are read with one indexed query; their mask areas are recomputed
    from the RLEs rather than trusting the ``area`` column, so the pruning bounds stay exact.
    Objects on different frames of a video never duplicate each other: items are compared
    within their own frame (``frame_id``; None = the source's image) only.
    """
    by_frame: dict[str | None, list[int]] = {}
    for k, fid in enumerate(batch.frame_id):
        by_frame.setdefault(fid, []).append(k)
    if len(by_frame) == 1:
        return _duplicates_in_frame(tx, source_id, batch, category_ids, ids, iou, None)
    out: dict[int, str] = {}
    for ks in by_frame.values():
        out.update(_duplicates_in_frame(tx, source_id, batch, category_ids, ids, iou, ks))
    return out


def _duplicates_in_frame(tx: sqlite3.Connection, source_id: str, batch: Batch, category_ids: list[int],
                         ids: list[str], iou: float, ks: list[int] | None) -> dict[int, str]:
    """:func:`duplicates_tx` for the items ``ks`` (all when None), all of one frame."""
    def take(col):
        if ks is None:
            return col
        return col[ks] if isinstance(col, np.ndarray) else [col[k] for k in ks]

    cats = take(category_ids)
    rows = tx.execute(*stored_query(source_id, batch.frame_id[0 if ks is None else ks[0]], sorted(set(cats)))).fetchall()
    rles = [{"size": [r[6], r[7]], "counts": r[5]} if r[5] is not None else None for r in rows]
    with_mask = [k for k, r in enumerate(rles) if r is not None]
    areas = dict(zip(with_mask, rle_ops.areas([rles[k] for k in with_mask]).tolist(), strict=True))
    stored = overlap.Items.build([r[8] for r in rows], [r[1:5] for r in rows], rles,
                                [areas.get(k) for k in range(len(rows))])
    new = overlap.Items.build(cats, batch.boxes(ks), take(batch.rle), take(batch.area), take(batch.coco),
                              take(batch.mask_box))
    found = overlap.find_duplicates(new, stored, iou)
    index = range(len(batch)) if ks is None else ks
    return {index[i]: rows[j][0] if kind == "stored" else ids[index[j]] for i, (kind, j) in found.items()}


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

    The batch is read column-wise by :func:`registry.objects_batch.fast_batch` when every
    object is plain, else checked object by object by :func:`prepare` (which words errors);
    the rows go in with multi-row INSERTs (:func:`insert_rows`).

    Returns:
        The result, and whether vectors were queued for the index (the caller then relays).

    Raises:
        ValueError: unknown source, bad box/mask/embedding/category/confidence; nothing is
            written.
    """
    source_id = source["source_id"]
    batch = fast_batch(source, objects, dim)
    if batch is None:  # anything out of the ordinary: checked object by object, errors worded
        batch = from_items(prepare(source, objects, project, dim, version))
    n = len(batch)
    result = RegisterResult(object_ids=[None] * n)
    if not n:
        return result, False
    ids = new_ids("obj", n)
    now = utc_now()
    with conn.transaction() as tx:
        for fid in {f for f in batch.frame_id if f is not None}:
            row = tx.execute("SELECT source_id FROM frames WHERE frame_id = ?", (fid,)).fetchone()
            if row is None or row[0] != source_id:
                raise ValueError(f"expected frame_id of a frame of {source_id}, got {fid!r}; use add_frame() first")
        # One lookup for all the batch's names; only unknown ones are created, in input order.
        keys = {c: name_key(c) for c in dict.fromkeys(batch.category)}
        wanted = sorted(set(keys.values()))
        cat_ids: dict[str, int] = {}
        for start in range(0, len(wanted), 10_000):  # below SQLite's bound-parameter limit
            part = wanted[start:start + 10_000]
            cat_ids.update(tx.execute(
                f"SELECT name_key, category_id FROM category_names WHERE name_key IN ({','.join('?' * len(part))})",
                part,
            ).fetchall())
        for name, key in keys.items():
            if key not in cat_ids:
                cat_ids[key] = resolve_category_tx(tx, name)
        by_name = {name: cat_ids[key] for name, key in keys.items()}
        category_ids = [by_name[c] for c in batch.category]
        dup = duplicates_tx(tx, source_id, batch, category_ids, ids, dedupe_iou) if dedupe else {}
        rows = _rows(batch, ids, category_ids, dup, result, source_id, project, now, dim, version)
        insert_rows(tx, rows)
    return result, bool(rows.embeddings)


def _rows(batch: Batch, ids: list[str], category_ids: list[int], dup: dict[int, str], result: RegisterResult,
          source_id: str, project: str | None, now: str, dim: int, version: str) -> Rows:
    """The rows of the items not in ``dup`` (flat parameter lists, for :func:`insert_rows`),
    zipped column by column; fills ``result``."""
    n = len(batch)
    validated = [s != "pending" for s in batch.status]
    rows = zip(
        ids, repeat(source_id), category_ids, batch.frame_id, repeat(project), batch.x, batch.y, batch.w, batch.h,
        batch.counts, batch.mask_h, batch.mask_w, batch.area, batch.confidence, batch.detection_model,
        batch.classification_model, batch.classification_confidence, map(int, validated), batch.status,
        [v if ok else None for v, ok in zip(batch.validated_by, validated, strict=True)],
        [now if ok else None for ok in validated], batch.quality_score, batch.occluded, batch.truncated,
        batch.difficult, batch.metadata, repeat(now), repeat(now),
    )
    if dup:
        keep = [i for i in range(n) if i not in dup]
        result.duplicates.extend((i, dup[i]) for i in sorted(dup))
        every = list(rows)
        obj = list(chain.from_iterable(every[i] for i in keep))
    else:
        keep = range(n)
        obj = list(chain.from_iterable(rows))
    object_ids = result.object_ids
    for i in keep:
        object_ids[i] = ids[i]
    embedding = batch.embedding
    with_emb = [i for i in keep if embedding[i] is not None]
    emb = list(chain.from_iterable((ids[i], version, dim, embedding[i]) for i in with_emb))
    out = list(chain.from_iterable((ids[i], version) for i in with_emb))
    return Rows(obj, emb, out)


# -- multi-row INSERTs ------------------------------------------------------------------------------
# ``executemany`` resets, binds and steps once per row (re-taking the GIL after every step); one
# statement of 64 rows is one step. On the bench rows (28 columns, 8 indexes, 3 KB embedding
# blobs) that wrote ~20-25 % more rows per second than ``executemany`` of the same rows
# (docs/speed.md, "Ingest"). A writer thread overlapping these inserts with the next chunk's
# validation was measured slower on 2 shared cores (the writer waits for the GIL after every
# step) and dropped.

#: Rows per INSERT statement at most (fewer where SQLite's bound-parameter limit is lower).
STMT_ROWS = 64
OBJECT_COLUMNS = (
    "object_id, source_id, category_id, frame_id, project_id, bbox_x, bbox_y, bbox_w, bbox_h, mask_counts, "
    "mask_h, mask_w, area, confidence, detection_model, classification_model, classification_confidence, "
    "is_validated, validation_status, validated_by, validated_at, quality_score, is_occluded, is_truncated, "
    "is_difficult, metadata, created_at, updated_at"
)
_TABLES = {  # name -> (INSERT head, one row's placeholders, values per row)
    "objects": (f"INSERT INTO objects ({OBJECT_COLUMNS}) VALUES ", "(" + ",".join("?" * 28) + ")", 28),
    "embeddings": ("INSERT INTO embeddings (object_id, version_id, dim, vector) VALUES ", "(?,?,?,?)", 4),
    "outbox": ("INSERT INTO embedding_outbox (object_id, version_id, operation) VALUES ", "(?,?,'upsert')", 2),
}
_SQL: dict[tuple[str, int], str] = {}


@dataclass
class Rows:
    """A batch's rows as flat parameter lists (the values of one row after another)."""

    objects: list
    embeddings: list
    outbox: list


def insert_rows(tx: sqlite3.Connection, rows: Rows) -> None:
    """Inserts the rows, in order, with statements of ``STMT_ROWS``, 32, 16, ... 1 rows: a few
    distinct statement texts whatever the batch size, so sqlite3's statement cache keeps them
    compiled."""
    limit = _variable_limit(tx)
    for table, flat in (("objects", rows.objects), ("embeddings", rows.embeddings), ("outbox", rows.outbox)):
        head, one, width = _TABLES[table]
        top = STMT_ROWS
        while top > 1 and top * width > limit:
            top //= 2
        start = 0
        for size in _piece_sizes(len(flat) // width, top):
            sql = _SQL.get((table, size))
            if sql is None:
                sql = _SQL[(table, size)] = head + ",".join([one] * size)
            tx.execute(sql, flat[start * width:(start + size) * width])
            start += size


def _piece_sizes(n: int, top: int) -> list[int]:
    """``n`` rows as ``top``-row pieces, then a binary decomposition of the rest (``top`` a power of 2)."""
    out = [top] * (n // top)
    rest, size = n % top, top // 2
    while rest:
        if rest >= size:
            out.append(size)
            rest -= size
        size //= 2
    return out


def _variable_limit(tx: sqlite3.Connection) -> int:
    try:
        return int(tx.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    except (AttributeError, sqlite3.Error):  # Python < 3.11: SQLite's historical default
        return 999
