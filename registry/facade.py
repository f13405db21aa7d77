"""The registry facade: everything the app and CLI do with stored sources, objects and vectors.

Coordinate conventions: boxes come in as ``xyxy`` (absolute pixels of the source image, x =
column, y = row, ``x0 <= x1 <= width``) and are stored and returned as ``bbox_xywh``; masks are
``(H, W)`` bool arrays of the source image's size (``H`` = height) stored as compressed COCO RLE;
embeddings are ``(embedding_dim,)`` float32 vectors.

SQLite (``<data>/registry.db``) is the source of truth. Vectors go to the index through the
outbox (:mod:`registry.outbox`); the index can always be rebuilt from the ``embeddings`` table.
Returned rows are plain dicts; errors in the caller's input are ``ValueError`` naming the
expected value, the actual one and the fix, and nothing is written when one is raised.

:class:`Registry` is a thin composition; each responsibility lives in the module named for it
(each owning its SQL): :mod:`registry.sources` (sources, frames), :mod:`registry.categories`,
:mod:`registry.objects_write` (validation via :mod:`registry.validation`, dedupe, outbox
entries), :mod:`registry.queries` (filters, lists, masks, embeddings), :mod:`registry.patches`
(update, delete), :mod:`registry.tracks`, :mod:`registry.index_handle` (open/probe, writer lock,
relay, rebuild), :mod:`registry.search`, :mod:`registry.stats`, :mod:`registry.doctor`.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from registry import categories, doctor, outbox, patches, queries, search, sources, stats
from registry import frames as frame_store
from registry.categories import MAX_CATEGORY_NAME, check_category_name, name_key, stable_color
from registry.db import Connection
from registry.facade_runs import RunMethods
from registry.facade_tracks import TrackMethods
from registry.index_handle import IndexHandle
from registry.objects_write import register_objects
from registry.queries import ORDERS
from registry.records import ObjectIn, RegisterResult
from registry.schema import ensure_schema
from registry.sources import MEDIA_DIR
from registry.validation import STATUSES

__all__ = [
    "DB_FILE", "MAX_CATEGORY_NAME", "MEDIA_DIR", "ORDERS", "STATUSES", "ObjectIn", "RegisterResult",
    "Registry", "check_category_name", "name_key", "stable_color",
]

DB_FILE = "registry.db"


class Registry(TrackMethods, RunMethods):
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
        self._conn = Connection(self.data_dir / DB_FILE)
        self._vectors = IndexHandle(index, self._conn, self.data_dir, self.embedding_dim, embedding_version,
                                    sync_on_write=bool(sync_on_write))
        self.schema_version = ensure_schema(self._conn)
        if self.sync_on_write and outbox.pending_count(self._conn, self.embedding_version):
            self._vectors.sync_quietly()

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
        """``<data>/registry.db``."""
        return self.data_dir / DB_FILE

    def transaction(self):
        """Context manager: one write transaction under the writer lock (yields sqlite3 conn)."""
        return self._conn.transaction()

    @property
    def sync_on_write(self) -> bool:
        """Relay the outbox to the index after each write (see :class:`IndexHandle`)."""
        return self._vectors.sync_on_write

    @sync_on_write.setter
    def sync_on_write(self, value: bool) -> None:
        self._vectors.sync_on_write = bool(value)

    @property
    def index_recovery(self) -> dict | None:
        """Set when a damaged index was moved aside and rebuilt (what happened), else None."""
        return self._vectors.recovery

    @index_recovery.setter
    def index_recovery(self, value: dict | None) -> None:
        self._vectors.recovery = value

    @property
    def repair_index_on_open(self) -> bool:
        """False: a damaged index raises instead of being moved aside and rebuilt (doctor's checks)."""
        return self._vectors.repair_on_open

    @repair_index_on_open.setter
    def repair_index_on_open(self, value: bool) -> None:
        self._vectors.repair_on_open = value

    @property
    def index(self) -> Any:
        """The vector index, opened on first use (probed first; see :attr:`IndexHandle.index`)."""
        return self._vectors.index

    def reopen_index(self) -> Any:
        """Drops the open index (e.g. after its folder was deleted) and opens it again."""
        return self._vectors.reopen()

    @property
    def is_index_writer(self) -> bool:
        """Whether this registry may write the vector index (see :attr:`IndexHandle.is_writer`)."""
        return self._vectors.is_writer

    def close(self) -> None:
        """Closes the index (giving the writer lock back) and the connection."""
        self._vectors.close()
        self._conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _after_write(self) -> None:
        self._vectors.after_write()

    # -- sources (registry.sources) ------------------------------------------------------------
    def register_source(
        self, path: str | os.PathLike, *, source_type: str = "image", width: int | None = None,
        height: int | None = None, fps: float | None = None, frame_count: int | None = None,
        metadata: dict | None = None, copy: bool = True, project: str | None = None,
    ) -> str:
        """Registers an image/video file; the same bytes always give the same ``src_…`` id
        (see :func:`registry.sources.register_source`)."""
        return sources.register_source(
            self._conn, self.data_dir, path, source_type=source_type, width=width, height=height, fps=fps,
            frame_count=frame_count, metadata=metadata, copy=copy, project=project,
        )

    def get_source(self, source_id: str) -> dict:
        """The source row; ``file_path`` is absolute. Raises ValueError for unknown ids."""
        return sources.get_source(self._conn, self.data_dir, source_id)

    def update_source_metadata(self, source_id: str, patch: dict) -> dict:
        """Merges ``patch`` into the source's metadata (a None value removes the key)."""
        return sources.update_source_metadata(self._conn, self.data_dir, source_id, patch)

    def find_source_by_hash(self, sha256_hex: str) -> dict | None:
        """The source whose content has this sha256 (hex), or None."""
        return sources.find_source_by_hash(self._conn, self.data_dir, sha256_hex)

    def list_sources(self, *, limit: int | None = None, offset: int = 0) -> list[dict]:
        """Sources in registration order, paginated."""
        return sources.list_sources(self._conn, self.data_dir, limit=limit, offset=offset)

    def count_sources(self) -> int:
        """The number of registered sources."""
        return sources.count_sources(self._conn)

    def add_frame(
        self, source_id: str, frame_idx: int, *, timestamp: float | None = None, file_path: str | None = None
    ) -> str:
        """A ``frm_…`` id for frame ``frame_idx`` of a source (the existing one if already added)."""
        return sources.add_frame(self._conn, self.data_dir, source_id, frame_idx, timestamp=timestamp,
                                 file_path=file_path)

    def list_frames(self, source_id: str, *, limit: int | None = None, offset: int = 0) -> list[dict]:
        """A source's frames in frame order, ``file_path`` absolute (see :mod:`registry.frames`)."""
        return frame_store.list_frames(self._conn, self.data_dir, source_id, limit=limit, offset=offset)

    def image_path(self, obj_or_frame: dict | str) -> Path:
        """The image an object/frame/source lies on: its frame's PNG, else the source file."""
        return frame_store.frame_file(self._conn, self.data_dir, obj_or_frame)

    # -- categories (registry.categories) ------------------------------------------------------
    def get_category(self, name_or_synonym: str) -> dict | None:
        """The category a name or synonym (case-insensitive) refers to, or None."""
        return categories.get_category(self._conn, name_or_synonym)

    def create_category(
        self, name: str, *, supercategory: str | None = None, synonyms: Sequence[str] = (),
        color: str | None = None, description: str | None = None,
    ) -> dict:
        """Creates a category; ValueError if the name or a synonym already names one."""
        return categories.create_category(self._conn, name, supercategory=supercategory, synonyms=synonyms,
                                          color=color, description=description)

    def list_categories(self) -> list[dict]:
        """All categories by name, each with ``object_count``."""
        return categories.list_categories(self._conn)

    def rename_category(self, old: str, new: str) -> dict:
        """Renames a category (its id, objects and synonyms stay)."""
        cid = categories.rename_category(self._conn, old, new, self.embedding_version)
        self._after_write()
        return categories.category_by_id(self._conn, cid)

    def add_synonyms(self, name: str, synonyms: Sequence[str]) -> dict:
        """Adds synonyms (case-insensitive lookup keys) to a category."""
        return categories.add_synonyms(self._conn, name, synonyms)

    def merge_categories(self, src: str, dst: str) -> dict:
        """Moves every object (and track) of ``src`` into ``dst``; ``src`` becomes a synonym of it."""
        did = categories.merge_categories(self._conn, src, dst, self.embedding_version)
        self._after_write()
        return categories.category_by_id(self._conn, did)

    # -- objects (registry.objects_write, registry.queries, registry.patches) ------------------
    def register_objects(
        self, source_id: str, objects: Sequence[ObjectIn], *, project: str | None = None, dedupe: bool = True
    ) -> RegisterResult:
        """Registers a batch of objects of one source in ONE transaction (all or nothing); see
        :func:`registry.objects_write.register_objects`.

        Raises:
            ValueError: unknown source, bad box/mask/embedding/category/confidence; nothing is
                written.
        """
        objects = list(objects)
        source = self.get_source(source_id)
        result, queued = register_objects(
            self._conn, source, objects, project=project, dedupe=dedupe, dedupe_iou=self.dedupe_iou,
            dim=self.embedding_dim, version=self.embedding_version,
        )
        if queued:
            self._after_write()
        return result

    def get_object(self, object_id: str) -> dict:
        """The object as a dict (see the module docstring for conventions); ValueError if unknown."""
        return queries.get_object(self._conn, self.embedding_version, object_id)

    def get_objects(self, object_ids: Sequence[str]) -> list[dict]:
        """Objects by id, in the given order; unknown ids are left out."""
        return queries.get_objects(self._conn, self.embedding_version, object_ids)

    def get_mask_rle(self, object_id: str) -> dict | None:
        """The compressed COCO RLE ``{"size": [h, w], "counts": str}``, or None without a mask."""
        return queries.get_mask_rle(self._conn, object_id)

    def get_mask(self, object_id: str) -> np.ndarray | None:
        """The ``(H, W)`` bool mask, or None without a mask."""
        return queries.get_mask(self._conn, object_id)

    def get_embedding(self, object_id: str) -> np.ndarray | None:
        """The ``(embedding_dim,)`` float32 vector of this registry's embedding version, or None."""
        return queries.get_embedding(self._conn, self.embedding_version, object_id)

    def get_embeddings(self, object_ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """(ids that have one, ``(n, embedding_dim)`` float32 vectors) in the given order."""
        return queries.get_embeddings(self._conn, self.embedding_version, object_ids)

    def list_objects(
        self, *, order: str = "confidence_asc", limit: int | None = 50, offset: int = 0, **filters: Any
    ) -> list[dict]:
        """Objects matching the filters, sorted and paginated (see :func:`registry.queries.list_objects`)."""
        return queries.list_objects(self._conn, self.embedding_version, order=order, limit=limit, offset=offset,
                                    **filters)

    def count_objects(self, **filters: Any) -> int:
        """The number of objects matching the filters of :meth:`list_objects`."""
        return queries.count_objects(self._conn, **filters)

    def iter_objects(self, *, batch_size: int = 1000, order: str | None = None, **filters: Any) -> Iterator[dict]:
        """Streams matching objects in batches (bounded memory; see :func:`registry.queries.iter_objects`)."""
        return queries.iter_objects(self._conn, self.embedding_version, batch_size=batch_size, order=order,
                                    **filters)

    def update_object(
        self, object_id: str, *, status: str | None = None, validated_by: str | None = None,
        category: str | None = None, quality_score: float | None = None, is_occluded: bool | None = None,
        is_truncated: bool | None = None, is_difficult: bool | None = None, mask: np.ndarray | None = None,
        xyxy: Sequence[float] | None = None, confidence: float | None = None,
        embedding: np.ndarray | None = None, metadata: dict | None = None,
    ) -> dict:
        """Patches an object and returns it; arguments left None are unchanged (see
        :func:`registry.patches.update_object`)."""
        queued = patches.update_object(
            self._conn, self.data_dir, object_id, dim=self.embedding_dim, version=self.embedding_version,
            status=status, validated_by=validated_by, category=category, quality_score=quality_score,
            is_occluded=is_occluded, is_truncated=is_truncated, is_difficult=is_difficult, mask=mask, xyxy=xyxy,
            confidence=confidence, embedding=embedding, metadata=metadata,
        )
        if queued:
            self._after_write()
        return self.get_object(object_id)

    def delete_object(self, object_id: str) -> None:
        """Deletes an object (its mask, embedding, track/dataset links go with it; its vector
        leaves the index through the outbox)."""
        if patches.delete_object(self._conn, object_id, self.embedding_version):
            self._after_write()

    # -- vectors (registry.index_handle, registry.search) --------------------------------------
    def sync_outbox(self, batch_size: int = 512) -> dict:
        """Relays pending outbox rows to the index: ``{"synced", "failed", "pending"}`` (only the
        index-writer process relays; elsewhere the result also holds ``"writer_pid"``)."""
        return self._vectors.sync_outbox(batch_size)

    def search(
        self, vector: np.ndarray, *, k: int = 10, category: str | Sequence[str] | None = None,
        project: str | None = None, min_confidence: float | None = None, status: str | None = None,
        rerank: int | None = None, fusion: dict | None = None, fusion_category: str | None = None,
        explain: bool = False,
    ) -> list[dict] | dict:
        """Objects nearest to ``vector`` (cosine), best first, each with ``similarity`` (1.0 =
        identical), ``score``, ``stage`` ("ann" | "exact" | "fused") and ``score_components``,
        restricted by the filters (applied to the SQLite rows, so always current). ``rerank`` m:
        k·m ANN candidates re-ranked exactly (0 = off); ``fusion`` weights with
        ``fusion_category``; ``explain`` adds the plan (see :func:`registry.search.search`).
        """
        return search.search(self._conn, self._vectors, vector, k=k, category=category, project=project,
                             min_confidence=min_confidence, status=status, rerank=rerank, fusion=fusion,
                             fusion_category=fusion_category, explain=explain)

    def rebuild_index(self, batch_size: int = 1000) -> int:
        """Rebuilds the index from the ``embeddings`` table; returns the number of vectors."""
        return self._vectors.rebuild(batch_size)

    # -- reports (registry.stats, registry.doctor) ---------------------------------------------
    def stats(self) -> dict:
        """Counts per category, per split, validation rate, confidence histogram (see stats.py)."""
        return stats.compute_stats(self._conn, self.embedding_version)

    def doctor(self, repair: bool = False, *, check_media: bool = False) -> dict:
        """Integrity report ``{"ok": bool, "checks": {...}}`` (see :mod:`registry.doctor`);
        ``repair`` syncs, rebuilds and removes litter; ``check_media`` hashes every media file."""
        return doctor.run_doctor(self._conn, self._vectors, repair=repair, check_media=check_media)
