"""Track edits a person makes: merge, split at a frame, delete, relabel, approve a whole track.

Every edit stamps ``metadata.edited_by`` / ``metadata.edited_at`` (UTC, the schema's timestamp
format) on each track it leaves behind, so re-running the tracker (which replaces only
tracker-made, unedited tracks) never undoes a person's work. Each edit is one write
transaction: on any error nothing is written.

Rules chosen here:

* **merge** keeps the first track (its id, category and metadata) and moves the second track's
  objects into it; the second track is deleted. Tracks of different sources or categories are
  refused (relabel one first). When both tracks hold an object on the same frame the merge is
  refused by default (``keep="refuse"``); ``keep="confidence"`` keeps the higher-confidence
  object of each such frame in the track (the other one stays in the registry, untracked).
* **split** at frame ``K``: objects on frames ``>= K`` go to a new track (same category,
  metadata copied); both halves must be non-empty.
* **delete** removes the track; its objects stay unless ``with_objects=True`` (then they are
  deleted too, their vectors leave the index through the outbox).
* **relabel** sets the category of the track and of all its objects.
* **approve** marks every object of the track approved by ``edited_by``.

Frame numbers are ``frames.frame_idx`` (original 0-based frame index of the video).
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from registry import outbox
from registry.categories import check_category_name, resolve_category_tx
from registry.db import Connection
from registry.ids import new_id, utc_now
from registry.tracks import insert_members_tx

#: The schema's per-row trigger that refreshes a track's summary when a member row goes.
DELETE_TRIGGER = "trg_track_objects_delete"

KEEP_RULES = ("refuse", "confidence")


def _track_row(tx: sqlite3.Connection, track_id: str) -> dict:
    row = tx.execute("SELECT track_id, source_id, category_id, metadata FROM tracks WHERE track_id = ?",
                     (track_id,)).fetchone()
    if row is None:
        raise ValueError(f"unknown track id {track_id!r}: no such track (deleted or merged?); "
                         "list the source's tracks for current ids")
    return {"track_id": row[0], "source_id": row[1], "category_id": row[2],
            "metadata": json.loads(row[3]) if row[3] else {}}


def _members(tx: sqlite3.Connection, track_id: str) -> list[tuple[str, int | None, float | None]]:
    """``(object_id, frame_idx, confidence)`` of a track's objects in frame order."""
    return [tuple(r) for r in tx.execute(
        "SELECT t.object_id, f.frame_idx, o.confidence FROM track_objects t JOIN objects o USING (object_id) "
        "LEFT JOIN frames f ON f.frame_id = o.frame_id WHERE t.track_id = ? "
        "ORDER BY f.frame_idx, t.sequence_idx", (track_id,)).fetchall()]


def _check_user(edited_by: str) -> str:
    who = (edited_by or "").strip() if isinstance(edited_by, str) else ""
    if not who:
        raise ValueError(f"expected the name of the person editing (edited_by), got {edited_by!r}; "
                         "type a reviewer name or log in")
    return who


def _stamp(tx: sqlite3.Connection, track_id: str, meta: dict, who: str, now: str, action: str) -> None:
    meta = dict(meta or {})
    meta["edited_by"] = who
    meta["edited_at"] = now
    meta["last_edit"] = action
    tx.execute("UPDATE tracks SET metadata = ? WHERE track_id = ?", (json.dumps(meta), track_id))


def _relink(tx: sqlite3.Connection, track_id: str, object_ids: Sequence[str]) -> None:
    """Makes ``object_ids`` (in frame order) the whole membership of the track.

    Deletes and re-inserts rows (rather than UPDATE) because the summary triggers fire on
    INSERT/DELETE of ``track_objects`` only. The per-row triggers recompute the summary over the
    whole track each time (O(n²): a 1,000-object split took 1.3 s), so the delete runs with the
    delete trigger dropped (re-created in this transaction) and the insert goes through
    :func:`registry.tracks.insert_members_tx`, whose last row refreshes the summary once.
    """
    ids = list(object_ids)
    trigger = tx.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?",
                         (DELETE_TRIGGER,)).fetchone()
    if ids and trigger is not None:  # the insert below refreshes the summary
        tx.execute(f"DROP TRIGGER {DELETE_TRIGGER}")
        try:
            tx.execute("DELETE FROM track_objects WHERE track_id = ?", (track_id,))
        finally:
            tx.execute(trigger[0])
    else:
        tx.execute("DELETE FROM track_objects WHERE track_id = ?", (track_id,))
    insert_members_tx(tx, track_id, [(oid, i) for i, oid in enumerate(ids)])


