"""Similarity search: the planned query over the ANN index, the exact matrix and the fresh segment.

Vectors are ``(embedding_dim,)`` float32, compared by cosine. One query runs as:

1. **Plan** (:mod:`registry.search_planner`): exact scoring of the filtered candidates, or the
   ANN index unfiltered with over-fetch and a SQLite post-filter (exact fallback when too few
   survive), or the **quantized** path for large category/status filters: sign-bit Hamming
   scan of the filter's rowids (in-memory postings), the best ``R`` re-scored exactly
   (:mod:`registry.vectors.quantized`), the result filtered in SQLite.
2. **Fresh segment**: objects whose outbox rows are still pending (committed, not yet relayed
   into the index and the matrix) are scored exactly from the ``embeddings`` table and replace
   whatever the index still holds for them, so a vector is searchable as soon as its object
   commits.
3. **Two-stage** (``rerank = m``): stage 1 takes ``k · m`` ANN candidates, stage 2 re-scores
   them exactly on the stored float32 vectors (:mod:`registry.vectors.matrix`) and re-orders.
4. **Fusion** (optional, :mod:`registry.search_fusion`): a weighted sum of the similarity and
   metadata (same category as a given one, confidence, validated).

Filters are applied to the SQLite rows, which are authoritative. Each result is the object's
dict plus ``similarity`` (cosine, exact unless only stage 1 ran), ``score`` (what ranked it),
``stage`` (``"ann" | "exact" | "fused"``: which stage produced ``score``), ``path`` (the plan)
and ``score_components`` (``ann``, ``exact`` and the fusion terms).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from registry.db import Connection
from registry.index_handle import IndexHandle
from registry.queries import get_objects, where_clause
from registry.search_fresh import FreshSegment
from registry.search_fusion import check_weights, fuse
from registry.search_planner import CardinalityStats, Plan, bounded_count, choose
from registry.validation import check_embedding
from registry.vectors.postings import Postings, Selection

DEFAULT_RERANK = 0
"""Re-ranking is off by default: Chroma's HNSW already returns exact float32 cosines for its
candidates, so stage 2 re-orders nothing and recall@10 stays the same (bench search at 100k:
0.944 at m = 0 and m = 4, p50 2.5 vs 4.3 ms; m = 16 widens the HNSW search past ef_search = 100:
0.949 at p95 24 ms). Stage 2 pays where stage 1 scores are approximate (quantised or remote
indexes) and feeds fusion."""
FUSION_POOL = 4
"""With fusion and no ``rerank``, fusion re-orders ``k · FUSION_POOL`` candidates."""

Hit = dict[str, Any]  # {"object_id", "ann", "exact", "rowid"}


def search(
    conn: Connection,
    vectors: IndexHandle,
    vector: np.ndarray,
    *,
    k: int = 10,
    category: str | Sequence[str] | None = None,
    project: str | None = None,
    min_confidence: float | None = None,
    status: str | Sequence[str] | None = None,
    rerank: int | None = None,
    fusion: Mapping[str, float] | None = None,
    fusion_category: str | None = None,
    explain: bool = False,
) -> list[dict] | dict[str, Any]:
    """Objects nearest to ``vector`` (cosine), best first, restricted by the filters.

    Args:
        conn: the registry connection.
        vectors: the index handle (ANN index, matrix, planner settings).
        vector: ``(dim,)`` float32 query (need not be normalised).
        k: results wanted (>= 1).
        category, project, min_confidence, status: filters on the SQLite rows.
        rerank: ``m``: stage 1 takes ``k · m`` candidates, re-ranked exactly; 0 = stage 1 only;
            None = :data:`DEFAULT_RERANK` (:data:`FUSION_POOL` with fusion).
        fusion: weights ``{"similarity", "category", "confidence", "validated"}`` (see
            :mod:`registry.search_fusion`); None = rank by similarity.
        fusion_category: the category (name or synonym) whose objects the ``category`` weight
            favours, e.g. the query's classification verdict.
        explain: return ``{"results": [...], "plan": {...}}`` instead of the list.

    Raises:
        ValueError: a query of the wrong shape/dimension, ``k < 1``, bad weights or filters.
    """
    q = np.frombuffer(check_embedding(vector, "query", vectors.embedding_dim, vectors.embedding_version), dtype="<f4")
    q = (q / np.linalg.norm(q)).astype(np.float32)
    if isinstance(k, bool) or int(k) <= 0:
        raise ValueError(f"expected k >= 1, got {k}")
    k = int(k)
    weights = check_weights(fusion)
    m = (FUSION_POOL if weights is not None else DEFAULT_RERANK) if rerank is None else int(rerank)
    if m < 0:
        raise ValueError(f"expected rerank >= 0 (0 = no re-ranking), got {rerank}")
    if weights is not None and fusion_category is None and weights.get("category"):
        raise ValueError("fusion weight 'category' needs fusion_category (the category to favour); pass one")
    filters = {"category": category, "project": project, "min_confidence": min_confidence, "status": status}
    filters = {key: v for key, v in filters.items() if v is not None}
    where, params = where_clause(conn, **filters)
    need = k * max(m, 1) if (m or weights is not None) else k
    plan, selection = _plan(conn, vectors, filters, where, params, k, need)
    if vectors.fresh is None:
        vectors.fresh = FreshSegment(vectors.embedding_version)
    fresh = vectors.fresh.search(conn, q, _and(where), params, need)
    plan.fresh = len(fresh["ids"])
    if vectors.fresh.overflow:
        plan.reason += (f"; {vectors.fresh.overflow} unrelayed rows exceed the fresh segment's "
                        f"{vectors.fresh.max_rows}: they are searchable once relayed")
    hits = _run(conn, vectors, q, plan, where, params, need, k, fresh, selection)
    if plan.path == "ann" and m:
        _rerank(conn, vectors, q, hits)
        plan.stages.append("exact")
    key = "exact" if plan.path != "ann" or m else "ann"
    hits.sort(key=lambda h: (-_sim(h), h["object_id"]))
    # Every hit passed the SQL filter already; without fusion only the top k need their rows
    # (a few spare in case one was deleted since).
    wanted = hits if weights is not None else hits[: k + 4]
    objects = {o["object_id"]: o for o in get_objects(conn, vectors.embedding_version, [h["object_id"] for h in wanted])}
    hits = [h for h in hits if h["object_id"] in objects]
    if weights is not None:
        hits = fuse(conn, hits, objects, weights, fusion_category)
        plan.stages.append("fused")
    out = []
    for h in hits[:k]:
        o = objects[h["object_id"]]
        o["similarity"] = float(min(_sim(h), 1.0))
        o["score"] = float(h.get("fused", o["similarity"]))
        o["stage"] = "fused" if "fused" in h else ("exact" if h.get("exact") is not None else "ann")
        o["path"] = plan.path
        o["score_components"] = {"ann": h.get("ann"), "exact": h.get("exact"), **h.get("terms", {})}
        out.append(o)
    if not plan.stages:
        plan.stages.append(key)
    return {"results": out, "plan": plan.to_dict()} if explain else out


def _sim(h: Hit) -> float:
    return float(h["exact"] if h.get("exact") is not None else h["ann"])


def _plan(conn: Connection, vectors: IndexHandle, filters: dict, where: str, params: list, k: int,
          need: int) -> tuple[Plan, Selection | None]:
    """The plan, and the filter's candidates from the postings when the quantized path runs."""
    cfg = vectors.planner
    stats = vectors.cardinality
    if stats is None:
        stats = vectors.cardinality = CardinalityStats(conn, cfg.stats_max_age_s)
    rows = None if vectors.matrix is None else int(vectors.matrix.rows)
    if not filters:
        _, total = stats.estimate(None, None)
        return choose(cfg, k=k, need=need, estimate=None, total=total, rows=rows), None
    from registry.categories import category_ids_for

    cat_ids = category_ids_for(conn, filters["category"]) if "category" in filters else None
    status = filters.get("status")
    statuses = None if status is None else ([status] if isinstance(status, str) else list(status))
    estimate, total = stats.estimate(cat_ids, statuses)
    upper = bool({"project", "min_confidence"} & set(filters))
    refine = (lambda limit: bounded_count(conn, where, params, limit)) if upper else None
    selection, note = None, ""
    if (cfg.quantized and not upper and estimate > max(cfg.exact_threshold, 4 * cfg.rescore_for(need))
            and vectors.matrix is not None):
        if vectors.postings is None:
            vectors.postings = Postings(conn, min_interval_s=min(cfg.stats_max_age_s, 1.0), matrix=vectors.matrix)
        vectors.postings.matrix = vectors.matrix  # the next refresh copies this matrix's bits
        selection, note = vectors.postings.select(cat_ids, statuses, cfg.quantized_max_stale_s)
    plan = choose(cfg, k=k, need=need, estimate=estimate, total=total, refine=refine,
                  quantized=None if selection is None else len(selection), rows=None if upper else rows,
                  slab=selection is not None and selection.slab is not None)
    if selection is None and note:
        plan.reason += f"; quantized path unavailable: {note}"
    return plan, (selection if plan.path == "quantized" else None)


