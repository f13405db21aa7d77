"""Tracks: one object per frame of a source followed through a video, in frame order.

``object_count``, ``start/end_frame_idx`` and ``avg_confidence`` of a track are kept by SQLite
triggers (:mod:`registry.schema`); this module writes ``tracks`` and ``track_objects``.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence

from registry import outbox
from registry.categories import check_category_name, resolve_category_tx
from registry.db import Connection
from registry.ids import new_id
from registry.outbox import vector_from_blob
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
        insert_members_tx(tx, track_id, [(ids[k], seq) for seq, k in enumerate(order)])
    return track_id


INSERT_TRIGGER = "trg_track_objects_insert"
#: Below this many rows the schema's per-row trigger is cheap enough to keep.
BULK_ROWS = 64


def insert_members_tx(tx, track_id: str, rows: Sequence[tuple[str, int]]) -> None:
    """Inserts ``(object_id, sequence_idx)`` rows into ``track_objects`` inside a transaction.

    Why not a plain ``executemany``: the schema's ``AFTER INSERT`` trigger recomputes the track's
    summary (count, average confidence, first/last frame) over all its objects for every row
    inserted, so a track of n objects costs O(n²) (2,000 objects: 9.5 s here). For a bulk
    insert the trigger is dropped, the rows inserted, and the trigger re-created from its own
    stored SQL, all inside this transaction (SQLite DDL is transactional: no other connection
    ever sees the table without it); the last row goes in with the trigger back in place, so
    the schema's own trigger computes the summary once, over every row.
    """
    rows = [(track_id, oid, int(seq)) for oid, seq in rows]
    sql = "INSERT INTO track_objects (track_id, object_id, sequence_idx) VALUES (?, ?, ?)"
    trigger = tx.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?",
                         (INSERT_TRIGGER,)).fetchone()
    if len(rows) < BULK_ROWS or trigger is None:
        tx.executemany(sql, rows)
        return
    tx.execute(f"DROP TRIGGER {INSERT_TRIGGER}")
    try:
        tx.executemany(sql, rows[:-1])
    finally:
        tx.execute(trigger[0])
    tx.execute(sql, rows[-1])  # fires the trigger once: the summary covers every row


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


def _track_row(conn: Connection, track_id: str) -> dict:
    rows = conn.query("SELECT track_id, source_id, category_id FROM tracks WHERE track_id = ?", (track_id,))
    if not rows:
        raise ValueError(f"unknown track id {track_id!r}: no such track (deleted, or re-made by the tracker); "
                         "list a source's tracks with Registry.list_tracks")
    return rows[0]


def _resequence_tx(tx, track_id: str) -> None:
    """Renumbers ``sequence_idx`` 0..n-1 in frame order (objects without a frame last)."""
    rows = tx.execute(
        "SELECT t.object_id FROM track_objects t JOIN objects o USING (object_id) "
        "LEFT JOIN frames f ON f.frame_id = o.frame_id WHERE t.track_id = ? "
        "ORDER BY f.frame_idx IS NULL, f.frame_idx, t.sequence_idx, t.object_id", (track_id,)).fetchall()
    tx.executemany("UPDATE track_objects SET sequence_idx = ? WHERE track_id = ? AND object_id = ?",
                   [(seq, track_id, oid) for seq, (oid,) in enumerate(rows)])


def add_objects_to_track(conn: Connection, version: str, track_id: str, object_ids: Sequence[str]) -> int:
    """Adds objects to an existing track; ``sequence_idx`` is renumbered in frame order.

    Rules (checked before anything is written; a ValueError names the offending object):
    the objects exist, belong to the track's source, have the track's category (when it has
    one), are in no other track, and no two objects of the track lie on the same frame (a
    track follows one object: at most one object per frame). Objects already in this track
    are skipped. The track's ``object_count``/``start/end_frame_idx``/``avg_confidence`` are
    kept by triggers.

    Returns:
        The number of objects newly added.
    """
    track = _track_row(conn, track_id)
    ids = list(dict.fromkeys(object_ids))
    if not ids:
        return 0
    objs = {o["object_id"]: o for o in get_objects(conn, version, ids)}
    missing = [i for i in ids if i not in objs]
    if missing:
        raise ValueError(f"unknown object ids {missing[:5]}; nothing added to track {track_id}")
    for oid in ids:
        o = objs[oid]
        if o["source_id"] != track["source_id"]:
            raise ValueError(f"object {oid} is on source {o['source_id']}, expected the track's source "
                             f"{track['source_id']}; nothing added to track {track_id}")
        if track["category_id"] is not None and o["category_id"] != track["category_id"]:
            raise ValueError(f"object {oid} has category {o['category']!r}, expected the track's category "
                             f"(id {track['category_id']}); relabel the object first; nothing added to track {track_id}")
    marks = ",".join("?" * len(ids))
    with conn.transaction() as tx:
        other = tx.execute(
            f"SELECT object_id, track_id FROM track_objects WHERE object_id IN ({marks}) AND track_id <> ?",
            (*ids, track_id)).fetchall()
        if other:
            raise ValueError(f"object {other[0][0]} is already in track {other[0][1]}; remove it from that track "
                             f"(or delete that track) first; nothing added to track {track_id}")
        present = {r[0] for r in tx.execute(
            f"SELECT object_id FROM track_objects WHERE track_id = ? AND object_id IN ({marks})", (track_id, *ids))}
        new = [i for i in ids if i not in present]
        if not new:
            return 0
        # Only the new objects' frames are looked at (idx_objects_frame), so appending to a long
        # track stays cheap (importers and propagation append frame by frame).
        fids = sorted({objs[oid]["frame_id"] for oid in new if objs[oid]["frame_id"] is not None})
        taken = dict(tx.execute(
            f"SELECT o.frame_id, o.object_id FROM objects o JOIN track_objects t ON t.object_id = o.object_id "
            f"AND t.track_id = ? WHERE o.frame_id IN ({','.join('?' * len(fids))})", (track_id, *fids)).fetchall()
        ) if fids else {}
        for oid in new:
            fid = objs[oid]["frame_id"]
            if fid is None:
                continue
            if fid in taken:
                raise ValueError(f"object {oid} lies on frame {fid}, where track {track_id} already has object "
                                 f"{taken[fid]} (one object per frame); delete that object or split the track first")
            taken[fid] = oid
        start, end = tx.execute(
            "SELECT coalesce(max(sequence_idx) + 1, 0), (SELECT end_frame_idx FROM tracks WHERE track_id = ?) "
            "FROM track_objects WHERE track_id = ?", (track_id, track_id)).fetchone()
        at = dict(tx.execute(f"SELECT frame_id, frame_idx FROM frames WHERE frame_id IN ({','.join('?' * len(fids))})",
                             fids).fetchall()) if fids else {}
        new_idx = [at.get(objs[oid]["frame_id"]) for oid in new]
        if all(i is not None for i in new_idx) and (end is None or min(new_idx) > end):
            # All after the track's last frame: numbered in frame order, nothing else moves.
            order = sorted(range(len(new)), key=lambda k: new_idx[k])
            insert_members_tx(tx, track_id, [(new[k], start + r) for r, k in enumerate(order)])
        else:
            insert_members_tx(tx, track_id, [(oid, start + k) for k, oid in enumerate(new)])
            _resequence_tx(tx, track_id)
    return len(new)


TRACK_COLUMNS = """
    t.track_id, t.source_id, t.category_id, c.name AS category, t.start_frame_idx, t.end_frame_idx,
    t.object_count, t.avg_confidence, t.metadata, t.created_at