def _with_embeddings(tx: sqlite3.Connection, object_ids: Sequence[str], version: str) -> list[str]:
    ids = list(object_ids)
    if not ids:
        return []
    q = ",".join("?" * len(ids))
    have = {r[0] for r in tx.execute(
        f"SELECT object_id FROM embeddings WHERE version_id = ? AND object_id IN ({q})", (version, *ids))}
    return [i for i in ids if i in have]


def _order(members: list[tuple[str, int | None, float | None]]) -> list[str]:
    big = 1 << 62
    return [m[0] for m in sorted(members, key=lambda m: big if m[1] is None else m[1])]


def merge_tracks(conn: Connection, track_id: str, other_id: str, *, edited_by: str, keep: str = "refuse") -> dict:
    """Moves every object of ``other_id`` into ``track_id`` and deletes ``other_id``.

    Args:
        track_id: the track that stays (its id, category and metadata are kept).
        other_id: the track merged into it (deleted afterwards).
        edited_by: who merged (stamped as ``metadata.edited_by``).
        keep: "refuse" (default): a frame with an object in both tracks is an error;
            "confidence": keep the higher-confidence object of such a frame (ties: the first
            track's), the other leaves the track but stays in the registry.

    Returns:
        ``{"track_id", "merged": other_id, "moved": n, "dropped": [object ids left out]}``.
    """
    who = _check_user(edited_by)
    if keep not in KEEP_RULES:
        raise ValueError(f"expected keep in {KEEP_RULES}, got {keep!r}")
    if track_id == other_id:
        raise ValueError(f"cannot merge track {track_id!r} with itself: pick two different tracks")
    with conn.transaction() as tx:
        a, b = _track_row(tx, track_id), _track_row(tx, other_id)
        if a["source_id"] != b["source_id"]:
            raise ValueError(f"tracks {track_id} and {other_id} belong to different sources "
                             f"({a['source_id']} vs {b['source_id']}); only tracks of one video can merge")
        if a["category_id"] != b["category_id"]:
            names = dict(tx.execute("SELECT category_id, name FROM categories WHERE category_id IN (?, ?)",
                                    (a["category_id"], b["category_id"])).fetchall())
            raise ValueError(f"tracks {track_id} ({names.get(a['category_id'])}) and {other_id} "
                             f"({names.get(b['category_id'])}) have different categories; relabel one track first")
        ma, mb = _members(tx, track_id), _members(tx, other_id)
        by_frame = {m[1]: m for m in ma if m[1] is not None}
        # an object linked into both tracks is one object, not a conflict
        shared = [(by_frame[m[1]], m) for m in mb
                  if m[1] is not None and m[1] in by_frame and by_frame[m[1]][0] != m[0]]
        if shared and keep == "refuse":
            frames = sorted(x[1] for x, _ in shared)
            raise ValueError(f"tracks {track_id} and {other_id} both have an object on frame(s) {frames[:10]}; "
                             "split or edit one track first, or merge keeping the higher-confidence object")
        dropped: set[str] = set()
        for x, y in shared:
            x_conf, y_conf = x[2] if x[2] is not None else -1.0, y[2] if y[2] is not None else -1.0
            dropped.add(y[0] if y_conf <= x_conf else x[0])
        have = {m[0] for m in ma}
        members = [m for m in ma + [m for m in mb if m[0] not in have] if m[0] not in dropped]
        tx.execute("DELETE FROM tracks WHERE track_id = ?", (other_id,))
        _relink(tx, track_id, _order(members))
        now = utc_now()
        meta = a["metadata"]
        meta["merged_from"] = [*meta.get("merged_from", []), other_id]
        _stamp(tx, track_id, meta, who, now, "merge")
    moved = [m for m in mb if m[0] not in dropped and m[0] not in have]
    return {"track_id": track_id, "merged": other_id, "moved": len(moved), "dropped": sorted(dropped)}


