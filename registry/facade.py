"""The registry facade: everything the app and CLI do with stored sources, objects and vectors.

Coordinate conventions: boxes come in as ``xyxy`` (absolute pixels of the source image, x =
column, y = row, ``x0 <= x1 <= width``) and are stored and returned as ``bbox_xywh``; masks are
``(H, W)`` bool arrays of the source image's size (``H`` = height) stored as compressed COCO RLE;
embeddings are ``(embedding_dim,)`` float32 vectors.

SQLite (``<data>/registry.db``) is the source of truth. Vectors go to the index through the
outbox (:mod:`registry.outbox`); the index can always be rebuilt from the ``embeddings`` table.
Returned rows are plain dicts; errors in the caller's input are ``ValueError`` naming the
expected value, the actual one and the fix, and nothing is written when one is raised.
"""
from __future__ import annotations

import colorsys
import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import sqlite3
import tempfile
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

import image_header
from registry import dedupe as overlap
from registry import index_lock, outbox
from registry import masks as rle_ops
from registry.db import Connection
from registry.ids import format_ts, new_id, new_ids, utc_now
from registry.schema import ensure_schema

log = logging.getLogger(__name__)

DB_FILE = "registry.db"
MEDIA_DIR = "media"
_SHARED_INDEX_KINDS = ("chroma", "hnsw")  # on disk, one writer process per data folder
MAX_CATEGORY_NAME = 200
STATUSES = ("pending", "approved", "rejected")
ORDERS = {
    "confidence_asc": "o.confidence ASC, o.rowid ASC",
    "confidence_desc": "o.confidence DESC, o.rowid DESC",
    "created_desc": "o.created_at DESC, o.rowid DESC",
    "created_asc": "o.created_at ASC, o.rowid ASC",
}
_OBJECT_COLUMNS = """
    o.object_id, o.source_id, o.frame_id, o.project_id, o.category_id, c.name AS category,
    o.bbox_x, o.bbox_y, o.bbox_w, o.bbox_h, o.area, o.confidence, o.detection_model,
    o.classification_model, o.classification_confidence, o.validation_status, o.is_validated,
    o.validated_by, o.validated_at, o.quality_score, o.is_occluded, o.is_truncated, o.is_difficult,
    o.mask_h IS NOT NULL AS has_mask, o.metadata, o.created_at, o.updated_at,
    EXISTS (SELECT 1 FROM embeddings e WHERE e.object_id = o.object_id AND e.version_id = ?) AS has_embedding
"""


@dataclass
class ObjectIn:
    """One object to register.

    Attributes:
        category: category name or synonym (case-insensitive); created on demand.
        xyxy: box ``(x0, y0, x1, y1)``, absolute pixels of the source image.
        mask: ``(H, W)`` bool mask of the whole source image, or None.
        mask_rle: the mask already as compressed COCO RLE ``{"size": [H, W], "counts": str}``
            (instead of ``mask``; importers and bulk loaders use it to skip re-encoding).
        confidence: detection confidence in [0, 1], or None.
        embedding: ``(embedding_dim,)`` float32 vector, or None.
    """

    category: str
    xyxy: tuple[float, float, float, float]
    mask: np.ndarray | None = None
    confidence: float | None = None
    embedding: np.ndarray | None = None
    detection_model: str | None = None
    classification_model: str | None = None
    classification_confidence: float | None = None
    frame_id: str | None = None
    quality_score: float | None = None
    is_occluded: bool = False
    is_truncated: bool = False
    is_difficult: bool = False
    validation_status: str = "pending"
    validated_by: str | None = None
    metadata: dict | None = None
    mask_rle: dict | None = None


@dataclass
class RegisterResult:
    """Outcome of :meth:`Registry.register_objects`.

    Attributes:
        object_ids: aligned with the input; None where the object was skipped as a duplicate.
        duplicates: ``(input index, id of the object it duplicates)``.
    """

    object_ids: list[str | None] = field(default_factory=list)
    duplicates: list[tuple[int, str]] = field(default_factory=list)

    @property
    def registered(self) -> list[str]:
        """The ids of the objects actually written."""
        return [i for i in self.object_ids if i is not None]


def name_key(name: str) -> str:
    """The lookup key of a category name or synonym: NFC-normalised, case-folded, stripped."""
    return unicodedata.normalize("NFC", name).strip().casefold()


def check_category_name(name: Any, *, what: str = "category name") -> str:
    """Returns the stripped name, or raises ValueError for empty/overlong/control-character names.

    Quotes, semicolons, slashes and any printable unicode are stored as given (SQL is always
    parameterised); the limit is :data:`MAX_CATEGORY_NAME` characters.
    """
    if not isinstance(name, str):
        raise ValueError(f"expected a {what} as str, got {type(name).__name__}")
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned:
        raise ValueError(f"expected a non-empty {what}, got {name!r}")
    if len(cleaned) > MAX_CATEGORY_NAME:
        raise ValueError(
            f"expected a {what} of at most {MAX_CATEGORY_NAME} characters, got {len(cleaned)}; shorten it"
        )
    bad = [ch for ch in cleaned if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn")]
    if bad:
        raise ValueError(
            f"expected a {what} without control/invisible characters, got {cleaned[:40]!r} "
            f"containing {bad[0]!r}; remove them"
        )
    return cleaned


def stable_color(name: str) -> str:
    """A colour derived from the name's hash: the same name always gets the same ``#rrggbb``."""
    digest = hashlib.sha256(name_key(name).encode("utf-8")).digest()
    hue = int.from_bytes(digest[:2], "big") / 65536.0
    sat = 0.55 + (digest[2] / 255.0) * 0.35
    val = 0.80 + (digest[3] / 255.0) * 0.15
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def _finite_unit(value: Any, what: str) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"expected {what} as a number in [0, 1] or None, got {value!r}") from exc
    if not math.isfinite(f) or f < 0.0 or f > 1.0:
        raise ValueError(f"expected {what} in [0, 1], got {value!r}")
    return f


def _json_or_none(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"expected {what} as a dict or None, got {type(value).__name__}")
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"expected {what} to be JSON-serialisable (no NaN), got {exc}") from exc


def _file_sha256(path: Path) -> str:
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


