"""Exact cosine search in numpy: the reference that tests and benchmarks compare against.

Everything lives in memory (``N × dim`` float32, 3 GB at 1M × 768); nothing is persisted.
Search is one matrix-vector product over every stored vector, so it is exact but O(N) per query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from registry.vectors.base import (
    Filter,
    VectorIndex,
    check_ids,
    check_query,
    check_vectors,
    normalize_metadata,
    normalize_where,
)

_UNKNOWN = -1  # code of a None string value in the interned metadata columns


class ExactIndex(VectorIndex):
    """Brute-force cosine similarity over L2-normalised float32 rows.

    Metadata strings are interned to int32 codes so that filters are vectorised comparisons,
    and an unknown confidence is NaN (NaN >= x is False, so it never passes ``min_confidence``).

    Args:
        dim: vector dimension (e.g. 768 for DINOv2-base).
        capacity: rows to allocate up front; the store doubles when full.
    """

    def __init__(self, dim: int, capacity: int = 1024) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self._capacity0 = max(int(capacity), 1)
        self._closed = False
        self._init_storage()

    def _init_storage(self) -> None:
        cap = self._capacity0
        self._n = 0
        self._vectors = np.empty((cap, self.dim), dtype=np.float32)
        self._row_ids: list[str] = []
        self._row_of: dict[str, int] = {}
        self._category = np.empty(cap, dtype=np.int32)
        self._project = np.empty(cap, dtype=np.int32)
        self._status = np.empty(cap, dtype=np.int32)
        self._confidence = np.empty(cap, dtype=np.float64)
        self._codes: dict[str, int] = {}

    # -- storage helpers -------------------------------------------------------------------
    def _code(self, value: str | None) -> int:
        if value is None:
            return _UNKNOWN
        code = self._codes.get(value)
        if code is None:
            code = self._codes[value] = len(self._codes)
        return code

    def _grow(self, needed: int) -> None:
        cap = self._vectors.shape[0]
        if needed <= cap:
            return
        new_cap = max(needed, cap * 2)
        self._vectors = _resize(self._vectors, new_cap)
        self._category = _resize(self._category, new_cap)
        self._project = _resize(self._project, new_cap)
        self._status = _resize(self._status, new_cap)
        self._confidence = _resize(self._confidence, new_cap)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this ExactIndex was closed; open a new index")

    # -- VectorIndex -----------------------------------------------------------------------
    def add(
        self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[Mapping[str, Any] | None]
    ) -> None:
        self._check_open()
        id_list = check_ids(ids)
        arr = check_vectors(vectors, self.dim, n=len(id_list))
        metas = list(metadatas)
        if len(metas) != len(id_list):
            raise ValueError(f"got {len(metas)} metadata dicts for {len(id_list)} ids")
        metas = [normalize_metadata(m) for m in metas]  # validate all before changing anything
        normed = arr / np.linalg.norm(arr, axis=1, keepdims=True)
        new = sum(1 for i in id_list if i not in self._row_of)
        self._grow(self._n + new)
        for i, (id_, meta) in enumerate(zip(id_list, metas, strict=True)):
            row = self._row_of.get(id_)
            if row is None:
                row = self._n
                self._n += 1
                self._row_of[id_] = row
                self._row_ids.append(id_)
            self._vectors[row] = normed[i]
            self._category[row] = self._code(meta["category"])
            self._project[row] = self._code(meta["project"])
            self._status[row] = self._code(meta["validation_status"])
            conf = meta["confidence"]
            self._confidence[row] = np.nan if conf is None else conf

    def delete(self, ids: Sequence[str]) -> None:
        self._check_open()
        for id_ in check_ids(ids):
            row = self._row_of.pop(id_, None)
            if row is None:
                continue
            last = self._n - 1
            if row != last:
                # Move the last row into the hole so rows stay dense.
                moved = self._row_ids[last]
                self._vectors[row] = self._vectors[last]
                self._category[row] = self._category[last]
                self._project[row] = self._project[last]
                self._status[row] = self._status[last]
                self._confidence[row] = self._confidence[last]
                self._row_ids[row] = moved
                self._row_of[moved] = row
            self._row_ids.pop()
            self._n = last

    def _mask(self, flt: Filter) -> np.ndarray | None:
        """Boolean mask over the stored rows, or None when nothing is filtered."""
        if flt.is_empty:
            return None
        n = self._n
        mask = np.ones(n, dtype=bool)
        if flt.categories is not None:
            codes = [self._codes[c] for c in flt.categories if c in self._codes]
            mask &= np.isin(self._category[:n], codes)
        if flt.project is not None:
            mask &= self._project[:n] == self._codes.get(flt.project, -2)
        if flt.min_confidence is not None:
            with np.errstate(invalid="ignore"):
                mask &= self._confidence[:n] >= flt.min_confidence
        if flt.statuses is not None:
            codes = [self._codes[s] for s in flt.statuses if s in self._codes]
            mask &= np.isin(self._status[:n], codes)
        return mask

    def query(
        self, vector: np.ndarray, k: int, where: Mapping[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        self._check_open()
        q = check_query(vector, self.dim, k)
        return self.query_many(q[None, :], k, where)[0]

    def query_many(
        self, vectors: np.ndarray, k: int, where: Mapping[str, Any] | None = None
    ) -> list[list[tuple[str, float]]]:
        """Like :meth:`query` for a batch of ``(Q, dim)`` queries (one matrix product).

        Returns:
            one ``[(id, similarity), ...]`` list per query row, best first; ties are broken by
            insertion order so results are deterministic.
        """
        self._check_open()
        qs = check_vectors(np.atleast_2d(vectors), self.dim)
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        flt = normalize_where(where)
        if self._n == 0 or flt.matches_nothing:
            return [[] for _ in range(len(qs))]
        qs = qs / np.linalg.norm(qs, axis=1, keepdims=True)
        mask = self._mask(flt)
        rows = np.arange(self._n) if mask is None else np.flatnonzero(mask)
        if rows.size == 0:
            return [[] for _ in range(len(qs))]
        base = self._vectors[: self._n] if mask is None else self._vectors[rows]
        sims = qs @ base.T  # (Q, M)
        kk = min(int(k), rows.size)
        out: list[list[tuple[str, float]]] = []
        for srow in sims:
            if kk < srow.size:
                top = np.argpartition(-srow, kk - 1)[:kk]
            else:
                top = np.arange(srow.size)
            # lexsort: primary key similarity (descending), ties by row (ascending).
            top = top[np.lexsort((rows[top], -srow[top]))]
            out.append([(self._row_ids[rows[t]], float(min(srow[t], 1.0))) for t in top])
        return out

    def count(self) -> int:
        self._check_open()
        return self._n

    def ids(self) -> set[str]:
        self._check_open()
        return set(self._row_ids)

    def reset(self) -> None:
        self._check_open()
        self._init_storage()

    def close(self) -> None:
        self._closed = True
        self._vectors = np.empty((0, self.dim), dtype=np.float32)


def _resize(arr: np.ndarray, rows: int) -> np.ndarray:
    out = np.empty((rows, *arr.shape[1:]), dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    return out
