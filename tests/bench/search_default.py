"""``bench search``'s ``default`` section: search measured through ``Registry.search`` on the
configuration ``launch.py serve`` uses (embedded Chroma + the exact matrix + the planner, the
default re-rank), on the same vectors, queries and exact ground truth as the raw indexes.

Figures (all from one run):

* ``default.unfiltered`` / ``category_filter`` / ``status_filter``: ``{p50_ms, p95_ms,
  recall_at_10, paths, plan}`` (``paths``: how often the planner chose each path; ``plan``: the
  last query's full plan from ``explain``, reason and candidate counts included).
* ``default.planner_paths``: the same filtered queries with the path forced (exact, ann,
  quantized), so every path has its recall@10 against exact.
* ``default.quantized_unfiltered``: the quantized scan + re-score over every row (not a planner
  path: unfiltered queries stay on the ANN index), for comparison with ``unfiltered``.
* ``default.postings_load_s``: reading the filter postings the quantized path scans (their slab
  of sign bits included; ``default.postings_slab_s`` the copy alone).
* ``two_stage``: recall@10 and p95 of stage 1 alone (``rerank=0``) vs stage 1+2 (default m).
* ``default.build``: the matrix built from SQLite (vectors/s) and, when the Chroma collection
  was not shared with the raw measurement, the full index rebuild (Chroma + matrix).
* ``freshness``: objects registered with ``sync_on_write=False`` are searchable at once (fresh
  segment): ``searchable_per_s`` = objects / (commit time + time until every probe finds its
  own object at rank 1), beside ``index_build_vectors_per_s`` (the outbox relay into Chroma +
  matrix) and the fresh segment's query cost with that backlog pending.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

K = 10
STATUSES = ("pending", "approved", "rejected")


def bulk_load(reg: Any, data: Any) -> int:
    """Writes the bench vectors as registry rows (objects + embeddings, no outbox: the Chroma
    collection already holds them or is rebuilt from these rows). Ids and metadata equal the
    raw indexes' (``obj_%08d``, ``cat<i>``, ``proj<i>``, status, confidence)."""
    with reg.transaction() as tx:
        cats = {}
        for i in range(data.categories):
            name = f"cat{i}"
            cats[name] = tx.execute("INSERT INTO categories (name) VALUES (?)", (name,)).lastrowid
            tx.execute("INSERT INTO category_names (name_key, category_id) VALUES (?, ?)", (name, cats[name]))
        tx.execute("INSERT INTO sources (source_id, source_type, width, height, content_hash) "
                   "VALUES ('src_bench', 'image', 1024, 768, 'bench')")
    n = 0
    for ids, vecs, metas in data.chunks():
        rows = [(oid, "src_bench", cats[m["category"]], m["project"], 1.0, 1.0, 10.0, 10.0, m["confidence"],
                 int(m["validation_status"] != "pending"), m["validation_status"])
                for oid, m in zip(ids, metas, strict=True)]
        embs = [(oid, "bench", data.dim, v.astype("<f4").tobytes()) for oid, v in zip(ids, vecs, strict=True)]
        with reg.transaction() as tx:
            tx.executemany(
                "INSERT INTO objects (object_id, source_id, category_id, project_id, bbox_x, bbox_y, bbox_w, bbox_h, "
                "confidence, is_validated, validation_status) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
            tx.executemany("INSERT INTO embeddings (object_id, version_id, dim, vector) VALUES (?,?,?,?)", embs)
        n += len(ids)
    return n


def _pct(times: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times) * 1000.0, q))


def measure(reg: Any, queries: np.ndarray, filters: list[dict], truth: Any, offset: int, **kw: Any) -> dict:
    """p50/p95 of ``reg.search(q, k=10, **filter, **kw)`` and recall@10 against ``truth``."""
    for q, f in zip(queries[:5], filters[:5], strict=True):  # warm: caches, cardinality counts
        reg.search(q, k=K, **f, **kw)
    times, hits, total, paths, plan = [], 0, 0, {}, None
    for qi, (q, f) in enumerate(zip(queries, filters, strict=True)):
        t0 = time.perf_counter()
        res = reg.search(q, k=K, explain=True, **f, **kw)
        times.append(time.perf_counter() - t0)
        want = truth.ids(offset + qi)
        hits += len(want & {h["object_id"] for h in res["results"]})
        total += len(want)
        plan = res["plan"]
        paths[plan["path"]] = paths.get(plan["path"], 0) + 1
    return {"p50_ms": _pct(times, 50), "p95_ms": _pct(times, 95), "recall_at_10": hits / max(total, 1),
            "paths": paths, "plan": plan}


