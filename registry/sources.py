"""Sources (image/video/text files) and their frames: registration, lookup, metadata.

A source is identified by the sha256 of its bytes (``sources.content_hash`` is unique), so the
same file is never registered twice. Sizes are the image's as the pipeline sees it: ``width``
= columns and ``height`` = rows after EXIF orientation. Stored paths under ``<data>/media`` are
relative to the data folder and returned absolute.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

import image_header
from registry.db import Connection
from registry.ids import new_id
from registry.validation import json_or_none

MEDIA_DIR = "media"


def _file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) as the pipeline sees the image: EXIF orientation 5-8 swaps them
    (:func:`image_header.image_size`, the one size function of every path); over the pixel
    limit is refused."""
    try:
        return image_header.image_size(path)
    except ValueError as exc:
        if "above the limit" in str(exc):
            raise  # already says what to do (downscale)
        raise ValueError(
            f"expected an image file for source_type='image': {exc}; pass width/height or a "
            "different source_type"
        ) from exc


def register_source(
    conn: Connection,
    data_dir: Path,
    path: str | os.PathLike,
    *,
    source_type: str = "image",
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    frame_count: int | None = None,
    metadata: dict | None = None,
    copy: bool = True,
    project: str | None = None,
) -> str:
    """Registers an image/video file; the same bytes always give the same ``src_…`` id.

    With ``copy=True`` the file is copied to ``<data>/media/<hash[:2]>/<hash><ext>`` and the
    stored path is that copy; otherwise the given absolute path is stored. For images
    ``width``/``height`` default to the file's (after EXIF orientation).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: bad source_type, sizes, fps or metadata; an unreadable image.
    """
    src = Path(path).expanduser()
    if not src.is_file():
        raise FileNotFoundError(f"expected an existing file to register, got {str(src)!r}")
    if source_type not in ("image", "video", "text"):
        raise ValueError(f"expected source_type 'image', 'video' or 'text', got {source_type!r}")
    for what, v in (("width", width), ("height", height)):
        if v is not None and (not isinstance(v, (int, np.integer)) or int(v) <= 0):
            raise ValueError(f"expected a positive integer {what}, got {v!r}")
    if fps is not None and (not math.isfinite(float(fps)) or float(fps) <= 0):
        raise ValueError(f"expected a positive fps, got {fps!r}")
    if frame_count is not None and int(frame_count) < 0:
        raise ValueError(f"expected frame_count >= 0, got {frame_count!r}")
    meta_json = json_or_none(metadata, "metadata")
    digest = _file_sha256(src)
    existing = find_source_by_hash(conn, data_dir, digest)
    if existing is not None:
        return existing["source_id"]
    if source_type == "image" and (width is None or height is None):
        w, h = _image_size(src)
        width = w if width is None else width
        height = h if height is None else height
    if source_type == "image":  # sizes given by the caller meet the same pixel limit
        image_header.check_pixels(int(width), int(height), repr(src.name))
    stored_path = str(src.resolve())
    if copy:
        rel = Path(MEDIA_DIR) / digest[:2] / f"{digest}{src.suffix.lower()}"
        target = data_dir / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            # Copy to a temporary name then rename: a crash never leaves a half file in place.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            os.close(fd)
            try:
                shutil.copyfile(src, tmp)
                os.replace(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        stored_path = rel.as_posix()
    source_id = new_id("src")
    with conn.transaction() as tx:
        tx.execute(
            """INSERT INTO sources (source_id, source_type, file_path, file_name, width, height,
                   frame_count, fps, content_hash, project_id, metadata)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (content_hash) DO NOTHING""",
            (source_id, source_type, stored_path, src.name,
             None if width is None else int(width), None if height is None else int(height),
             None if frame_count is None else int(frame_count), None if fps is None else float(fps),
             digest, project, meta_json),
        )
        row = tx.execute("SELECT source_id FROM sources WHERE content_hash = ?", (digest,)).fetchone()
    return row[0]


def source_dict(data_dir: Path, row: dict) -> dict:
    """A ``sources`` row as the dict the registry returns (``file_path`` absolute)."""
    path = row.get("file_path")
    if path and not os.path.isabs(path):
        path = str(data_dir / path)
    meta = row.get("metadata")
    return {
        "source_id": row["source_id"],
        "source_type": row["source_type"],
        "file_path": path,
        "file_name": row["file_name"],
        "width": row["width"],
        "height": row["height"],
        "frame_count": row["frame_count"],
        "fps": row["fps"],
        "content_hash": row["content_hash"],
        "project_id": row.get("project_id"),
        "metadata": json.loads(meta) if meta else None,
        "created_at": row["created_at"],
    }


def get_source(conn: Connection, data_dir: Path, source_id: str) -> dict:
    """The source row; ``file_path`` is absolute. Raises ValueError for unknown ids."""
    rows = conn.query("SELECT * FROM sources WHERE source_id = ?", (source_id,))
    if not rows:
        raise ValueError(f"unknown source id {source_id!r}; register the file with register_source() first")
    return source_dict(data_dir, rows[0])


def update_source_metadata(conn: Connection, data_dir: Path, source_id: str, patch: dict) -> dict:
    """Merges ``patch`` into the source's metadata dict and returns the updated source.

    Top-level keys of ``patch`` replace the stored ones; a None value removes the key.
    (Used e.g. to record the settings a source was auto-labeled with.)

    Raises:
        ValueError: unknown source id, or a patch that is not a JSON-serialisable dict.
    """
    if not isinstance(patch, dict):
        raise ValueError(f"expected the metadata patch as a dict, got {type(patch).__name__}")
    with conn.transaction() as tx:
        row = tx.execute("SELECT metadata FROM sources WHERE source_id = ?", (source_id,)).fetchone()
        if row is None:
            raise ValueError(f"unknown source id {source_id!r}; register the file with register_source() first")
        meta = json.loads(row[0]) if row[0] else {}
        for key, value in patch.items():
            if value is None:
                meta.pop(key, None)
            else:
                meta[key] = value
        tx.execute(
            "UPDATE sources SET metadata = ? WHERE source_id = ?",
            (json_or_none(meta or None, "metadata"), source_id),
        )
    return get_source(conn, data_dir, source_id)


def find_source_by_hash(conn: Connection, data_dir: Path, sha256_hex: str) -> dict | None:
    """The source whose content has this sha256 (hex), or None."""
    rows = conn.query("SELECT * FROM sources WHERE content_hash = ?", (str(sha256_hex).lower(),))
    return source_dict(data_dir, rows[0]) if rows else None


def list_sources(conn: Connection, data_dir: Path, *, limit: int | None = None, offset: int = 0) -> list[dict]:
    """Sources in registration order, paginated."""
    rows = conn.query(
        "SELECT * FROM sources ORDER BY created_at, rowid LIMIT ? OFFSET ?",
        (-1 if limit is None else int(limit), int(offset)),
    )
    return [source_dict(data_dir, r) for r in rows]


def count_sources(conn: Connection) -> int:
    """The number of registered sources."""
    return int(conn.scalar("SELECT count(*) FROM sources"))


def add_frame(
    conn: Connection, data_dir: Path, source_id: str, frame_idx: int, *, timestamp: float | None = None, file_path: str | None = None
) -> str:
    """A ``frm_…`` id for frame ``frame_idx`` of a source (the existing one if already added)."""
    if int(frame_idx) < 0:
        raise ValueError(f"expected frame_idx >= 0, got {frame_idx}")
    get_source(conn, data_dir, source_id)
    frame_id = new_id("frm")
    with conn.transaction() as tx:
        tx.execute(
            "INSERT INTO frames (frame_id, source_id, frame_idx, timestamp, file_path) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (source_id, frame_idx) DO NOTHING",
            (frame_id, source_id, int(frame_idx), timestamp, None if file_path is None else str(file_path)),
        )
        row = tx.execute(
            "SELECT frame_id FROM frames WHERE source_id = ? AND frame_idx = ?", (source_id, int(frame_idx))
        ).fetchone()
    return row[0]