def _and(where: str) -> str:
    return where.replace(" WHERE ", "", 1) if where else "1"


def _run(conn: Connection, vectors: IndexHandle, q: np.ndarray, plan: Plan, where: str, params: list,
         need: int, k: int, fresh: dict[str, Any], selection: Selection | None = None) -> list[Hit]:
    """Stage 1 on the chosen path, merged with the fresh segment (fresh ids win)."""
    if plan.path in ("quantized", "quantized_scan") and (selection is not None or plan.path == "quantized_scan"):
        hits = _quantized(conn, vectors, q, plan, where, params, need, fresh, selection)
        plan.stages += [plan.path, "exact"]
        if len(hits) + len(fresh["hits"]) >= k:
            return hits + fresh["hits"]
        # Rows changed under the postings (a commit since, or stale postings allowed).
        plan.path = "quantized_fallback_exact"
        plan.reason += f"; {len(hits)} re-scored candidates passed the filter, fewer than k={k}"
    elif plan.path == "ann":
        # A damaged index raises (RuntimeError naming the repair): never answered half-right.
        hits, raw = _ann(conn, vectors, q, plan, where, params, fresh)
        plan.stages.append("ann")
        # Too few survivors while the index had more to give: the filter is more selective
        # than estimated (or the index lags): answer exactly instead.
        if len(hits) + len(fresh["hits"]) >= k or raw < plan.fetch:
            return hits + fresh["hits"]
        plan.path = "ann_fallback_exact"
        plan.reason += f"; {len(hits)} of {raw} ANN hits passed the filter, fewer than k={k}"
    hits = _exact(conn, vectors, q, where, params, need, fresh["rowids"])
    plan.candidates = max(plan.candidates, len(hits))
    plan.stages.append("exact")
    return hits + fresh["hits"]


