"""Exact cosine search in numpy: the reference that tests and benchmarks compare against.

Everything lives in memory (``N × dim`` float32, 3 GB at 1M × 768); nothing is persisted.
Search is one matrix-vector product over every stored vector, so it is exact but O(N) per query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from registry.vectors.base import (
    VectorIndex,
    check_add,
    check_ids,
    check_query,
    check_vectors,
    normalize_where,
)
from registry.vectors.meta_columns import MetaColumns


class ExactIndex(VectorIndex):
    """Brute-force cosine similarity over L2-normalised float32 rows.

    Metadata lives in :class:`MetaColumns` (interned int32 codes, NaN for an unknown
    confidence), so filters are vectorised comparisons.

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
        self._meta = MetaColumns(cap)

    def _grow(self, needed: int) -> None:
        cap = self._vectors.shape[0]
        if needed > cap:
            new = np.empty((max(needed, cap * 2), self.dim), dtype=np.float32)
            new[: self._n] = self._vectors[: self._n]
            self._vectors = new
        self._meta.grow(needed)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this ExactIndex was closed; open a new index")

    # -- VectorIndex -----------------------------------------------------------------------
    def add(
        self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[Mapping[str, Any] | None]
    ) -> None:
        self._check_open()
        # validate everything before changing anything
        id_list, arr, metas = check_add(ids, vectors, metadatas, self.dim)
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
            self._meta.set(row, meta)

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
                self._meta.copy_row(last, row)
                self._row_ids[row] = moved
                self._row_of[moved] = row
            self._row_ids.pop()
            self._n = last

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
        mask = self._meta.mask(flt, self._n)
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
