"""hnswlib behind the :class:`VectorIndex` interface, with metadata filters in numpy.

Why it exists: embedded Chroma filters metadata in SQLite before its HNSW search, which costs
tens to hundreds of milliseconds per filtered query already at 20k-100k vectors (see
``launch.py bench search``). Here metadata lives in numpy columns (:class:`MetaColumns`), so a
filter is a vectorised comparison; then

* very few matches (``<= brute_force_max``): exact cosine over just those vectors;
* otherwise: fetch more unfiltered neighbours and keep the matching ones (exact when enough
  match), falling back to an HNSW walk that only accepts matching labels (hnswlib's filter).

Storage: ``<folder>/index.bin`` (hnswlib) and ``<folder>/meta.npz`` (ids and metadata), written
atomically by :meth:`flush` and :meth:`close`. Between flushes the index lives in memory only;
SQLite stays the source of truth, so a crash loses nothing that ``doctor --repair`` (rebuild)
cannot restore. One process at a time may open a folder.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from registry.vectors.base import (
    VectorIndex,
    check_add,
    check_ids,
    check_query,
    normalize_where,
)
from registry.vectors.meta_columns import MetaColumns

_EXACT_FALLBACK_MAX = 5000  # vectors worth copying out of hnswlib for an exact answer
REPAIR_HINT = "run `python launch.py doctor --data DIR --repair` to rebuild it from SQLite"


class HnswIndex(VectorIndex):
    """Cosine HNSW (hnswlib) with numpy metadata filters, persisted in one folder.

    Args:
        folder: where ``index.bin`` and ``meta.npz`` live (e.g. ``<data>/hnsw/objects_dinov2-base``).
        dim: vector dimension.
        max_neighbors: HNSW ``M`` (graph degree); more = better recall, slower build, more RAM.
        ef_construction: build-time search breadth; more = better graph, slower inserts.
        ef_search: query-time search breadth (raised to ``k`` when smaller).
        brute_force_max: filtered queries matching at most this many vectors are answered
            exactly instead of through the graph (a filtered graph walk may visit most of the
            graph when almost nothing matches). Kept small because hnswlib's ``get_items``
            copies vectors slowly (~0.15 ms each on this machine).
        num_threads: threads for inserts (``-1`` = all cores).
        overfetch_max: filtered queries first fetch up to this many unfiltered neighbours and
            keep the matching ones; only if fewer than ``k`` match is the graph walked with
            hnswlib's (slower, per-candidate Python callback) filter.

    Raises:
        ValueError: for a bad ``dim``, or stored files of another dimension.
        RuntimeError: when stored files cannot be read (corrupt).
    """

    def __init__(
        self,
        folder: Path,
        dim: int,
        *,
        max_neighbors: int = 16,
        ef_construction: int = 100,
        ef_search: int = 100,
        brute_force_max: int = 256,
        num_threads: int = -1,
        overfetch_max: int = 500,
    ) -> None:
        import hnswlib

        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self.folder = Path(folder).expanduser().resolve()
        self.max_neighbors = int(max_neighbors)
        self.ef_construction = int(ef_construction)
        self.ef_search = int(ef_search)
        self.brute_force_max = int(brute_force_max)
        self.num_threads = int(num_threads)
        self.overfetch_max = int(overfetch_max)
        self._hnswlib = hnswlib
        self._lock = threading.RLock()
        self._closed = False
        self._dirty = False
        self.folder.mkdir(parents=True, exist_ok=True)
        if (self.folder / "index.bin").exists():
            self._load()
        else:
            self._init_empty()

    # -- storage -----------------------------------------------------------------------------
    def _init_empty(self, capacity: int = 1024) -> None:
        self._index = self._hnswlib.Index(space="cosine", dim=self.dim)
        self._index.init_index(
            max_elements=capacity,
            M=self.max_neighbors,
            ef_construction=self.ef_construction,
            allow_replace_deleted=True,
        )
        self._index.set_ef(self.ef_search)
        self._label_of: dict[str, int] = {}
        self._id_of_label: list[str | None] = []  # label -> id; None once deleted
        self._meta = MetaColumns(capacity)

    def _load(self) -> None:
        try:
            with np.load(self.folder / "meta.npz", allow_pickle=False) as z:
                stored_dim = int(z["dim"])
                if stored_dim != self.dim:
                    raise _DimError(stored_dim)
                id_of_label = [s if s else None for s in z["ids"].tolist()]
                meta = MetaColumns.from_arrays(z, capacity=len(id_of_label))
            index = self._hnswlib.Index(space="cosine", dim=self.dim)
            index.load_index(str(self.folder / "index.bin"), allow_replace_deleted=True)
        except _DimError as exc:
            from registry.vectors.base import DimensionMismatchError

            raise DimensionMismatchError(
                f"embedding dimension mismatch: the index in {self.folder} holds {exc.args[0]}-d "
                f"vectors, opened with dim={self.dim}; use the index of the matching embedding "
                f"version, or reset/rebuild this one"
            ) from None
        except Exception as exc:
            raise RuntimeError(
                f"HNSW index in {self.folder} cannot be read ({type(exc).__name__}: {exc}); "
                f"{REPAIR_HINT}"
            ) from exc
        index.set_ef(self.ef_search)
        self._index = index
        self._id_of_label = id_of_label
        self._label_of = {i: lab for lab, i in enumerate(id_of_label) if i is not None}
        self._meta = meta
        missing = len(set(self._label_of.values()) - set(index.get_ids_list()))
        if missing:  # e.g. a crash between writing meta.npz and index.bin
            raise RuntimeError(
                f"HNSW index in {self.folder} is inconsistent: {missing} ids have no vector; "
                f"{REPAIR_HINT}"
            )

    def flush(self) -> None:
        """Writes the index and metadata to the folder (atomically) if anything changed."""
        with self._lock:
            self._check_open()
            if not self._dirty:
                return
            n = len(self._id_of_label)
            tmp_index = self.folder / "index.bin.tmp"
            tmp_meta = self.folder / "meta.tmp.npz"
            self._index.save_index(str(tmp_index))
            np.savez(
                tmp_meta,
                dim=np.int64(self.dim),
                ids=np.asarray([i or "" for i in self._id_of_label], dtype=np.str_),
                **self._meta.arrays(n),
            )
            tmp_meta.replace(self.folder / "meta.npz")
            tmp_index.replace(self.folder / "index.bin")
            self._dirty = False

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"this HnswIndex ({self.folder}) was closed; open a new index")

    # -- VectorIndex ---------------------------------------------------------------------------
    def add(
        self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[Mapping[str, Any] | None]
    ) -> None:
        # validate everything before changing anything
        id_list, arr, metas = check_add(ids, vectors, metadatas, self.dim)
        if not id_list:
            return
        with self._lock:
            self._check_open()
            labels = np.empty(len(id_list), dtype=np.int64)
            is_new = np.zeros(len(id_list), dtype=bool)
            for j, id_ in enumerate(id_list):
                label = self._label_of.get(id_)
                if label is None:
                    label = len(self._id_of_label)
                    self._id_of_label.append(id_)
                    self._label_of[id_] = label
                    is_new[j] = True
                labels[j] = label
            self._meta.grow(len(self._id_of_label))
            for label, meta in zip(labels.tolist(), metas, strict=True):
                self._meta.set(label, meta)
            live = len(self._label_of)
            if live > self._index.get_max_elements():
                self._index.resize_index(max(live, int(self._index.get_max_elements() * 2)))
            if not is_new.all():
                # Existing ids are updated in place. (With replace_deleted, hnswlib would move
                # the label into a freed slot and leave the old copy searchable.)
                old = ~is_new
                self._index.add_items(arr[old], labels[old], num_threads=self.num_threads)
            if is_new.any():
                # New ids reuse the slots of deleted vectors, so churn does not grow the file.
                self._index.add_items(
                    arr[is_new], labels[is_new], num_threads=self.num_threads, replace_deleted=True
                )
            self._dirty = True

    def delete(self, ids: Sequence[str]) -> None:
        id_list = check_ids(ids)
        with self._lock:
            self._check_open()
            for id_ in id_list:
                label = self._label_of.pop(id_, None)
                if label is None:
                    continue
                self._index.mark_deleted(label)
                self._id_of_label[label] = None
                self._meta.clear(label)
                self._dirty = True

    def query(
        self, vector: np.ndarray, k: int, where: Mapping[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        q = check_query(vector, self.dim, k)
        flt = normalize_where(where)
        with self._lock:
            self._check_open()
            live = len(self._label_of)
            if live == 0 or flt.matches_nothing:
                return []
            mask = self._meta.mask(flt, len(self._id_of_label))
            if mask is None:
                kk = min(int(k), live)
                labels, dists = self._knn(q, kk, None)
            else:
                n_match = int(np.count_nonzero(mask))
                if n_match == 0:
                    return []
                kk = min(int(k), n_match)
                if n_match <= self.brute_force_max:
                    labels, dists = self._exact(q, np.flatnonzero(mask), kk)
                else:
                    labels, dists = self._filtered(q, kk, mask, n_match, live)
            ids = self._id_of_label
            return [
                (ids[lab], float(min(1.0, 1.0 - d)))
                for lab, d in zip(labels.tolist(), dists.tolist(), strict=True)
            ]

    def _filtered(
        self, q: np.ndarray, k: int, mask: np.ndarray, n_match: int, live: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` among the labels ``mask`` accepts.

        First over-fetch unfiltered neighbours and keep the accepted ones: if at least ``k`` of
        the nearest ``m`` pass, they are exactly the filtered top ``k`` (any closer accepted
        vector would be among the ``m``). That needs no Python callback and wins whenever the
        filter agrees with the query's neighbourhood (searching cars near a car) or is not
        selective. Otherwise walk the graph with hnswlib's filter.
        """
        tries = [max(4 * k, 40), int(np.ceil(2.0 * k * live / n_match))]
        for m in sorted({min(t, live, self.overfetch_max) for t in tries}):
            if m < k:
                continue
            try:
                # ef = 2m: the tail of an over-fetched list needs a wider search to be right.
                labels, dists = self._knn(q, m, None, exact_fallback=False, ef=2 * m)
            except RuntimeError:
                continue
            keep = mask[labels]
            if int(np.count_nonzero(keep)) >= k:
                return labels[keep][:k], dists[keep][:k]
        return self._knn(q, k, mask)

    def _knn(
        self,
        q: np.ndarray,
        k: int,
        mask: np.ndarray | None,
        *,
        exact_fallback: bool = True,
        ef: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        self._index.set_ef(max(self.ef_search, k, ef))
        filt = None
        if mask is not None:
            # Called by hnswlib for each candidate label. bytes indexing returns 0/1 and costs
            # ~1 ms to build at 1M labels (a Python list would take ~30 ms).
            filt = mask.tobytes().__getitem__
        try:
            labels, dists = self._index.knn_query(q[None, :], k=k, num_threads=1, filter=filt)
        except RuntimeError:
            # hnswlib raises when the graph walk finds fewer than k accepted vectors (small or
            # heavily deleted indexes, selective filters).
            if not exact_fallback:
                raise
            rows = np.arange(len(self._id_of_label)) if mask is None else np.flatnonzero(mask)
            rows = np.asarray([r for r in rows.tolist() if self._id_of_label[r] is not None])
            if rows.size <= _EXACT_FALLBACK_MAX:
                return self._exact(q, rows, min(k, rows.size))
            # Too many to copy out of hnswlib (slow get_items): return the best that a
            # smaller k finds rather than nothing.
            for smaller in (k // 2, k // 4, 1):
                if smaller >= 1:
                    try:
                        labels, dists = self._index.knn_query(
                            q[None, :], k=smaller, num_threads=1, filter=filt
                        )
                        return labels[0], dists[0]
                    except RuntimeError:
                        continue
            return np.empty(0, np.int64), np.empty(0, np.float32)
        return labels[0], dists[0]

    def _exact(self, q: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        vecs = np.asarray(self._index.get_items(labels, return_type="numpy"), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        sims = vecs @ (q / np.linalg.norm(q))
        top = np.argpartition(-sims, k - 1)[:k] if k < sims.size else np.arange(sims.size)
        top = top[np.lexsort((labels[top], -sims[top]))]
        return labels[top], 1.0 - sims[top]

    def count(self) -> int:
        with self._lock:
            self._check_open()
            return len(self._label_of)

    def ids(self) -> set[str]:
        with self._lock:
            self._check_open()
            return set(self._label_of)

    def reset(self) -> None:
        with self._lock:
            self._check_open()
            self._init_empty()
            self._dirty = True
            self.flush()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self.flush()
            finally:
                self._closed = True
                self._index = None

    def check(self) -> None:
        """Raises ``RuntimeError`` when the files on disk are missing while vectors exist."""
        with self._lock:
            self._check_open()
            if not self._dirty and self._label_of and not (self.folder / "index.bin").exists():
                raise RuntimeError(f"HNSW index files in {self.folder} are missing; {REPAIR_HINT}")

    def set_ef_search(self, ef_search: int) -> None:
        """Changes the query-time search breadth (recall vs latency); applies at once."""
        with self._lock:
            self.ef_search = int(ef_search)
            self._index.set_ef(self.ef_search)


class _DimError(Exception):
    pass