def split_track(conn: Connection, track_id: str, frame_idx: int, *, edited_by: str) -> dict:
    """Moves the track's objects on frames ``>= frame_idx`` to a new track.

    Returns:
        ``{"track_id": the original, "new_track_id": the new one, "moved": n}``.
    """
    who = _check_user(edited_by)
    k = int(frame_idx)
    with conn.transaction() as tx:
        t = _track_row(tx, track_id)
        members = _members(tx, track_id)
        before = [m[0] for m in members if m[1] is not None and m[1] < k]
        after = [m[0] for m in members if m[1] is None or m[1] >= k]
        frames = [m[1] for m in members if m[1] is not None]
        if not before or not after:
            span = f"{min(frames)}-{max(frames)}" if frames else "none"
            raise ValueError(f"cannot split track {track_id} at frame {k}: expected objects before and from that "
                             f"frame on, the track spans frames {span}; pick a frame inside the track")
        new_tid = new_id("trk")
        meta = {k_: v for k_, v in t["metadata"].items() if k_ not in ("merged_from", "split_from")}
        meta["split_from"] = track_id
        tx.execute("INSERT INTO tracks (track_id, source_id, category_id, metadata) VALUES (?, ?, ?, ?)",
                   (new_tid, t["source_id"], t["category_id"], json.dumps(meta)))
        _relink(tx, track_id, before)
        _relink(tx, new_tid, after)
        now = utc_now()
        _stamp(tx, track_id, t["metadata"], who, now, "split")
        _stamp(tx, new_tid, meta, who, now, "split")
    return {"track_id": track_id, "new_track_id": new_tid, "moved": len(after)}


def delete_track(conn: Connection, track_id: str, *, version: str, with_objects: bool = False) -> dict:
    """Deletes a track; its objects stay in the registry unless ``with_objects``.

    Returns:
        ``{"track_id", "deleted_objects": n, "queued": bool}`` (``queued``: vector deletes were
        queued for the index, so the caller relays the outbox).
    """
    with conn.transaction() as tx:
        _track_row(tx, track_id)
        ids = [m[0] for m in _members(tx, track_id)]
        tx.execute("DELETE FROM tracks WHERE track_id = ?", (track_id,))
        queued: list[str] = []
        if with_objects and ids:
            queued = _with_embeddings(tx, ids, version)
            tx.execute(f"DELETE FROM objects WHERE object_id IN ({','.join('?' * len(ids))})", ids)
            outbox.enqueue_tx(tx, queued, version, "delete")
    return {"track_id": track_id, "deleted_objects": len(ids) if with_objects else 0, "queued": bool(queued)}


def relabel_track(conn: Connection, track_id: str, category: str, *, version: str, edited_by: str) -> dict:
    """Sets the category of the track and of every object in it (created when new).

    Returns:
        ``{"track_id", "category": name, "objects": n, "queued": bool}``.
    """
    who = _check_user(edited_by)
    name = check_category_name(category)
    with conn.transaction() as tx:
        t = _track_row(tx, track_id)
        ids = [m[0] for m in _members(tx, track_id)]
        cid = resolve_category_tx(tx, name)
        tx.execute("UPDATE tracks SET category_id = ? WHERE track_id = ?", (cid, track_id))
        if ids:
            tx.execute(f"UPDATE objects SET category_id = ? WHERE object_id IN ({','.join('?' * len(ids))})",
                       (cid, *ids))
        queued = _with_embeddings(tx, ids, version)
        outbox.enqueue_tx(tx, queued, version, "upsert")  # the index filters on category
        _stamp(tx, track_id, t["metadata"], who, utc_now(), "relabel")
        stored = tx.execute("SELECT name FROM categories WHERE category_id = ?", (cid,)).fetchone()[0]
    return {"track_id": track_id, "category": stored, "objects": len(ids), "queued": bool(queued)}


def approve_track(conn: Connection, track_id: str, *, version: str, edited_by: str) -> dict:
    """Marks every object of the track approved by ``edited_by`` (``validated_at`` = now).

    Returns:
        ``{"track_id", "approved": n, "queued": bool}``.
    """
    who = _check_user(edited_by)
    with conn.transaction() as tx:
        t = _track_row(tx, track_id)
        ids = [m[0] for m in _members(tx, track_id)]
        if not ids:
            raise ValueError(f"track {track_id} has no objects to approve")
        now = utc_now()
        tx.execute("UPDATE objects SET validation_status = 'approved', is_validated = 1, validated_by = ?, "
                   f"validated_at = ? WHERE object_id IN ({','.join('?' * len(ids))})", (who, now, *ids))
        queued = _with_embeddings(tx, ids, version)
        outbox.enqueue_tx(tx, queued, version, "upsert")  # the index filters on status
        _stamp(tx, track_id, t["metadata"], who, now, "approve")
    return {"track_id": track_id, "approved": len(ids), "queued": bool(queued)}
