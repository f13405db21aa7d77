"""Frames of video sources: where their image files live, bulk registration, lookups.

The one path rule: frame ``frame_idx`` (original 0-based index) of source ``source_id`` is
stored as ``media/frames/<source_id>/<frame_idx:06d>.png`` under the data folder; the
``frames`` row keeps that path relative to the data folder and lookups return it absolute.
An object lies on its frame's image when ``frame_id`` is set, else on its source's file
(:func:`frame_file`): boxes and masks are in that image's pixels (the video's width x height).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from registry.db import Connection
from registry.ids import new_ids

#: Folder (relative to the data folder) holding one sub-folder of PNG frames per video source.
FRAME_DIR = "media/frames"


def frame_rel_path(source_id: str, frame_idx: int) -> str:
    """``media/frames/<source_id>/<frame_idx:06d>.png`` (relative to the data folder, POSIX)."""
    if int(frame_idx) < 0:
        raise ValueError(f"expected frame_idx >= 0, got {frame_idx}")
    return f"{FRAME_DIR}/{source_id}/{int(frame_idx):06d}.png"


def _absolute(data_dir: Path, path: str | None) -> str | None:
    if not path:
        return None
    return path if os.path.isabs(path) else str(Path(data_dir) / path)


def _frame_dict(data_dir: Path, row: dict) -> dict:
    out = dict(row)
    out["file_path"] = _absolute(data_dir, row.get("file_path") or frame_rel_path(row["source_id"], row["frame_idx"]))
    return out


def add_frames(conn: Connection, source_id: str, rows: Sequence[tuple[int, float | None, str | None]]) -> int:
    """Adds ``(frame_idx, timestamp seconds, file path relative to the data folder)`` rows in ONE
    transaction; frames already registered are kept (a missing path is filled in).

    Returns:
        The number of frame rows created.

    Raises:
        ValueError: unknown source, or a negative frame index (nothing written).
    """
    rows = list(rows)
    bad = [r[0] for r in rows if int(r[0]) < 0]
    if bad:
        raise ValueError(f"expected frame indices >= 0, got {bad[:5]}; nothing written")
    with conn.transaction() as tx:
        if tx.execute("SELECT 1 FROM sources WHERE source_id = ?", (source_id,)).fetchone() is None:
            raise ValueError(f"unknown source id {source_id!r}; register the video first")
        before = tx.execute("SELECT count(*) FROM frames WHERE source_id = ?", (source_id,)).fetchone()[0]
        ids = new_ids("frm", len(rows))
        tx.executemany(
            "INSERT INTO frames (frame_id, source_id, frame_idx, timestamp, file_path) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (source_id, frame_idx) DO UPDATE SET file_path = coalesce(frames.file_path, excluded.file_path)",
            [(fid, source_id, int(i), None if t is None else float(t), p) for fid, (i, t, p) in zip(ids, rows, strict=True)],
        )
        after = tx.execute("SELECT count(*) FROM frames WHERE source_id = ?", (source_id,)).fetchone()[0]
    return int(after - before)


def list_frames(conn: Connection, data_dir: Path, source_id: str, *, limit: int | None = None,
                offset: int = 0) -> list[dict]:
    """The source's frames in frame order: ``frame_id, source_id, frame_idx, timestamp,
    file_path`` (absolute), ``created_at``, and ``object_count``."""
    rows = conn.query(
        "SELECT f.*, (SELECT count(*) FROM objects o WHERE o.frame_id = f.frame_id) AS object_count "
        "FROM frames f WHERE f.source_id = ? ORDER BY f.frame_idx LIMIT ? OFFSET ?",
        (source_id, -1 if limit is None else int(limit), int(offset)),
    )
    return [_frame_dict(data_dir, r) for r in rows]


def count_frames(conn: Connection, source_id: str) -> int:
    """The number of registered frames of a source."""
    return int(conn.scalar("SELECT count(*) FROM frames WHERE source_id = ?", (source_id,)))


def frame_ids_by_index(conn: Connection, source_id: str) -> dict[int, str]:
    """``frame_idx -> frame_id`` of a source's registered frames."""
    return {int(i): f for i, f in conn.execute(
        "SELECT frame_idx, frame_id FROM frames WHERE source_id = ?", (source_id,)).fetchall()}