"""


def list_tracks(conn: Connection, source_id: str) -> list[dict]:
    """The tracks of a source, ordered by first frame (then creation), as dicts.

    Each dict: ``track_id``, ``source_id``, ``category_id``, ``category`` (name, None when the
    track has none), ``start_frame_idx``/``end_frame_idx`` (original 0-based frame indices,
    None for a track without framed objects), ``object_count``, ``avg_confidence`` (mean of the
    objects' confidences, None when none has one), ``metadata`` (decoded dict or None),
    ``created_at``. Raises ValueError for an unknown source.
    """
    if conn.scalar("SELECT 1 FROM sources WHERE source_id = ?", (source_id,)) is None:
        raise ValueError(f"unknown source id {source_id!r}; list sources with `launch.py stats` or the Video tab")
    rows = conn.query(
        f"SELECT {TRACK_COLUMNS} FROM tracks t LEFT JOIN categories c ON c.category_id = t.category_id "
        "WHERE t.source_id = ? ORDER BY t.start_frame_idx IS NULL, t.start_frame_idx, t.created_at, t.rowid",
        (source_id,))
    for r in rows:
        r["metadata"] = json.loads(r["metadata"]) if r["metadata"] else None
    return rows


TRACKER_MADE = ("json_extract(t.metadata, '$.created_by') = 'tracker' "
                "AND json_extract(t.metadata, '$.edited_by') IS NULL")


def tracker_tracks(conn: Connection, source_id: str) -> dict[str, dict]:
    """The source's tracker-made, unedited tracks: ``track_id -> {"detections": frozenset of
    object ids (interpolated ones left out), "metadata": dict}``."""
    out: dict[str, dict] = {}
    for r in conn.query(
            "SELECT t.track_id, t.metadata, x.object_id, coalesce(json_extract(o.metadata, '$.interpolated'), 0) AS interp "
            f"FROM tracks t LEFT JOIN track_objects x USING (track_id) LEFT JOIN objects o USING (object_id) "
            f"WHERE t.source_id = ? AND {TRACKER_MADE}", (source_id,)):
        t = out.setdefault(r["track_id"], {"detections": set(), "metadata": json.loads(r["metadata"])})
        if r["object_id"] is not None and not r["interp"]:
            t["detections"].add(r["object_id"])
    for t in out.values():
        t["detections"] = frozenset(t["detections"])
    return out


def delete_tracker_tracks(conn: Connection, source_id: str, *, delete_interpolated: bool = True,
                          keep: Sequence[str] = ()) -> dict:
    """Deletes the source's tracks the tracker made that no person edited, in one transaction.

    A track is tracker-made when ``metadata.created_by == "tracker"``; edited when
    ``metadata.edited_by`` is set (any value). Edited and person-made tracks are never touched,
    nor the tracks named in ``keep`` (a re-run that found the same track again).
    With ``delete_interpolated`` the interpolated objects (``metadata.interpolated`` true) of
    the deleted tracks go too, since the tracker made them (their vectors, if an embed pass
    gave them any, leave the index through the outbox); detections stay (only unlinked).

    Returns:
        ``{"tracks": n_deleted_tracks, "objects": n_deleted_interpolated_objects}``.
    """
    if conn.scalar("SELECT 1 FROM sources WHERE source_id = ?", (source_id,)) is None:
        raise ValueError(f"unknown source id {source_id!r}; nothing deleted")
    with conn.transaction() as tx:
        spared = set(keep)
        tids = [r[0] for r in tx.execute(
            f"SELECT t.track_id FROM tracks t WHERE t.source_id = ? AND {TRACKER_MADE}", (source_id,))
            if r[0] not in spared]
        n_objects = 0
        if not tids:
            return {"tracks": 0, "objects": 0}
        marks = ",".join("?" * len(tids))
        doomed = []
        if delete_interpolated:
            doomed = [r[0] for r in tx.execute(
                f"SELECT x.object_id FROM track_objects x JOIN objects o USING (object_id) WHERE x.track_id IN ({marks}) "
                "AND json_extract(o.metadata, '$.interpolated') = 1", tids)]
        # Tracks first: deleting their objects while the tracks exist would refresh each track's
        # summary once per object (the schema's delete trigger), O(n²) for a long track.
        tx.execute(f"DELETE FROM tracks WHERE track_id IN ({marks})", tids)
        for start in range(0, len(doomed), 500):
            chunk = doomed[start:start + 500]
            # an embed pass may have given them vectors: those leave the index through the outbox
            # (else they would stay orphaned, and pile up on the same frames with each re-run)
            by_version: dict[str, list[str]] = {}
            for oid, ver in tx.execute(f"SELECT object_id, version_id FROM embeddings WHERE object_id IN "
                                       f"({','.join('?' * len(chunk))})", chunk):
                by_version.setdefault(ver, []).append(oid)
            for ver, oids in by_version.items():
                outbox.enqueue_tx(tx, oids, ver, "delete")
            n_objects += tx.execute(f"DELETE FROM objects WHERE object_id IN ({','.join('?' * len(chunk))})",
                                    chunk).rowcount
    return {"tracks": len(tids), "objects": n_objects}


def tracking_inputs(conn: Connection, source_id: str, *, version: str | None = None, embeddings: bool = True) -> dict:
    """What the tracker reads for one video source, in a few queries (no per-object lookups).

    Args:
        source_id: the video source.
        version: the embedding version to read; None picks the version most of the source's
            objects have (so the CLI needs no model to know it).
        embeddings: False leaves the vectors out (``"embeddings"`` is then empty).

    Returns:
        ``{"frames": [(frame_id, frame_idx)] in frame order, "objects": [dict], "embeddings":
        {object_id: (dim,) float32}, "version": str | None}``. Each object dict has
        ``object_id, frame_id, frame_idx, category_id, category, xyxy`` (absolute pixels),
        ``confidence, validation_status, detection_model, interpolated`` (bool) and
        ``kept_track``: the id of a track that re-running the tracker keeps (edited or not
        tracker-made) when the object is in one, else None. Objects without a frame are left out.
    """
    source = conn.query("SELECT source_type FROM sources WHERE source_id = ?", (source_id,))
    if not source:
        raise ValueError(f"unknown source id {source_id!r}; add the video with `launch.py video add`")
    frame_rows = conn.query("SELECT frame_id, frame_idx FROM frames WHERE source_id = ? ORDER BY frame_idx",
                            (source_id,))
    objects = conn.query(
        "SELECT o.object_id, o.frame_id, f.frame_idx, o.category_id, c.name AS category, o.bbox_x, o.bbox_y, "
        "o.bbox_w, o.bbox_h, o.confidence, o.validation_status, o.detection_model, "
        "coalesce(json_extract(o.metadata, '$.interpolated'), 0) AS interpolated, "
        "(SELECT t.track_id FROM track_objects x JOIN tracks t USING (track_id) WHERE x.object_id = o.object_id "
        f"AND NOT coalesce({TRACKER_MADE}, 0) ORDER BY t.created_at LIMIT 1) AS kept_track "
        "FROM objects o JOIN frames f ON f.frame_id = o.frame_id JOIN categories c ON c.category_id = o.category_id "
        "WHERE o.source_id = ? ORDER BY f.frame_idx, o.rowid", (source_id,))
    for o in objects:
        x, y, w, h = (o.pop(k) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
        o["xyxy"] = (x, y, x + w, y + h)
        o["interpolated"] = bool(o["interpolated"])
    if version is None:
        version = conn.scalar(
            "SELECT e.version_id FROM embeddings e JOIN objects o USING (object_id) WHERE o.source_id = ? "
            "GROUP BY e.version_id ORDER BY count(*) DESC, e.version_id LIMIT 1", (source_id,))
    vectors = {}
    if version is not None and embeddings:
        for r in conn.query("SELECT e.object_id, e.dim, e.vector FROM embeddings e JOIN objects o USING (object_id) "
                            "WHERE o.source_id = ? AND e.version_id = ?", (source_id, version)):
            vectors[r["object_id"]] = vector_from_blob(r["vector"], r["dim"])
    return {"frames": [(r["frame_id"], r["frame_idx"]) for r in frame_rows], "objects": objects,
            "embeddings": vectors, "version": version}


def track_members(conn: Connection, source_id: str) -> list[dict]:
    """Every framed object of the source's tracks: ``track_id, object_id, frame_idx, category,
    bbox_xywh`` (absolute pixels), ``is_occluded``, ``confidence``, ``validation_status``; by track
    then frame."""
    rows = conn.query(
        "SELECT x.track_id, o.object_id, f.frame_idx, c.name AS category, o.bbox_x, o.bbox_y, o.bbox_w, o.bbox_h, "
        "o.is_occluded, o.confidence, o.validation_status FROM tracks t JOIN track_objects x USING (track_id) "
        "JOIN objects o USING (object_id) JOIN frames f ON f.frame_id = o.frame_id "
        "JOIN categories c ON c.category_id = o.category_id WHERE t.source_id = ? ORDER BY x.track_id, f.frame_idx",
        (source_id,))
    for r in rows:
        r["bbox_xywh"] = [r.pop("bbox_x"), r.pop("bbox_y"), r.pop("bbox_w"), r.pop("bbox_h")]
        r["is_occluded"] = bool(r["is_occluded"])
    return rows


def update_track_metadata(conn: Connection, track_id: str, patch: dict) -> dict:
    """Merges ``patch`` into the track's metadata (a None value removes the key); returns it."""
    if not isinstance(patch, dict):
        raise ValueError(f"expected the metadata patch as a dict, got {type(patch).__name__}")
    with conn.transaction() as tx:
        row = tx.execute("SELECT metadata FROM tracks WHERE track_id = ?", (track_id,)).fetchone()
        if row is None:
            raise ValueError(f"unknown track id {track_id!r}; nothing changed")
        meta = json.loads(row[0]) if row[0] else {}
        for k, v in patch.items():
            if v is None:
                meta.pop(k, None)
            else:
                meta[k] = v
        tx.execute("UPDATE tracks SET metadata = ? WHERE track_id = ?", (json_or_none(meta, "track metadata"), track_id))
    return meta