def quantized_unfiltered(reg: Any, queries: np.ndarray, truth: Any) -> dict:
    """The quantized scan + re-score over every matrix row, timed like :func:`measure`."""
    from registry.vectors.quantized import quantized_top

    m = reg._vectors.matrix
    with m.lock:
        rowids = np.sort(np.asarray(m.rowids[: m.rows]))
    r = reg._vectors.planner.rescore_for(K)
    times, hits, total = [], 0, 0
    for qi, q in enumerate(queries):
        qn = (q / np.linalg.norm(q)).astype(np.float32)
        t0 = time.perf_counter()
        ids, _, _ = quantized_top(m, qn, rowids, r, K)
        times.append(time.perf_counter() - t0)
        want = truth.ids(qi)
        hits += len(want & set(ids))
        total += len(want)
    return {"p50_ms": _pct(times, 50), "p95_ms": _pct(times, 95), "recall_at_10": hits / max(total, 1),
            "rescore": r, "note": "quantized_top over all rows, no SQLite or fresh segment"}


def _forced(reg: Any, path: str) -> dict[str, Any]:
    from dataclasses import asdict

    cfg = reg._vectors.planner
    old = asdict(cfg)
    if path == "exact":
        cfg.exact_threshold, cfg.quantized = 1 << 40, False
    elif path == "ann":
        cfg.exact_threshold, cfg.max_ann_fetch, cfg.exact_us_per_candidate = 0, 1 << 40, float("inf")
        cfg.quantized = False
    else:  # quantized whenever it is eligible
        cfg.exact_threshold, cfg.max_ann_fetch, cfg.exact_us_per_candidate = 0, 0, float("inf")
        cfg.quantized_base_us = cfg.quantized_us_per_candidate = cfg.quantized_us_per_rescore = 0.0
        cfg.slab_us_per_candidate = 0.0
    return old


def run_default(folder: Path, data: Any, qvecs: np.ndarray, qcats: list[str], truth: Any,
                shared_chroma: bool, fresh_objects: int) -> dict[str, Any]:
    """Measures the serve configuration in ``folder`` (its ``chroma`` collection ``objects_bench``
    is reused when ``shared_chroma``); returns ``{"default", "two_stage", "freshness"}``."""
    from registry.facade import Registry
    from registry.search import DEFAULT_RERANK

    nq = len(qvecs)
    reg = Registry(folder, embedding_dim=data.dim, embedding_version="bench", index="chroma")
    try:
        t0 = time.perf_counter()
        n = bulk_load(reg, data)
        build: dict[str, Any] = {"sqlite_rows_per_s": n / (time.perf_counter() - t0)}
        shared = shared_chroma and reg.index.count() == n  # opens (probes) the index: not timed
        t0 = time.perf_counter()
        if shared:
            rows = reg._vectors.rebuild_matrix()
            build["matrix_vectors_per_s"] = rows / (time.perf_counter() - t0)
        else:
            rows = reg.rebuild_index()
            build["index_and_matrix_vectors_per_s"] = rows / (time.perf_counter() - t0)
        assert rows == n == reg.index.count(), (rows, n, reg.index.count())
        from registry.search_planner import CardinalityStats
        from registry.vectors.postings import Postings

        # Load the planner's counts and the quantized path's postings before timing (serve loads
        # them on its first filtered queries, in the background).
        reg._vectors.cardinality = CardinalityStats(reg.connection, reg._vectors.planner.stats_max_age_s)
        reg._vectors.postings = Postings(reg.connection, matrix=reg._vectors.matrix)
        postings_s = reg._vectors.postings.refresh()
        status_f = {"status": "approved"}
        sets = {
            "unfiltered": ([{}] * nq, 0),
            "category_filter": ([{"category": c} for c in qcats], nq),
            "status_filter": ([status_f] * nq, 2 * nq),
        }
        default = {name: measure(reg, qvecs, fl, truth, off) for name, (fl, off) in sets.items()}
        default["build"] = build
        default["postings_load_s"] = postings_s
        default["postings_slab_s"] = reg._vectors.postings.last_slab_s
        default["quantized_unfiltered"] = quantized_unfiltered(reg, qvecs, truth)
        default["config"] = {"index": "chroma", "rerank": DEFAULT_RERANK, **vars(reg._vectors.planner)}
        forced: dict[str, Any] = {}
        for name in ("category_filter", "status_filter"):
            fl, off = sets[name]
            forced[name] = {}
            for path in ("exact", "ann", "quantized"):
                old = _forced(reg, path)
                try:
                    forced[name][path] = measure(reg, qvecs, fl, truth, off)
                finally:
                    for key, value in old.items():
                        setattr(reg._vectors.planner, key, value)
        default["planner_paths"] = forced
        two = {}
        for name in ("unfiltered", "category_filter"):
            fl, off = sets[name]
            two[name] = {"stage1": default[name] if DEFAULT_RERANK == 0 else measure(reg, qvecs, fl, truth, off, rerank=0)}
            # m = 16: k·m above Chroma's ef_search (100) also widens the HNSW search
            for m in (4, 16) if name == "unfiltered" else (4,):
                two[name][f"stage1+2_m{m}"] = measure(reg, qvecs, fl, truth, off, rerank=m)
        result = {"default": default, "two_stage": two}
        result["freshness"] = freshness(reg, data, fresh_objects)
        return result
    finally:
        reg.close()