class Registry:
    """Sources, objects, categories, tracks and vectors of one data folder.

    Args:
        data_dir: the data folder (``registry.db``, ``media/``, the vector index); created when
            missing.
        embedding_dim: length of the stored embeddings (768 for DINOv2-base).
        embedding_version: names the embedding model; one index collection per version.
        index: "chroma", "exact", or a VectorIndex instance (``add``/``delete``/``query``/
            ``count``/``ids``/``reset``).
        dedupe_iou: an object overlapping an existing one (same source, same category) by more
            than this IoU is skipped at registration.
        sync_on_write: relay the outbox to the index after each write (and at open).

    Thread-safe: one SQLite connection guarded by locks; writes are serialised per process and
    use ``BEGIN IMMEDIATE`` across processes.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        *,
        embedding_dim: int = 768,
        embedding_version: str = "dinov2-base",
        index: Any = "chroma",
        dedupe_iou: float = 0.9,
        sync_on_write: bool = True,
    ) -> None:
        if int(embedding_dim) <= 0:
            raise ValueError(f"expected a positive embedding_dim, got {embedding_dim}")
        if not 0.0 < float(dedupe_iou) <= 1.0:
            raise ValueError(f"expected dedupe_iou in (0, 1], got {dedupe_iou}")
        if not isinstance(embedding_version, str) or not embedding_version.strip():
            raise ValueError(f"expected a non-empty embedding_version, got {embedding_version!r}")
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.embedding_dim = int(embedding_dim)
        self.embedding_version = embedding_version
        self.dedupe_iou = float(dedupe_iou)
        self.sync_on_write = bool(sync_on_write)
        self._index_spec = index
        self._index: Any = None if isinstance(index, str) else index
        self._index_lock = threading.Lock()
        self._sync_lock = threading.RLock()  # reentrant: opening a damaged index rebuilds it
        self._writer = False  # holds the folder's index-writer lock (registry.index_lock)
        self.index_recovery: dict | None = None  # set when a damaged index was moved aside and rebuilt
        self.repair_index_on_open = True  # False: a damaged index raises instead (doctor's checks)
        self._conn = Connection(self.data_dir / DB_FILE)
        self.schema_version = ensure_schema(self._conn)
        if self.sync_on_write and outbox.pending_count(self._conn, self.embedding_version):
            self._sync_quietly()

    # -- plumbing ------------------------------------------------------------------------------
    @property
    def db(self):
        """The ``sqlite_utils.Database`` (for registry/ modules; app code uses the methods)."""
        return self._conn.db

    @property
    def connection(self) -> Connection:
        """The locked connection wrapper (registry/ modules)."""
        return self._conn

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_FILE

    def transaction(self):
        """Context manager: one write transaction under the writer lock (yields sqlite3 conn)."""
        return self._conn.transaction()

    @property
    def index(self) -> Any:
        """The vector index, opened on first use.

        A Chroma folder not known to be clean is probed in a child process first
        (:mod:`registry.vectors.probe`), so damaged HNSW files cannot crash this process. When
        the probe fails, the index writer moves the folder aside (``chroma.corrupt-<time>``),
        rebuilds the index from SQLite and records what happened in ``index_recovery``; other
        processes get a ``RuntimeError`` saying so.
        """
        recovered = None
        with self._index_lock:
            if self._index is None:
                from registry.vectors.probe import open_index_checked

                may_repair = self.repair_index_on_open and self.is_index_writer
                self._index, recovered = open_index_checked(
                    self._index_spec, self.data_dir, self.embedding_version, self.embedding_dim,
                    may_repair=may_repair,
                )
            index = self._index
        if recovered is not None:
            log.warning("vector index at %s was damaged (%s); moved it to %s, rebuilding from SQLite",
                        self.data_dir / "chroma", recovered["error"], recovered["moved_to"])
            self.index_recovery = recovered
            recovered["rebuilt"] = self.rebuild_index()
        return index

    def reopen_index(self) -> Any:
        """Drops the open index (e.g. after its folder was deleted) and opens it again."""
        with self._index_lock:
            old, self._index = self._index, None if isinstance(self._index_spec, str) else self._index_spec
        close = getattr(old, "close", None)
        if callable(close) and old is not self._index:
            with contextlib.suppress(Exception):
                close()
        return self.index

    @property
    def is_index_writer(self) -> bool:
        """Whether this registry may write the vector index (see :mod:`registry.index_lock`).

        A persistent index named by kind ("chroma", "hnsw") has one writer process per data
        folder: the first registry to ask takes the cross-process lock (non-blocking) and keeps
        it until it closes; registries of other processes only fill the outbox. In-memory
        indexes and index objects passed in are private to this process: always True.
        """
        if self._index_spec not in _SHARED_INDEX_KINDS:
            return True
        if not self._writer:
            self._writer = index_lock.acquire(self.data_dir)
            if self._writer and self._index is not None:
                # Opened while another process wrote: load the files afresh before writing.
                self.reopen_index()
        return self._writer

    def close(self) -> None:
        close = getattr(self._index, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()
        if self._writer:
            self._writer = False
            index_lock.release(self.data_dir)
        self._conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- sources -------------------------------------------------------------------------------
    def register_source(
        self,
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
        meta_json = _json_or_none(metadata, "metadata")
        digest = _file_sha256(src)
        existing = self.find_source_by_hash(digest)
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
            target = self.data_dir / rel
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
        with self.transaction() as tx:
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

    def _source_dict(self, row: dict) -> dict:
        path = row.get("file_path")
        if path and not os.path.isabs(path):
            path = str(self.data_dir / path)
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

    def get_source(self, source_id: str) -> dict:
        """The source row; ``file_path`` is absolute. Raises ValueError for unknown ids."""
        rows = self._conn.query("SELECT * FROM sources WHERE source_id = ?", (source_id,))
        if not rows:
            raise ValueError(f"unknown source id {source_id!r}; register the file with register_source() first")
        return self._source_dict(rows[0])

    def update_source_metadata(self, source_id: str, patch: dict) -> dict:
        """Merges ``patch`` into the source's metadata dict and returns the updated source.

        Top-level keys of ``patch`` replace the stored ones; a None value removes the key.
        (Used e.g. to record the settings a source was auto-labeled with.)

        Raises:
            ValueError: unknown source id, or a patch that is not a JSON-serialisable dict.
        """
        if not isinstance(patch, dict):
            raise ValueError(f"expected the metadata patch as a dict, got {type(patch).__name__}")
        with self.transaction() as tx:
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
                (_json_or_none(meta or None, "metadata"), source_id),
            )
        return self.get_source(source_id)

    def find_source_by_hash(self, sha256_hex: str) -> dict | None:
        rows = self._conn.query("SELECT * FROM sources WHERE content_hash = ?", (str(sha256_hex).lower(),))
        return self._source_dict(rows[0]) if rows else None

    def list_sources(self, *, limit: int | None = None, offset: int = 0) -> list[dict]:
        rows = self._conn.query(
            "SELECT * FROM sources ORDER BY created_at, rowid LIMIT ? OFFSET ?",
            (-1 if limit is None else int(limit), int(offset)),
        )
        return [self._source_dict(r) for r in rows]

    def count_sources(self) -> int:
        return int(self._conn.scalar("SELECT count(*) FROM sources"))

    def add_frame(
        self, source_id: str, frame_idx: int, *, timestamp: float | None = None, file_path: str | None = None
    ) -> str:
        """A ``frm_…`` id for frame ``frame_idx`` of a source (the existing one if already added)."""
        if int(frame_idx) < 0:
            raise ValueError(f"expected frame_idx >= 0, got {frame_idx}")
        self.get_source(source_id)
        frame_id = new_id("frm")
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO frames (frame_id, source_id, frame_idx, timestamp, file_path) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (source_id, frame_idx) DO NOTHING",
                (frame_id, source_id, int(frame_idx), timestamp, None if file_path is None else str(file_path)),
            )
            row = tx.execute(
                "SELECT frame_id FROM frames WHERE source_id = ? AND frame_idx = ?", (source_id, int(frame_idx))
            ).fetchone()
        return row[0]

    # -- categories ----------------------------------------------------------------------------
    def _category_dict(self, row: dict) -> dict:
        return {
            "category_id": row["category_id"],
            "name": row["name"],
            "supercategory": row["supercategory"],
            "synonyms": json.loads(row["synonyms"] or "[]"),
            "color": row["color"],
            "description": row["description"],
            "created_at": row["created_at"],
        }

    def get_category(self, name_or_synonym: str) -> dict | None:
        """The category a name or synonym (case-insensitive) refers to, or None."""
        if not isinstance(name_or_synonym, str):
            return None
        rows = self._conn.query(
            "SELECT c.* FROM category_names n JOIN categories c USING (category_id) WHERE n.name_key = ?",
            (name_key(name_or_synonym),),
        )
        return self._category_dict(rows[0]) if rows else None

    def _category_by_id(self, category_id: int) -> dict:
        rows = self._conn.query("SELECT * FROM categories WHERE category_id = ?", (category_id,))
        return self._category_dict(rows[0])

    def _resolve_category_tx(self, tx: sqlite3.Connection, name: str, *, create: bool = True) -> int | None:
        key = name_key(name)
        row = tx.execute("SELECT category_id FROM category_names WHERE name_key = ?", (key,)).fetchone()
        if row is not None:
            return int(row[0])
        if not create:
            return None
        cur = tx.execute("INSERT INTO categories (name, color) VALUES (?, ?)", (name, stable_color(name)))
        cid = int(cur.lastrowid)
        tx.execute("INSERT INTO category_names (name_key, category_id, is_synonym) VALUES (?, ?, 0)", (key, cid))
        return cid

    def _add_keys_tx(self, tx: sqlite3.Connection, category_id: int, names: Iterable[str], is_synonym: int) -> None:
        for n in names:
            key = name_key(n)
            row = tx.execute("SELECT category_id FROM category_names WHERE name_key = ?", (key,)).fetchone()
            if row is not None and int(row[0]) != category_id:
                other = tx.execute("SELECT name FROM categories WHERE category_id = ?", (row[0],)).fetchone()[0]
                raise ValueError(
                    f"expected {n!r} to be a free name or synonym, got it already naming category {other!r}; "
                    "merge the categories or pick another name"
                )
            tx.execute(
                "INSERT OR REPLACE INTO category_names (name_key, category_id, is_synonym) VALUES (?, ?, ?)",
                (key, category_id, is_synonym),
            )

    def create_category(
        self,
        name: str,
        *,
        supercategory: str | None = None,
        synonyms: Sequence[str] = (),
        color: str | None = None,
        description: str | None = None,
    ) -> dict:
        """Creates a category; ValueError if the name or a synonym already names one."""
        name = check_category_name(name)
        if isinstance(synonyms, str):
            synonyms = [synonyms]
        syns = [check_category_name(s, what="synonym") for s in synonyms]
        syns = [s for s in dict.fromkeys(syns) if name_key(s) != name_key(name)]
        if supercategory is not None:
            supercategory = check_category_name(supercategory, what="supercategory")
        color = self._check_color(color) if color is not None else stable_color(name)
        with self.transaction() as tx:
            if tx.execute("SELECT 1 FROM category_names WHERE name_key = ?", (name_key(name),)).fetchone():
                raise ValueError(f"expected a new category name, got {name!r} which already exists; use get_category()")
            cur = tx.execute(
                "INSERT INTO categories (name, supercategory, synonyms, color, description) VALUES (?, ?, ?, ?, ?)",
                (name, supercategory, json.dumps(syns, ensure_ascii=False), color, description),
            )
            cid = int(cur.lastrowid)
            self._add_keys_tx(tx, cid, [name], 0)
            self._add_keys_tx(tx, cid, syns, 1)
        return self._category_by_id(cid)

    @staticmethod
    def _check_color(color: str) -> str:
        c = str(color).strip()
        if len(c) != 7 or c[0] != "#" or any(ch not in "0123456789abcdefABCDEF" for ch in c[1:]):
            raise ValueError(f"expected a colour like '#1f77b4', got {color!r}")
        return c.lower()

    def list_categories(self) -> list[dict]:
        """All categories by name, each with ``object_count``."""
        rows = self._conn.query(
            """SELECT c.*, (SELECT count(*) FROM objects o WHERE o.category_id = c.category_id) AS object_count
               FROM categories c ORDER BY c.name COLLATE NOCASE, c.category_id"""
        )
        out = []
        for r in rows:
            d = self._category_dict(r)
            d["object_count"] = r["object_count"]
            out.append(d)
        return out

    def _require_category(self, tx: sqlite3.Connection, name: str) -> int:
        cid = self._resolve_category_tx(tx, check_category_name(name), create=False)
        if cid is None:
            raise ValueError(f"unknown category {name!r}; see list_categories()")
        return cid

    def rename_category(self, old: str, new: str) -> dict:
        """Renames a category (its id, objects and synonyms stay)."""
        new = check_category_name(new)
        with self.transaction() as tx:
            cid = self._require_category(tx, old)
            old_name = tx.execute("SELECT name FROM categories WHERE category_id = ?", (cid,)).fetchone()[0]
            self._add_keys_tx(tx, cid, [new], 0)
            if name_key(old_name) != name_key(new):
                tx.execute("DELETE FROM category_names WHERE name_key = ? AND category_id = ?", (name_key(old_name), cid))
            syns = [s for s in json.loads(
                tx.execute("SELECT synonyms FROM categories WHERE category_id = ?", (cid,)).fetchone()[0])
                if name_key(s) != name_key(new)]
            tx.execute(
                "UPDATE categories SET name = ?, synonyms = ? WHERE category_id = ?",
                (new, json.dumps(syns, ensure_ascii=False), cid),
            )
            # The index filters on the category *name*: re-send these objects' metadata.
            moved = [r[0] for r in tx.execute(
                "SELECT o.object_id FROM objects o JOIN embeddings e ON e.object_id = o.object_id AND e.version_id = ? "
                "WHERE o.category_id = ?", (self.embedding_version, cid))]
            self._enqueue_tx(tx, moved, "upsert")
        self._after_write()
        return self._category_by_id(cid)

    def add_synonyms(self, name: str, synonyms: Sequence[str]) -> dict:
        """Adds synonyms (case-insensitive lookup keys) to a category."""
        if isinstance(synonyms, str):
            synonyms = [synonyms]
        syns = [check_category_name(s, what="synonym") for s in synonyms]
        with self.transaction() as tx:
            cid = self._require_category(tx, name)
            row = tx.execute("SELECT name, synonyms FROM categories WHERE category_id = ?", (cid,)).fetchone()
            current = json.loads(row[1] or "[]")
            keys = {name_key(s) for s in current} | {name_key(row[0])}
            added = [s for s in dict.fromkeys(syns) if name_key(s) not in keys]
            self._add_keys_tx(tx, cid, added, 1)
            tx.execute(
                "UPDATE categories SET synonyms = ? WHERE category_id = ?",
                (json.dumps(current + added, ensure_ascii=False), cid),
            )
        return self._category_by_id(cid)

    def merge_categories(self, src: str, dst: str) -> dict:
        """Moves every object (and track) of ``src`` into ``dst``; ``src`` becomes a synonym of it."""
        with self.transaction() as tx:
            sid = self._require_category(tx, src)
            did = self._require_category(tx, dst)
            if sid == did:
                raise ValueError(f"expected two different categories to merge, got {src!r} and {dst!r} naming the same one")
            src_name, src_syns = tx.execute("SELECT name, synonyms FROM categories WHERE category_id = ?", (sid,)).fetchone()
            moved = [r[0] for r in tx.execute(
                "SELECT o.object_id FROM objects o JOIN embeddings e ON e.object_id = o.object_id AND e.version_id = ? "
                "WHERE o.category_id = ?", (self.embedding_version, sid))]
            tx.execute("UPDATE objects SET category_id = ? WHERE category_id = ?", (did, sid))
            tx.execute("UPDATE tracks SET category_id = ? WHERE category_id = ?", (did, sid))
            tx.execute("UPDATE category_names SET category_id = ?, is_synonym = 1 WHERE category_id = ?", (did, sid))
            dst_syns = json.loads(tx.execute("SELECT synonyms FROM categories WHERE category_id = ?", (did,)).fetchone()[0])
            merged = list(dict.fromkeys(dst_syns + [src_name] + json.loads(src_syns or "[]")))
            tx.execute("UPDATE categories SET synonyms = ? WHERE category_id = ?", (json.dumps(merged, ensure_ascii=False), did))
            tx.execute("DELETE FROM categories WHERE category_id = ?", (sid,))
            self._enqueue_tx(tx, moved, "upsert")
        self._after_write()
        return self._category_by_id(did)

    # -- objects: registration -----------------------------------------------------------------
    def _check_box(self, xyxy: Any, width: int | None, height: int | None, where: str) -> tuple[float, float, float, float]:
        box = None
        if type(xyxy) in (tuple, list) and len(xyxy) == 4:  # the common case, without numpy
            try:
                box = [float(v) for v in xyxy]
            except (TypeError, ValueError):
                box = None  # the general path below words the error
        if box is None:
            try:
                box = [float(v) for v in np.asarray(xyxy, dtype=np.float64).reshape(-1)]
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{where}: expected xyxy as 4 numbers, got {xyxy!r}") from exc
        if len(box) != 4:
            raise ValueError(f"{where}: expected xyxy as 4 numbers (x0, y0, x1, y1), got {len(box)} values")
        if not all(math.isfinite(v) for v in box):
            raise ValueError(f"{where}: expected finite box coordinates, got {box}")
        x0, y0, x1, y1 = box
        if x0 < 0 or y0 < 0:
            raise ValueError(f"{where}: expected non-negative box coordinates (absolute pixels), got {box}; clip the box to the image")
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"{where}: expected x1 > x0 and y1 > y0 (xyxy), got {box}")
        if width is not None and x1 > width + 1e-6 or height is not None and y1 > height + 1e-6:
            raise ValueError(
                f"{where}: expected a box inside the {width}x{height} image (xyxy absolute pixels), got {box}; "
                "clip it to the image"
            )
        return x0, y0, x1, y1

    def _check_embedding(self, emb: Any, where: str) -> bytes:
        vec = np.asarray(emb, dtype=np.float32)
        if vec.ndim != 1 or vec.shape[0] != self.embedding_dim:
            raise ValueError(
                f"{where}: expected an embedding of shape ({self.embedding_dim},) for {self.embedding_version!r}, "
                f"got {tuple(vec.shape)}; use the embedder this registry was opened with"
            )
        if not np.isfinite(vec).all():
            raise ValueError(f"{where}: expected finite embedding values, got NaN or inf")
        if not np.any(vec):
            raise ValueError(f"{where}: expected a non-zero embedding (cosine similarity needs a direction), got all zeros")
        return vec.astype("<f4").tobytes()

    def _check_mask(
        self, obj: ObjectIn, width: int | None, height: int | None, where: str, *, validate: bool = True
    ) -> dict | None:
        if obj.mask is not None and obj.mask_rle is not None:
            raise ValueError(f"{where}: expected either mask or mask_rle, got both")
        if obj.mask is None and obj.mask_rle is None:
            return None
        if width is None or height is None:
            raise ValueError(f"{where}: the source has no width/height, so a mask cannot be checked; register it with its size")
        if obj.mask is not None:
            m = np.asarray(obj.mask)
            if m.shape != (height, width):
                raise ValueError(
                    f"{where}: expected a mask of shape (H, W) = ({height}, {width}) like the source image, "
                    f"got {m.shape}; resize or re-segment at the image size"
                )
            if m.dtype != np.bool_:
                if not np.issubdtype(m.dtype, np.number) or not np.isin(m, (0, 1)).all():
                    raise ValueError(f"{where}: expected a bool mask (or 0/1 values), got dtype {m.dtype}")
                m = m.astype(bool)
            return rle_ops.encode(m)
        rle = {"size": [int(v) for v in obj.mask_rle["size"]], "counts": obj.mask_rle["counts"]}
        if isinstance(rle["counts"], bytes):
            rle["counts"] = rle["counts"].decode("ascii")
        if not isinstance(rle["counts"], str):
            raise ValueError(f"{where}: expected compressed RLE counts (str), got {type(rle['counts']).__name__}")
        if rle["size"] != [height, width]:
            raise ValueError(f"{where}: expected an RLE of size [{height}, {width}], got {rle['size']}")
        if validate:
            rle_ops.validate(rle)
        return rle

    def _prepare(self, source: dict, objects: Sequence[ObjectIn], project: str | None) -> list[dict]:
        """Validates and converts every input (no writes); raises on the first bad one.

        Per-object work is kept to plain Python checks; category names are checked once per
        distinct name, and embeddings and caller-given RLEs are checked in one vectorised pass
        per batch (which re-runs the per-object check to word the error when one fails).
        """
        width, height = source["width"], source["height"]
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
            x0, y0, x1, y1 = self._check_box(obj.xyxy, width, height, where)
            if obj.validation_status not in STATUSES:
                raise ValueError(f"{where}: expected validation_status in {STATUSES}, got {obj.validation_status!r}")
            # RLEs given by the caller are validated below in one vectorised pass.
            rle = self._check_mask(obj, width, height, where, validate=False)
            if obj.mask_rle is not None:
                given_rle.append(i)
            if obj.embedding is not None:
                with_emb.append(i)
            prepared.append({
                "category": name,
                "box": (x0, y0, x1 - x0, y1 - y0),
                "rle": rle,
                "area": (x1 - x0) * (y1 - y0),
                "confidence": _finite_unit(obj.confidence, f"{where} confidence"),
                "classification_confidence": _finite_unit(obj.classification_confidence, f"{where} classification_confidence"),
                "quality_score": _finite_unit(obj.quality_score, f"{where} quality_score"),
                "embedding": None,
                "detection_model": obj.detection_model,
                "classification_model": obj.classification_model,
                "frame_id": obj.frame_id,
                "flags": (int(bool(obj.is_occluded)), int(bool(obj.is_truncated)), int(bool(obj.is_difficult))),
                "status": obj.validation_status,
                "validated_by": obj.validated_by,
                "metadata": _json_or_none(obj.metadata, f"{where} metadata"),
                "project": project,
            })
        for i, blob in zip(with_emb, self._check_embeddings([objects[i].embedding for i in with_emb], with_emb), strict=True):
            prepared[i]["embedding"] = blob
        given_area: dict[int, int] = {}
        if given_rle:
            try:
                areas = rle_ops.validate_many([prepared[i]["rle"] for i in given_rle])
            except ValueError as exc:
                pos = str(exc).split(":", 1)
                k = int(pos[0].split()[1]) if pos[0].startswith("RLE ") else 0
                raise ValueError(f"object {given_rle[k]} mask_rle: {pos[-1].strip()}") from exc
            given_area = dict(zip(given_rle, areas.tolist(), strict=True))
        encoded = [i for i, it in enumerate(prepared) if it["rle"] is not None and i not in given_area]
        for i, a in zip(encoded, rle_ops.areas([prepared[i]["rle"] for i in encoded]).tolist(), strict=True):
            given_area[i] = a
        for i, a in given_area.items():
            prepared[i]["area"] = float(a)
        return prepared

    def _check_embeddings(self, embs: list[Any], positions: list[int]) -> list[bytes]:
        """:meth:`_check_embedding` for a batch: one stacked float32 array and one finiteness and
        non-zero check; the little-endian float32 bytes of each row."""
        if not embs:
            return []
        dim = self.embedding_dim
        try:
            arrs = [np.asarray(e) for e in embs]
            ok = all(a.shape == (dim,) and a.dtype.kind in "fiu" for a in arrs)
            mat = np.stack(arrs).astype("<f4", copy=False) if ok else None
        except (TypeError, ValueError):
            mat = None
        if mat is not None and np.isfinite(mat).all() and mat.any(axis=1).all():
            return [row.tobytes() for row in mat]
        # Something is wrong: the per-object check names the first bad one.
        return [self._check_embedding(e, f"object {i}") for e, i in zip(embs, positions, strict=True)]

    def _dedupe(self, tx: sqlite3.Connection, source_id: str, items: list[dict]) -> dict[int, str]:
        """``input index -> id it duplicates`` for items overlapping an existing or earlier item
        of the same category (see :mod:`registry.dedupe`: only overlapping pairs are compared).

        The stored objects are read with one indexed query; their mask areas are recomputed
        from the RLEs rather than trusting the ``area`` column, so the pruning bounds stay exact.
        """
        cat_set = sorted({it["category_id"] for it in items})
        rows = tx.execute(
            "SELECT object_id, bbox_x, bbox_y, bbox_w, bbox_h, mask_counts, mask_h, mask_w, category_id "
            f"FROM objects WHERE source_id = ? AND category_id IN ({','.join('?' * len(cat_set))})",
            (source_id, *cat_set),
        ).fetchall()
        rles = [{"size": [r[6], r[7]], "counts": r[5]} if r[5] is not None else None for r in rows]
        with_mask = [k for k, r in enumerate(rles) if r is not None]
        areas = dict(zip(with_mask, rle_ops.areas([rles[k] for k in with_mask]).tolist(), strict=True))
        stored = overlap.Items.build([r[8] for r in rows], [r[1:5] for r in rows], rles,
                                    [areas.get(k) for k in range(len(rows))])
        new = overlap.Items.build([it["category_id"] for it in items], [it["box"] for it in items],
                                 [it["rle"] for it in items], [it["area"] for it in items])
        found = overlap.find_duplicates(new, stored, self.dedupe_iou)
        return {i: rows[j][0] if kind == "stored" else items[j]["object_id"] for i, (kind, j) in found.items()}

    def register_objects(
        self, source_id: str, objects: Sequence[ObjectIn], *, project: str | None = None, dedupe: bool = True
    ) -> RegisterResult:
        """Registers a batch of objects of one source in ONE transaction (all or nothing).

        Each object's row (with its mask as compressed RLE), its embedding and its outbox entry
        are written together. Categories are resolved by name or synonym and created on demand.
        With ``dedupe`` an object whose IoU (mask IoU when both have masks, else box IoU) with an
        existing object of the same source and category, or an earlier one of this batch,
        exceeds ``dedupe_iou`` is skipped.

        Raises:
            ValueError: unknown source, bad box/mask/embedding/category/confidence; nothing is
                written.
        """
        objects = list(objects)
        source = self.get_source(source_id)
        items = self._prepare(source, objects, project)
        result = RegisterResult(object_ids=[None] * len(items))
        if not items:
            return result
        ids = new_ids("obj", len(items))
        for it, oid in zip(items, ids, strict=False):
            it["object_id"] = oid
        now = utc_now()
        with self.transaction() as tx:
            frames = {it["frame_id"] for it in items if it["frame_id"] is not None}
            for fid in frames:
                row = tx.execute("SELECT source_id FROM frames WHERE frame_id = ?", (fid,)).fetchone()
                if row is None or row[0] != source_id:
                    raise ValueError(f"expected frame_id of a frame of {source_id}, got {fid!r}; use add_frame() first")
            # One lookup for all the batch's names; only unknown ones are created one by one.
            keys = {it["category"]: name_key(it["category"]) for it in items}
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
                    cat_ids[key] = self._resolve_category_tx(tx, it["category"])
                it["category_id"] = cat_ids[key]
            dup = self._dedupe(tx, source_id, items) if dedupe else {}
            rows, emb_rows = [], []
            for i, it in enumerate(items):
                if i in dup:
                    result.duplicates.append((i, dup[i]))
                    continue
                result.object_ids[i] = it["object_id"]
                rle = it["rle"]
                validated = it["status"] != "pending"
                rows.append((
                    it["object_id"], source_id, it["category_id"], it["frame_id"], it["project"],
                    *it["box"],
                    None if rle is None else rle["counts"], None if rle is None else rle["size"][0],
                    None if rle is None else rle["size"][1], it["area"], it["confidence"],
                    it["detection_model"], it["classification_model"], it["classification_confidence"],
                    int(validated), it["status"], it["validated_by"] if validated else None, now if validated else None,
                    it["quality_score"], *it["flags"], it["metadata"], now, now,
                ))
                if it["embedding"] is not None:
                    emb_rows.append((it["object_id"], self.embedding_version, self.embedding_dim, it["embedding"]))
            tx.executemany(
                """INSERT INTO objects (object_id, source_id, category_id, frame_id, project_id,
                       bbox_x, bbox_y, bbox_w, bbox_h, mask_counts, mask_h, mask_w, area, confidence,
                       detection_model, classification_model, classification_confidence,
                       is_validated, validation_status, validated_by, validated_at, quality_score,
                       is_occluded, is_truncated, is_difficult, metadata, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                rows,
            )
            if emb_rows:
                tx.executemany(
                    "INSERT INTO embeddings (object_id, version_id, dim, vector) VALUES (?, ?, ?, ?)", emb_rows
                )
                tx.executemany(
                    "INSERT INTO embedding_outbox (object_id, version_id, operation) VALUES (?, ?, 'upsert')",
                    [(r[0], r[1]) for r in emb_rows],
                )
        if emb_rows:
            self._after_write()
        return result

    def _enqueue_tx(self, tx: sqlite3.Connection, object_ids: Sequence[str], operation: str) -> None:
        if object_ids:
            tx.executemany(
                "INSERT INTO embedding_outbox (object_id, version_id, operation) VALUES (?, ?, ?)",
                [(oid, self.embedding_version, operation) for oid in object_ids],
            )

    def _after_write(self) -> None:
        if self.sync_on_write:
            self._sync_quietly()

    def _sync_quietly(self) -> None:
        # The outbox keeps what failed; a failing or missing index must never fail a write.
        try:
            self.sync_outbox()
        except Exception as exc:  # noqa: BLE001 - logged, retried at the next sync
            log.warning("vector index sync failed (will retry): %s", exc)

    # -- objects: reads ------------------------------------------------------------------------
    def _object_dict(self, r: dict) -> dict:
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

    def get_object(self, object_id: str) -> dict:
        """The object as a dict (see the module docstring for conventions); ValueError if unknown."""
        rows = self._conn.query(
            f"SELECT {_OBJECT_COLUMNS} FROM objects o JOIN categories c ON c.category_id = o.category_id "
            "WHERE o.object_id = ?",
            (self.embedding_version, object_id),
        )
        if not rows:
            raise ValueError(f"unknown object id {object_id!r}: no such object (deleted, or from another data folder); find ids in Review or Search")
        return self._object_dict(rows[0])

    def get_objects(self, object_ids: Sequence[str]) -> list[dict]:
        """Objects by id, in the given order; unknown ids are left out."""
        found: dict[str, dict] = {}
        ids = list(object_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self._conn.query(
                f"SELECT {_OBJECT_COLUMNS} FROM objects o JOIN categories c ON c.category_id = o.category_id "
                f"WHERE o.object_id IN ({','.join('?' * len(chunk))})",
                (self.embedding_version, *chunk),
            )
            for r in rows:
                found[r["object_id"]] = self._object_dict(r)
        return [found[i] for i in ids if i in found]

    def get_mask_rle(self, object_id: str) -> dict | None:
        """The compressed COCO RLE ``{"size": [h, w], "counts": str}``, or None without a mask."""
        rows = self._conn.query("SELECT mask_counts, mask_h, mask_w FROM objects WHERE object_id = ?", (object_id,))
        if not rows:
            raise ValueError(f"unknown object id {object_id!r}")
        r = rows[0]
        if r["mask_counts"] is None:
            return None
        return {"size": [r["mask_h"], r["mask_w"]], "counts": r["mask_counts"]}

    def get_mask(self, object_id: str) -> np.ndarray | None:
        """The ``(H, W)`` bool mask, or None without a mask."""
        rle = self.get_mask_rle(object_id)
        return None if rle is None else rle_ops.decode(rle)

    def get_embedding(self, object_id: str) -> np.ndarray | None:
        """The ``(embedding_dim,)`` float32 vector of this registry's embedding version, or None."""
        row = self._conn.query(
            "SELECT dim, vector FROM embeddings WHERE object_id = ? AND version_id = ?",
            (object_id, self.embedding_version),
        )
        if not row:
            if self._conn.scalar("SELECT 1 FROM objects WHERE object_id = ?", (object_id,)) is None:
                raise ValueError(f"unknown object id {object_id!r}")
            return None
        return outbox.vector_from_blob(row[0]["vector"], row[0]["dim"]).copy()

    def _category_ids_for(self, category: str | Sequence[str]) -> list[int]:
        names = [category] if isinstance(category, str) else list(category)
        ids = []
        for n in names:
            if not isinstance(n, str):
                raise ValueError(f"expected category names as str, got {type(n).__name__}")
            row = self._conn.scalar("SELECT category_id FROM category_names WHERE name_key = ?", (name_key(n),))
            if row is not None:
                ids.append(int(row))
        return ids

    def _where(
        self,
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
        clauses: list[str] = []
        params: list[Any] = []
        if category is not None:
            ids = self._category_ids_for(category)
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
        self, *, order: str = "confidence_asc", limit: int | None = 50, offset: int = 0, **filters: Any
    ) -> list[dict]:
        """Objects matching the filters, sorted and paginated.

        Filters: ``category`` (name/synonym or list), ``project``, ``source_id``,
        ``min_confidence``/``max_confidence`` (inclusive), ``status`` ("pending" | "approved" |
        "rejected" or a list), ``created_after`` (inclusive)/``created_before`` (exclusive).
        ``order``: confidence_asc | confidence_desc | created_desc | created_asc.
        """
        if order not in ORDERS:
            raise ValueError(f"expected order in {sorted(ORDERS)}, got {order!r}")
        where, params = self._where(**filters)
        rows = self._conn.query(
            f"SELECT {_OBJECT_COLUMNS} FROM objects o JOIN categories c ON c.category_id = o.category_id"
            f"{where} ORDER BY {ORDERS[order]} LIMIT ? OFFSET ?",
            [self.embedding_version, *params, -1 if limit is None else int(limit), int(offset)],
        )
        return [self._object_dict(r) for r in rows]

    def count_objects(self, **filters: Any) -> int:
        where, params = self._where(**filters)
        return int(self._conn.scalar(f"SELECT count(*) FROM objects o{where}", params))

    def iter_objects(self, *, batch_size: int = 1000, order: str | None = None, **filters: Any) -> Iterator[dict]:
        """Streams matching objects in batches (bounded memory).

        Without ``order`` (or with "created_asc") it walks by insertion order with keyset
        pagination, so concurrent inserts never shift pages; other orders page by offset.
        """
        if order not in (None, "created_asc"):
            offset = 0
            while True:
                page = self.list_objects(order=order, limit=batch_size, offset=offset, **filters)
                yield from page
                if len(page) < batch_size:
                    return
                offset += batch_size
        where, params = self._where(**filters)
        joiner = " AND " if where else " WHERE "
        last = 0
        while True:
            rows = self._conn.query(
                f"SELECT o.rowid AS _rowid, {_OBJECT_COLUMNS} FROM objects o "
                f"JOIN categories c ON c.category_id = o.category_id{where}{joiner}o.rowid > ? "
                "ORDER BY o.rowid LIMIT ?",
                [self.embedding_version, *params, last, int(batch_size)],
            )
            for r in rows:
                yield self._object_dict(r)
            if len(rows) < batch_size:
                return
            last = rows[-1]["_rowid"]

    # -- objects: changes ----------------------------------------------------------------------
    def update_object(
        self,
        object_id: str,
        *,
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
    ) -> dict:
        """Patches an object and returns it. Arguments left None are unchanged.

        ``status`` approved/rejected sets ``validated_at`` (now) and ``validated_by``; pending
        clears them. A new ``mask`` ((H, W) bool) recomputes ``area`` and, unless ``xyxy`` is
        given too, the box (the mask's tight box). Changes the index filters on (category,
        status, confidence) and a new embedding are queued for the index.
        """
        current = self.get_object(object_id)
        source = self.get_source(current["source_id"])
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
            sets["quality_score"] = _finite_unit(quality_score, "quality_score")
        if confidence is not None:
            sets["confidence"] = _finite_unit(confidence, "confidence")
            reindex = True
        for col, val in (("is_occluded", is_occluded), ("is_truncated", is_truncated), ("is_difficult", is_difficult)):
            if val is not None:
                sets[col] = int(bool(val))
        if metadata is not None:
            sets["metadata"] = _json_or_none(metadata, "metadata")
        if mask is not None:
            rle = self._check_mask(ObjectIn(category="x", xyxy=(0, 0, 1, 1), mask=mask), source["width"], source["height"], object_id)
            sets.update(mask_counts=rle["counts"], mask_h=rle["size"][0], mask_w=rle["size"][1], area=float(rle_ops.area(rle)))
            if xyxy is None:
                x, y, w, h = rle_ops.bbox_xywh(rle)
                if w > 0 and h > 0:
                    sets.update(bbox_x=x, bbox_y=y, bbox_w=w, bbox_h=h)
        if xyxy is not None:
            x0, y0, x1, y1 = self._check_box(xyxy, source["width"], source["height"], object_id)
            sets.update(bbox_x=x0, bbox_y=y0, bbox_w=x1 - x0, bbox_h=y1 - y0)
            if mask is None and not current["has_mask"]:
                sets["area"] = (x1 - x0) * (y1 - y0)
        emb_blob = None if embedding is None else self._check_embedding(embedding, object_id)
        if category is not None:
            category = check_category_name(category)
        with self.transaction() as tx:
            if category is not None:
                sets["category_id"] = self._resolve_category_tx(tx, category)
                reindex = True
            if sets:
                cols = ", ".join(f"{k} = ?" for k in sets)
                tx.execute(f"UPDATE objects SET {cols} WHERE object_id = ?", (*sets.values(), object_id))
            if emb_blob is not None:
                tx.execute(
                    "INSERT OR REPLACE INTO embeddings (object_id, version_id, dim, vector) VALUES (?, ?, ?, ?)",
                    (object_id, self.embedding_version, self.embedding_dim, emb_blob),
                )
            if emb_blob is not None or (reindex and current["has_embedding"]):
                self._enqueue_tx(tx, [object_id], "upsert")
                queued = True
            else:
                queued = False
        if queued:
            self._after_write()
        return self.get_object(object_id)

    def delete_object(self, object_id: str) -> None:
        """Deletes an object (its mask, embedding, track/dataset links go with it; its vector
        leaves the index through the outbox)."""
        with self.transaction() as tx:
            had = tx.execute(
                "SELECT EXISTS (SELECT 1 FROM embeddings WHERE object_id = ?)", (object_id,)
            ).fetchone()[0]
            cur = tx.execute("DELETE FROM objects WHERE object_id = ?", (object_id,))
            if cur.rowcount == 0:
                raise ValueError(f"unknown object id {object_id!r}; nothing deleted")
            if had:
                self._enqueue_tx(tx, [object_id], "delete")
        if had:
            self._after_write()

    # -- tracks --------------------------------------------------------------------------------
    def create_track(self, object_ids: Sequence[str], *, category: str | None = None, metadata: dict | None = None) -> str:
        """A ``trk_…`` track of objects of one source; ``sequence_idx`` follows frame order.

        ``category`` defaults to the objects' common category (None when they differ).
        ``object_count``, ``start/end_frame_idx`` and ``avg_confidence`` are kept by triggers.
        """
        ids = list(dict.fromkeys(object_ids))
        if not ids:
            raise ValueError("expected at least one object id for a track, got none")
        objs = {o["object_id"]: o for o in self.get_objects(ids)}
        missing = [i for i in ids if i not in objs]
        if missing:
            raise ValueError(f"unknown object ids {missing[:5]}; nothing created")
        sources = {o["source_id"] for o in objs.values()}
        if len(sources) != 1:
            raise ValueError(f"expected objects of one source for a track, got {len(sources)} sources")
        meta = _json_or_none(metadata, "metadata")
        track_id = new_id("trk")
        with self.transaction() as tx:
            if category is not None:
                cid = self._resolve_category_tx(tx, check_category_name(category))
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

    def get_track(self, track_id: str) -> dict:
        """The track row (+ ``category`` name) with ``objects`` in frame order (+ ``frame_idx``)."""
        rows = self._conn.query(
            "SELECT t.*, c.name AS category FROM tracks t LEFT JOIN categories c ON c.category_id = t.category_id "
            "WHERE t.track_id = ?", (track_id,))
        if not rows:
            raise ValueError(f"unknown track id {track_id!r}")
        track = dict(rows[0])
        track["metadata"] = json.loads(track["metadata"]) if track["metadata"] else None
        members = self._conn.query(
            "SELECT t.object_id, t.sequence_idx, f.frame_idx FROM track_objects t JOIN objects o USING (object_id) "
            "LEFT JOIN frames f ON f.frame_id = o.frame_id WHERE t.track_id = ? ORDER BY f.frame_idx, t.sequence_idx",
            (track_id,))
        objs = {o["object_id"]: o for o in self.get_objects([m["object_id"] for m in members])}
        track["objects"] = []
        for m in members:
            o = objs[m["object_id"]]
            o["frame_idx"] = m["frame_idx"]
            o["sequence_idx"] = m["sequence_idx"]
            track["objects"].append(o)
        return track

    # -- vectors -------------------------------------------------------------------------------
    def sync_outbox(self, batch_size: int = 512) -> dict:
        """Relays pending outbox rows to the index: ``{"synced", "failed", "pending"}``.

        Only the index-writer process relays (:attr:`is_index_writer`); elsewhere nothing is
        relayed and the result also holds ``"writer_pid"`` (the holder, when known).
        """
        with self._sync_lock:
            if not self.is_index_writer:
                return {"synced": 0, "failed": 0, "pending": outbox.pending_count(self._conn, self.embedding_version),
                        "writer_pid": index_lock.holder_pid(self.data_dir)}
            return outbox.sync(self._conn, self.index, self.embedding_version, batch_size=batch_size)

    def search(
        self,
        vector: np.ndarray,
        *,
        k: int = 10,
        category: str | Sequence[str] | None = None,
        project: str | None = None,
        min_confidence: float | None = None,
        status: str | None = None,
    ) -> list[dict]:
        """Objects nearest to ``vector`` (cosine), best first, each with ``similarity`` (1.0 =
        identical), restricted by the filters (applied to the SQLite rows, so always current).
        """
        vec = np.frombuffer(self._check_embedding(vector, "query"), dtype="<f4")
        if int(k) <= 0:
            raise ValueError(f"expected k >= 1, got {k}")
        filters = {"category": category, "project": project, "min_confidence": min_confidence, "status": status}
        filtered = any(v is not None for v in filters.values())
        where_meta = self._index_where(filters)
        total = None
        fetch = int(k) * (4 if filtered else 1) + (8 if filtered else 0)
        while True:
            hits = self._query_index(vec, fetch, where_meta)
            sims = dict(hits)
            if filtered:
                where, params = self._where(**{kk: v for kk, v in filters.items() if v is not None})
                ids = list(sims)
                keep: set[str] = set()
                for start in range(0, len(ids), 500):
                    chunk = ids[start:start + 500]
                    joiner = " AND " if where else " WHERE "
                    keep |= {r["object_id"] for r in self._conn.query(
                        f"SELECT o.object_id FROM objects o{where}{joiner}o.object_id IN ({','.join('?' * len(chunk))})",
                        [*params, *chunk])}
                ordered = [i for i, _ in hits if i in keep]
            else:
                ordered = [i for i, _ in hits]
            if total is None:
                total = self.index.count()
            if len(ordered) >= k or len(hits) < fetch or fetch >= total:
                break
            fetch = min(fetch * 4, total)
        out = []
        for o in self.get_objects(ordered[: int(k)]):
            o["similarity"] = float(sims[o["object_id"]])
            out.append(o)
        out.sort(key=lambda o: -o["similarity"])
        return out

    def _index_where(self, filters: dict) -> dict | None:
        """The index pre-filter (registry.vectors.normalize_where keys) or None."""
        where: dict[str, Any] = {}
        if filters.get("category") is not None:
            ids = self._category_ids_for(filters["category"])
            where["category"] = [self._category_by_id(i)["name"] for i in ids]
        if filters.get("project") is not None:
            where["project"] = filters["project"]
        if filters.get("min_confidence") is not None:
            where["min_confidence"] = float(filters["min_confidence"])
        if filters.get("status") is not None:
            where["validation_status"] = filters["status"]
        return where or None

    def _query_index(self, vec: np.ndarray, fetch: int, where: dict | None) -> list[tuple[str, float]]:
        # The index metadata may lag SQLite by one sync; the SQL filter after it is authoritative.
        index = self.index
        if where is not None:
            try:
                return list(index.query(vec, fetch, where=where))
            except (TypeError, NotImplementedError, ValueError) as exc:
                log.debug("index has no metadata filter (%s); filtering in SQLite", exc)
        return list(index.query(vec, fetch))

    def rebuild_index(self, batch_size: int = 1000) -> int:
        """Rebuilds the index from the ``embeddings`` table; returns the number of vectors.

        Reads a consistent snapshot on a separate connection (writers are not blocked); outbox
        rows older than the snapshot are marked synced, newer ones are relayed afterwards.
        """
        with self._sync_lock:
            if not self.is_index_writer:
                raise RuntimeError(index_lock.not_writer_message(self.data_dir, "rebuild the vector index"))
            index = self.index
            index.reset()
            snap = sqlite3.connect(str(self.db_path), timeout=60)
            try:
                snap.execute("BEGIN")
                max_id = snap.execute("SELECT coalesce(max(id), 0) FROM embedding_outbox").fetchone()[0]
                cur = snap.execute(
                    """SELECT e.object_id, e.dim, e.vector, c.name AS category, o.project_id, o.confidence,
                              o.validation_status
                       FROM embeddings e JOIN objects o ON o.object_id = e.object_id
                       JOIN categories c ON c.category_id = o.category_id
                       WHERE e.version_id = ?""",
                    (self.embedding_version,),
                )
                cols = [c[0] for c in cur.description]
                n = 0
                while True:
                    chunk = cur.fetchmany(batch_size)
                    if not chunk:
                        break
                    rows = [dict(zip(cols, r, strict=False)) for r in chunk]
                    index.add(
                        [r["object_id"] for r in rows],
                        np.stack([outbox.vector_from_blob(r["vector"], r["dim"]) for r in rows]),
                        [outbox.index_metadata(r) for r in rows],
                    )
                    n += len(rows)
                snap.execute("COMMIT")
            finally:
                snap.close()
            with self.transaction() as tx:
                tx.execute(
                    "UPDATE embedding_outbox SET status = 'synced', synced_at = ?, error_message = NULL "
                    "WHERE id <= ? AND version_id = ? AND status <> 'synced'",
                    (utc_now(), max_id, self.embedding_version),
                )
        self._after_write()
        return n

    # -- reports -------------------------------------------------------------------------------
    def stats(self) -> dict:
        """Counts per category, per split, validation rate, confidence histogram (see stats.py)."""
        from registry.stats import compute_stats

        return compute_stats(self)

    def doctor(self, repair: bool = False, *, check_media: bool = False) -> dict:
        """Integrity report ``{"ok": bool, "checks": {...}}`` (see :mod:`registry.doctor`);
        ``repair`` syncs, rebuilds and removes litter; ``check_media`` hashes every media file."""
        from registry.doctor import run_doctor

        return run_doctor(self, repair=repair, check_media=check_media)