def _ann(conn: Connection, vectors: IndexHandle, q: np.ndarray, plan: Plan, where: str, params: list,
         fresh: dict[str, Any]) -> tuple[list[Hit], int]:
    """``(ANN hits that pass the filter in SQLite, raw hits the index returned)``."""
    index = vectors.index
    plan.fetch = fetch = max(int(plan.fetch), 1)
    got = index.query(q, fetch)
    raw = [(i, s) for i, s in got if i not in fresh["ids"]]
    if not raw:
        return [], len(got)
    sims = dict(raw)
    found = _passing(conn, where, params, list(sims))
    plan.candidates = len(found)
    return [{"object_id": i, "rowid": found[i], "ann": float(s), "exact": None} for i, s in raw if i in found], len(got)


def _passing(conn: Connection, where: str, params: list, ids: list[str]) -> dict[str, int]:
    """``{object id: rowid}`` of the ``ids`` whose current SQLite row passes the filter."""
    found: dict[str, int] = {}
    for start in range(0, len(ids), 900):
        part = ids[start:start + 900]
        with conn.lock:
            # The filter as a column, not a WHERE term: SQLite must look the ids up by primary
            # key, not scan a status/category index (33k rows at 100k for a status filter).
            found.update((r[1], r[0]) for r in conn.conn.execute(
                f"SELECT o.rowid, o.object_id, CASE WHEN {_and(where)} THEN 1 ELSE 0 END FROM objects o "
                f"WHERE o.object_id IN ({','.join('?' * len(part))})",
                [*params, *part],
            ).fetchall() if r[2])
    return found