def get_frame(conn: Connection, data_dir: Path, frame_id: str) -> dict:
    """The frame row (``file_path`` absolute). Raises ValueError for unknown ids."""
    rows = conn.query("SELECT * FROM frames WHERE frame_id = ?", (frame_id,))
    if not rows:
        raise ValueError(f"unknown frame id {frame_id!r}; add the video's frames first (launch.py video add)")
    return _frame_dict(data_dir, rows[0])


def frame_file(conn: Connection, data_dir: Path, obj_or_frame: dict | str) -> Path:
    """The image file an object (or a frame, or a source) lies on, absolute.

    Args:
        obj_or_frame: an object dict (``frame_id``, ``source_id``), a frame dict (``frame_id``,
            ``frame_idx``, ``file_path``), or an id (``obj_…``, ``frm_…``, ``src_…``).

    Returns:
        The frame's PNG when ``frame_id`` is set, else the source's file.

    Raises:
        ValueError: an unknown id, or a dict with neither ``frame_id`` nor ``source_id``.
    """
    item = obj_or_frame
    if isinstance(item, str):
        prefix = item.split("_", 1)[0]
        if prefix == "frm":
            return Path(get_frame(conn, data_dir, item)["file_path"])
        if prefix == "obj":
            rows = conn.query("SELECT source_id, frame_id FROM objects WHERE object_id = ?", (item,))
            if not rows:
                raise ValueError(f"unknown object id {item!r}")
            item = rows[0]
        elif prefix == "src":
            item = {"source_id": item, "frame_id": None}
        else:
            raise ValueError(f"expected an obj_…, frm_… or src_… id, got {item!r}")
    if not isinstance(item, dict):
        raise ValueError(f"expected an object/frame dict or an id, got {type(item).__name__}")
    frame_id = item.get("frame_id")
    if frame_id:
        if "frame_idx" in item and item.get("file_path"):
            return Path(_absolute(data_dir, item["file_path"]))
        return Path(get_frame(conn, data_dir, frame_id)["file_path"])
    source_id = item.get("source_id")
    if not source_id:
        raise ValueError("expected a dict with 'frame_id' or 'source_id', got neither")
    rows = conn.query("SELECT file_path FROM sources WHERE source_id = ?", (source_id,))
    if not rows:
        raise ValueError(f"unknown source id {source_id!r}")
    path = _absolute(data_dir, rows[0]["file_path"])
    if path is None:
        raise ValueError(f"source {source_id!r} has no file stored")
    return Path(path)


def discard_frames(conn: Connection, source_id: str, frame_idxs: Sequence[int]) -> int:
    """Removes frame rows (of ``frame_idxs``) that no object refers to, in one transaction.

    Used to undo a failed ``video add``; returns the number of rows removed.
    """
    idxs = [int(i) for i in frame_idxs]
    removed = 0
    with conn.transaction() as tx:
        for start in range(0, len(idxs), 500):
            part = idxs[start:start + 500]
            cur = tx.execute(
                f"DELETE FROM frames WHERE source_id = ? AND frame_idx IN ({','.join('?' * len(part))}) "
                "AND NOT EXISTS (SELECT 1 FROM objects o WHERE o.frame_id = frames.frame_id)",
                (source_id, *part),
            )
            removed += cur.rowcount
    return removed


def discard_source(conn: Connection, source_id: str) -> bool:
    """Deletes a source row that has no frames, objects or tracks (undoing a failed
    registration); returns whether it was deleted. The media file is the caller's to remove."""
    with conn.transaction() as tx:
        cur = tx.execute(
            "DELETE FROM sources WHERE source_id = ? "
            "AND NOT EXISTS (SELECT 1 FROM frames WHERE source_id = ?) "
            "AND NOT EXISTS (SELECT 1 FROM objects WHERE source_id = ?) "
            "AND NOT EXISTS (SELECT 1 FROM tracks WHERE source_id = ?)",
            (source_id, source_id, source_id, source_id),
        )
    return cur.rowcount > 0


def set_frame_count(conn: Connection, source_id: str, frame_count: int) -> None:
    """Stores the frame count a full decode found (headers may only estimate it)."""
    if int(frame_count) < 0:
        raise ValueError(f"expected frame_count >= 0, got {frame_count}")
    with conn.transaction() as tx:
        tx.execute("UPDATE sources SET frame_count = ? WHERE source_id = ?", (int(frame_count), source_id))
