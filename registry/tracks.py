"""Tracks: one object per frame of a source followed through a video, in frame order.

``object_count``, ``start/end_frame_idx`` and ``avg_confidence`` of a track are kept by SQLite
triggers (:mod:`registry.schema`); this module writes ``tracks`` and ``track_objects``.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence

from registry.categories import check_category_name, resolve_category_tx
from registry.db import Connection
from registry.ids import new_id
from registry.queries import get_objects
from registry.validation import json_or_none


def create_track(
    conn: Connection, version: str, object_ids: Sequence[str], *, category: str | None = None, metadata: dict | None = None
) -> str:
    """A ``trk_…`` track of objects of one source; ``sequence_idx`` follows frame order.

    ``category`` defaults to the objects' common category (None when they differ).
    ``object_count``, ``start/end_frame_idx`` and ``avg_confidence`` are kept by triggers.
    """
    ids = list(dict.fromkeys(object_ids))
    if not ids:
        raise ValueError("expected at least one object id for a track, got none")
    objs = {o["object_id"]: o for o in get_objects(conn, version, ids)}
    missing = [i for i in ids if i not in objs]
    if missing:
        raise ValueError(f"unknown object ids {missing[:5]}; nothing created")
    sources = {o["source_id"] for o in objs.values()}
    if len(sources) != 1:
        raise ValueError(f"expected objects of one source for a track, got {len(sources)} sources")
    meta = json_or_none(metadata, "metadata")
    track_id = new_id("trk")
    with conn.transaction() as tx:
        if category is not None:
            cid = resolve_category_tx(tx, check_category_name(category))
        else:
            cats = {o["category_id"] for o in objs.values()}
            cid = cats.pop() if len(cats) == 1 else None
        frame_idx = dict(tx.execute(
            f"SELECT o.object_id, f.frame_idx FROM objects o JOIN frames f ON f.frame_id = o.frame_id "
            f"WHERE o.object_id IN ({','.join('?' * len(ids))})", ids).fetchall())
        order = sorted(range(len(ids)), key=lambda k: (frame_idx.get(ids[k], math.inf), k))
        tx.execute(
            "INSERT INTO tracks (track_id, source_id, category_id, metadata) VALUES (?, ?, ?, ?)",
            (track_id, sources.pop(), cid, meta),
        )
        tx.executemany(
            "INSERT INTO track_objects (track_id, object_id, sequence_idx) VALUES (?, ?, ?)",
            [(track_id, ids[k], seq) for seq, k in enumerate(order)],
        )
    return track_id


def get_track(conn: Connection, version: str, track_id: str) -> dict:
    """The track row (+ ``category`` name) with ``objects`` in frame order (+ ``frame_idx``)."""
    rows = conn.query(
        "SELECT t.*, c.name AS category FROM tracks t LEFT JOIN categories c ON c.category_id = t.category_id "
        "WHERE t.track_id = ?", (track_id,))
    if not rows:
        raise ValueError(f"unknown track id {track_id!r}")
    track = dict(rows[0])
    track["metadata"] = json.loads(track["metadata"]) if track["metadata"] else None
    members = conn.query(
        "SELECT t.object_id, t.sequence_idx, f.frame_idx FROM track_objects t JOIN objects o USING (object_id) "
        "LEFT JOIN frames f ON f.frame_id = o.frame_id WHERE t.track_id = ? ORDER BY f.frame_idx, t.sequence_idx",
        (track_id,))
    objs = {o["object_id"]: o for o in get_objects(conn, version, [m["object_id"] for m in members])}
    track["objects"] = []
    for m in members:
        o = objs[m["object_id"]]
        o["frame_idx"] = m["frame_idx"]
        o["sequence_idx"] = m["sequence_idx"]
        track["objects"].append(o)
    return track
