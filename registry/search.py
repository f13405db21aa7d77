"""Similarity search: the query planner over the vector index and the SQLite filters.

The index answers nearest neighbours (cosine, ``(embedding_dim,)`` float32 query vectors),
pre-filtered on the metadata it holds where it can; the filters are then applied to the
SQLite rows, which are authoritative (the index may lag by one outbox sync). When too few hits
survive the filters, the planner asks the index for more, up to all of it.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from registry.categories import category_by_id, category_ids_for
from registry.db import Connection
from registry.index_handle import IndexHandle
from registry.queries import get_objects, where_clause
from registry.validation import check_embedding

log = logging.getLogger(__name__)


def search(
    conn: Connection,
    vectors: IndexHandle,
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
    vec = np.frombuffer(check_embedding(vector, "query", vectors.embedding_dim, vectors.embedding_version), dtype="<f4")
    if int(k) <= 0:
        raise ValueError(f"expected k >= 1, got {k}")
    filters = {"category": category, "project": project, "min_confidence": min_confidence, "status": status}
    filtered = any(v is not None for v in filters.values())
    where_meta = index_where(conn, filters)
    total = None
    fetch = int(k) * (4 if filtered else 1) + (8 if filtered else 0)
    while True:
        hits = query_index(vectors.index, vec, fetch, where_meta)
        sims = dict(hits)
        if filtered:
            where, params = where_clause(conn, **{kk: v for kk, v in filters.items() if v is not None})
            ids = list(sims)
            keep: set[str] = set()
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                joiner = " AND " if where else " WHERE "
                keep |= {r["object_id"] for r in conn.query(
                    f"SELECT o.object_id FROM objects o{where}{joiner}o.object_id IN ({','.join('?' * len(chunk))})",
                    [*params, *chunk])}
            ordered = [i for i, _ in hits if i in keep]
        else:
            ordered = [i for i, _ in hits]
        if total is None:
            total = vectors.index.count()
        if len(ordered) >= k or len(hits) < fetch or fetch >= total:
            break
        fetch = min(fetch * 4, total)
    out = []
    for o in get_objects(conn, vectors.embedding_version, ordered[: int(k)]):
        o["similarity"] = float(sims[o["object_id"]])
        out.append(o)
    out.sort(key=lambda o: -o["similarity"])
    return out


def index_where(conn: Connection, filters: dict) -> dict | None:
    """The index pre-filter (registry.vectors.normalize_where keys) or None."""
    where: dict[str, Any] = {}
    if filters.get("category") is not None:
        ids = category_ids_for(conn, filters["category"])
        where["category"] = [category_by_id(conn, i)["name"] for i in ids]
    if filters.get("project") is not None:
        where["project"] = filters["project"]
    if filters.get("min_confidence") is not None:
        where["min_confidence"] = float(filters["min_confidence"])
    if filters.get("status") is not None:
        where["validation_status"] = filters["status"]
    return where or None


def query_index(index: Any, vec: np.ndarray, fetch: int, where: dict | None) -> list[tuple[str, float]]:
    """The ``fetch`` nearest ``(object id, similarity)`` pairs, pre-filtered by ``where`` where the
    index can filter on metadata."""
    # The index metadata may lag SQLite by one sync; the SQL filter after it is authoritative.
    if where is not None:
        try:
            return list(index.query(vec, fetch, where=where))
        except (TypeError, NotImplementedError, ValueError) as exc:
            log.debug("index has no metadata filter (%s); filtering in SQLite", exc)
    return list(index.query(vec, fetch))