def freshness(reg: Any, data: Any, n: int) -> dict[str, Any]:
    """Objects committed -> searchable, and the relay's rate, on ``n`` new objects."""
    from registry.facade import ObjectIn

    rng = np.random.default_rng([data.seed, 9])
    vecs, _ = data._sample(rng, n)
    reg.sync_on_write = False
    sid = "src_bench"
    probes = rng.choice(n, size=min(20, n), replace=False)
    t0 = time.perf_counter()
    ids: list[str] = []
    for s in range(0, n, 500):
        objs = [ObjectIn(f"cat{int(rng.integers(data.categories))}", (1, 1, 9, 9), confidence=0.5, embedding=v)
                for v in vecs[s:s + 500]]
        ids += reg.register_objects(sid, objs, dedupe=False).object_ids
    commit_s = time.perf_counter() - t0
    found = 0
    lat = []
    for p in probes:
        t1 = time.perf_counter()
        top = reg.search(vecs[p], k=1, explain=True)
        lat.append(time.perf_counter() - t1)
        found += top["results"][0]["object_id"] == ids[p]
    searchable_s = time.perf_counter() - t0
    pending = reg.connection.scalar("SELECT count(*) FROM embedding_outbox WHERE status = 'pending'")
    t1 = time.perf_counter()
    res = reg.sync_outbox(batch_size=2000)
    relay_s = time.perf_counter() - t1
    # Leave the index as it was (a --reuse run finds exactly --objects vectors again).
    from registry import outbox

    with reg.transaction() as tx:
        tx.executemany("DELETE FROM objects WHERE object_id = ?", [(i,) for i in ids])
        outbox.enqueue_tx(tx, ids, "bench", "delete")
    reg.sync_outbox(batch_size=2000)
    reg.sync_on_write = True
    return {
        "objects": n,
        "probes_found_before_relay": f"{found}/{len(probes)}",
        "pending_while_probing": pending,
        "commit_s": commit_s,
        "searchable_per_s": n / searchable_s if found == len(probes) else 0.0,
        "fresh_query_p50_ms_with_backlog": _pct(lat, 50),
        "index_build_vectors_per_s": res["synced"] / relay_s if relay_s else 0.0,
        "ratio_searchable_vs_index_build": (n / searchable_s) / (res["synced"] / relay_s) if res["synced"] else None,
        "target_per_s": 5000.0,
    }