def _quantized(conn: Connection, vectors: IndexHandle, q: np.ndarray, plan: Plan, where: str, params: list,
               need: int, fresh: dict[str, Any], selection: Selection | None) -> list[Hit]:
    """The quantized paths: Hamming scan of the filter's candidates (``selection``: its slab
    ranges, else its rowids gathered) or of every matrix row (None: ``quantized_scan``), ``R = plan.fetch`` re-scored exactly, then the
    best ``need`` whose current SQLite rows pass the filter (fresh objects: the fresh segment's)."""
    from registry.vectors.quantized import quantized_top, quantized_top_all, quantized_top_slab

    if selection is None:
        ids, sims, plan.candidates = quantized_top_all(vectors.matrix, q, plan.fetch, plan.fetch)
        if fresh["ids"]:
            keep = [j for j, i in enumerate(ids) if i not in fresh["ids"]]
            ids, sims = [ids[j] for j in keep], sims[keep]
    else:
        exclude = np.sort(np.fromiter(fresh["rowids"], np.int64)) if fresh["rowids"] else None
        if selection.slab is not None:
            ids, sims, plan.candidates = quantized_top_slab(vectors.matrix, q, selection, plan.fetch, plan.fetch, exclude)
        else:
            ids, sims, plan.candidates = quantized_top(vectors.matrix, q, selection.rowids(), plan.fetch, plan.fetch,
                                                       exclude)
    hits: list[Hit] = []
    start, step = 0, need + 8  # a few spare: a row may have left the filter since the postings
    while start < len(ids) and len(hits) < need:
        part = ids[start:start + step]
        found = _passing(conn, where, params, part)
        hits += [{"object_id": i, "rowid": found[i], "ann": None, "exact": float(s)}
                 for i, s in zip(part, sims[start:start + step].tolist(), strict=True) if i in found]
        start += len(part)
        step = min(2 * step, 900)
    return hits[:need]


def _exact(conn: Connection, vectors: IndexHandle, q: np.ndarray, where: str, params: list, need: int,
           exclude_rowids: set[int]) -> list[Hit]:
    """The ``need`` best filtered candidates, scored exactly (matrix, else SQLite's blobs)."""
    matrix = vectors.matrix
    if matrix is None:
        return _exact_sqlite(conn, vectors.embedding_version, q, where, params, need, exclude_rowids)
    with conn.lock:
        text = conn.conn.execute(f"SELECT group_concat(o.rowid) FROM objects o{where}", params).fetchone()[0]
    # One text row and one C-level parse: ~30x cheaper than fetching 5k one-column rows.
    rowids = np.fromstring(text, dtype=np.int64, sep=",") if text else np.zeros(0, np.int64)
    if exclude_rowids:
        rowids = rowids[~np.isin(rowids, np.fromiter(exclude_rowids, np.int64))]
    ids, sims = matrix.top_rowids(q, rowids, need)
    return [{"object_id": i, "rowid": None, "ann": None, "exact": float(s)}
            for i, s in zip(ids, sims.tolist(), strict=True)]


def _exact_sqlite(conn: Connection, version: str, q: np.ndarray, where: str, params: list, need: int,
                  exclude_rowids: set[int]) -> list[Hit]:
    """Exact scoring straight from the ``embeddings`` table (processes without the matrix)."""
    best: list[Hit] = []
    with conn.lock:
        cur = conn.conn.execute(
            f"SELECT o.rowid, o.object_id, e.vector FROM objects o JOIN embeddings e "
            f"ON e.object_id = o.object_id AND e.version_id = ? WHERE {_and(where)}",
            [version, *params],
        )
        while chunk := cur.fetchmany(20_000):
            chunk = [r for r in chunk if r[0] not in exclude_rowids]
            if not chunk:
                continue
            mat = np.frombuffer(b"".join(r[2] for r in chunk), dtype="<f4").reshape(len(chunk), -1)
            sims = (mat @ q) / np.linalg.norm(mat, axis=1)
            best += [{"object_id": r[1], "rowid": r[0], "ann": None, "exact": float(s)}
                     for r, s in zip(chunk, sims.tolist(), strict=True)]
            best = sorted(best, key=lambda h: -h["exact"])[:need]
    return best


def _rerank(conn: Connection, vectors: IndexHandle, q: np.ndarray, hits: list[Hit]) -> None:
    """Stage 2: the exact cosine of every ANN hit from the stored float32 vectors (in place)."""
    todo = [h for h in hits if h.get("exact") is None]
    if not todo:
        return
    matrix = vectors.matrix
    missing = todo
    if matrix is not None:
        sims = matrix.score_rowids(q, np.array([h["rowid"] for h in todo], np.int64))
        for h, s in zip(todo, sims.tolist(), strict=True):
            if s == s:  # not NaN: the matrix holds the row
                h["exact"] = float(s)
        missing = [h for h in todo if h.get("exact") is None]
    if missing:
        with conn.lock:
            rows = dict(conn.conn.execute(
                f"SELECT object_id, vector FROM embeddings WHERE version_id = ? AND object_id IN "
                f"({','.join('?' * len(missing))})", [vectors.embedding_version, *(h["object_id"] for h in missing)],
            ).fetchall())
        for h in missing:
            if h["object_id"] in rows:
                v = np.frombuffer(rows[h["object_id"]], dtype="<f4")
                h["exact"] = float(v @ q / np.linalg.norm(v))
