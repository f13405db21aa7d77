"""Vector search: insert rate, query p50/p95 and recall@10 against exact search, same run.

    python launch.py bench search                       # 100k × 768-d, Chroma and hnswlib
    python launch.py bench search --objects 1000000 --index hnsw   # the 1M target (≈ 3 GB)
    python launch.py bench search --objects 1000000 --index chroma --queries 100   # 1M default section
    python launch.py bench search --ef-search 50,100,200 --max-neighbors 32 --json
    python launch.py bench search --objects 200000 --categories 4 --index chroma --queries 100
        # 1M's ~50k objects per category at a fifth of the size (the quantized path's cost)

The data are clustered, L2-normalised 768-d float32 vectors (real embeddings cluster by object
kind; uniform noise would make every neighbour equally far and recall meaningless). Each vector
carries a category tied to its cluster (90 %), so a category filter keeps ~1/20 of the index
and agrees with the query's neighbourhood; a validation-status filter keeps 1/3, unrelated to it.
Vectors are generated and inserted in chunks, and the exact top-10 of every query is kept up to
date chunk by chunk with :class:`ExactIndex`, so memory stays bounded (one chunk plus the
index under test) at any ``--objects``.

The top-level ``default`` object (and ``two_stage``, ``freshness``) is measured through
``Registry.search`` on the configuration ``launch.py serve`` uses: see
:mod:`tests.bench.search_default`. With ``chroma`` among ``--index`` it reuses the Chroma
collection built here (same folder, same vectors), so 1M vectors are inserted once.

Targets (issue 2): insert ≥ 5,000 vectors/s; at 1M, query p95 ≤ 10 ms and recall@10 ≥ 0.95.
``recall_at_10`` is strict (ids); ``recall_at_10_eps1e-3`` also counts results whose similarity
is within 1e-3 of the true 10th neighbour (ann-benchmarks' convention for near-ties).
Ratios are ``target / measured`` for latency (≥ 1 means the target is met) and
``measured / target`` for rates and recall.
"""

from __future__ import annotations

import argparse
import heapq
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from registry.vectors import ExactIndex, VectorIndex
from registry.vectors.chroma_index import ChromaIndex
from registry.vectors.hnsw_index import HnswIndex

TARGET_INSERT_PER_S = 5000.0
TARGET_P95_MS = 10.0
TARGET_RECALL = 0.95
K = 10
STATUSES = ("pending", "approved", "rejected")
CHROMA_DEFAULT_EF = 100  # chromadb's default hnsw ef_search (what serve runs with)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objects", type=int, default=100_000, help="vectors to index (100000)")
    parser.add_argument("--dim", type=int, default=768, help="vector dimension (768 = DINOv2-base)")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per setting")
    parser.add_argument("--clusters", type=int, default=2000, help="clusters in the data")
    parser.add_argument("--categories", type=int, default=20, help="distinct categories")
    parser.add_argument(
        "--cluster-spread", type=float, default=1.0, help="cluster centres around categories"
    )
    parser.add_argument(
        "--spread", type=float, default=1.0, help="noise around a cluster centre (norm)"
    )
    parser.add_argument("--chunk", type=int, default=10_000, help="vectors generated per chunk")
    parser.add_argument("--ef-construction", type=int, default=100, help="HNSW build breadth")
    parser.add_argument("--max-neighbors", type=int, default=16, help="HNSW M (links per node)")
    parser.add_argument(
        "--ef-search",
        default="100",
        help="comma-separated HNSW search breadths to sweep (Chroma default 100)",
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="keep the index here (default: a temp folder)"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --dir: if it already holds --objects vectors, skip the insert (ground truth "
        "is still recomputed); lets one 1M build serve several --ef-search sweeps",
    )
    parser.add_argument(
        "--index",
        default="chroma,hnsw",
        help="comma-separated backends to measure on the same data: chroma, hnsw "
        "(at 1M run one at a time: each holds ~3 GB of vectors)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-default",
        action="store_true",
        help="skip the 'default' section (Registry.search on the serve configuration)",
    )
    parser.add_argument(
        "--fresh-objects", type=int, default=None,
        help="objects registered without a relay for the freshness figure "
        "(default: objects / 20, between 100 and 5000)",
    )


# -- data -----------------------------------------------------------------------------------


class Data:
    """Deterministic clustered vectors, generated chunk by chunk (no chunk is ever stored)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.dim = args.dim
        self.n = args.objects
        self.chunk = args.chunk
        self.seed = args.seed
        self.categories = args.categories
        self.spread = args.spread
        rng = np.random.default_rng([self.seed, 0])
        # Two levels, like real embeddings: categories, then object kinds/views within each
        # (clusters), then instances. Neighbourhoods overlap, so ANN recall is not trivial.
        cat_centres = _unit(rng.standard_normal((self.categories, self.dim), dtype=np.float32))
        # Each cluster belongs to a category; 10 % of vectors get a random one (label noise).
        self.cluster_category = rng.integers(0, self.categories, args.clusters)
        offsets = rng.standard_normal((args.clusters, self.dim), dtype=np.float32)
        offsets *= args.cluster_spread / np.sqrt(self.dim)
        self.centres = _unit(cat_centres[self.cluster_category] + offsets)

    def _sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        which = rng.integers(0, len(self.centres), n)
        noise = rng.standard_normal((n, self.dim), dtype=np.float32)
        noise *= self.spread / np.sqrt(self.dim)
        return _unit(self.centres[which] + noise), which

    def chunks(self):
        """Yields ``(ids, vectors (n, dim) float32, metadatas)`` chunk by chunk."""
        for ci, start in enumerate(range(0, self.n, self.chunk)):
            n = min(self.chunk, self.n - start)
            rng = np.random.default_rng([self.seed, 1, ci])
            vecs, which = self._sample(rng, n)
            cats = self.cluster_category[which]
            noisy = rng.random(n) < 0.1
            cats[noisy] = rng.integers(0, self.categories, int(noisy.sum()))
            conf = rng.random(n)
            status = rng.integers(0, len(STATUSES), n)
            project = rng.integers(0, 3, n)
            ids = [f"obj_{start + i:08d}" for i in range(n)]
            metas = [
                {
                    "category": f"cat{cats[i]}",
                    "project": f"proj{project[i]}",
                    "confidence": float(conf[i]),
                    "validation_status": STATUSES[status[i]],
                }
                for i in range(n)
            ]
            yield ids, vecs, metas

    def queries(self, n: int) -> tuple[np.ndarray, list[str]]:
        """New points from the same distribution, and the category of each one's cluster."""
        rng = np.random.default_rng([self.seed, 2])
        vecs, which = self._sample(rng, n)
        return vecs, [f"cat{c}" for c in self.cluster_category[which]]


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


# -- exact ground truth, streamed -------------------------------------------------------------


class StreamedTruth:
    """Exact top-k per query over all chunks seen so far, using :class:`ExactIndex` per chunk."""

    def __init__(self, queries: np.ndarray, wheres: list[dict | None], dim: int) -> None:
        self.queries = queries
        self.wheres = wheres
        self.dim = dim
        self.best: list[list[tuple[float, str]]] = [[] for _ in wheres]
        self.seconds = 0.0
        self.scanned = 0

    def update(self, ids: list[str], vecs: np.ndarray, metas: list[dict]) -> None:
        t0 = time.perf_counter()
        exact = ExactIndex(self.dim, capacity=len(ids))
        exact.add(ids, vecs, metas)
        groups: dict[str, list[int]] = {}
        for qi, where in enumerate(self.wheres):
            groups.setdefault(repr(where), []).append(qi)
        for qis in groups.values():
            res = exact.query_many(self.queries[qis], K, self.wheres[qis[0]])
            for qi, hits in zip(qis, res, strict=True):
                merged = self.best[qi] + [(s, i) for i, s in hits]
                self.best[qi] = heapq.nlargest(K, merged)
        exact.close()
        self.seconds += time.perf_counter() - t0
        self.scanned += len(ids)

    def ids(self, qi: int) -> set[str]:
        return {i for _, i in self.best[qi]}


# -- measurement ----------------------------------------------------------------------------


def _percentile_ms(times: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times) * 1000.0, q))


def measure(
    index: VectorIndex,
    queries: np.ndarray,
    wheres: list[dict | None],
    truth: StreamedTruth,
    offset: int,
) -> dict[str, float]:
    """Times single queries (k=10) and scores recall@10 against ``truth``."""
    for q, w in zip(queries[:5], wheres[:5], strict=True):  # warm caches, load segments
        index.query(q, K, w)
    times, hits, near_hits, total = [], 0, 0, 0
    for qi, (q, w) in enumerate(zip(queries, wheres, strict=True)):
        t0 = time.perf_counter()
        res = index.query(q, K, w)
        times.append(time.perf_counter() - t0)
        want = truth.ids(offset + qi)
        hits += len(want & {i for i, _ in res})
        total += len(want)
        if want:
            # ann-benchmarks' tolerant recall: a result as similar as the true k-th neighbour
            # (within 1e-3) counts, so near-ties at the k-th place are not called misses.
            kth = min(s for s, _ in truth.best[offset + qi])
            near_hits += min(len(want), sum(1 for _, s in res if s >= kth - 1e-3))
    p95 = _percentile_ms(times, 95)
    recall = hits / max(total, 1)
    return {
        "p50_ms": _percentile_ms(times, 50),
        "p95_ms": p95,
        "mean_ms": float(np.mean(times) * 1000),
        "recall_at_10": recall,
        "recall_at_10_eps1e-3": near_hits / max(total, 1),
        "p95_ratio_vs_target": TARGET_P95_MS / p95 if p95 else float("inf"),
        "recall_ratio_vs_target": recall / TARGET_RECALL,
    }


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _open(kind: str, folder: Path, args: argparse.Namespace, ef: int) -> VectorIndex:
    if kind == "chroma":
        hnsw = {
            "ef_construction": args.ef_construction,
            "max_neighbors": args.max_neighbors,
            "ef_search": ef,
        }
        return ChromaIndex(folder / "chroma", "objects_bench", args.dim, hnsw=hnsw)
    if kind == "hnsw":
        return HnswIndex(
            folder / "hnsw",
            args.dim,
            max_neighbors=args.max_neighbors,
            ef_construction=args.ef_construction,
            ef_search=ef,
        )
    raise ValueError(f"unknown --index {kind!r}; expected chroma or hnsw")


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = Data(args)
    ef_values = [int(x) for x in str(args.ef_search).split(",") if x.strip()]
    kinds = [x.strip() for x in str(args.index).split(",") if x.strip()]
    nq = args.queries
    qvecs, qcats = data.queries(nq)
    # Rows 0..nq-1: unfiltered; nq..2nq-1: filtered by the query's own category (agrees with
    # the neighbourhood); 2nq..3nq-1: by a validation status (unrelated to it, 1/3 pass).
    status_where = {"validation_status": "approved"}
    truth = StreamedTruth(
        np.concatenate([qvecs, qvecs, qvecs]),
        [None] * nq + [{"category": c} for c in qcats] + [status_where] * nq,
        args.dim,
    )
    tmp = None
    if args.dir is None:
        tmp = tempfile.mkdtemp(prefix="agl-bench-search-")
        folder = Path(tmp)
    else:
        folder = Path(args.dir)
    result: dict[str, Any] = {
        "config": {
            "objects": args.objects,
            "dim": args.dim,
            "queries": nq,
            "clusters": args.clusters,
            "categories": args.categories,
            "ef_construction": args.ef_construction,
            "max_neighbors": args.max_neighbors,
            "cpu_count": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
            "folder": str(folder),
        }
    }
    indexes: dict[str, VectorIndex] = {}
    try:
        for kind in kinds:
            indexes[kind] = _open(kind, folder, args, ef_values[0])
        reuse = {k: args.reuse and idx.count() == args.objects for k, idx in indexes.items()}
        wall = {k: 0.0 for k in kinds}
        cpu = {k: 0.0 for k in kinds}
        for ids, vecs, metas in data.chunks():
            for kind, idx in indexes.items():
                if reuse[kind]:
                    continue
                t0, c0 = time.perf_counter(), time.process_time()
                idx.add(ids, vecs, metas)
                wall[kind] += time.perf_counter() - t0
                cpu[kind] += time.process_time() - c0
            truth.update(ids, vecs, metas)
        result["exact_reference"] = {
            "ms_per_query": truth.seconds / (3 * nq) * 1000,
            "note": "numpy brute force over every vector (ExactIndex), queries batched per chunk",
        }
        for kind in kinds:
            res: dict[str, Any] = {}
            if reuse[kind]:
                res["insert"] = {"skipped": "reused the index in --dir"}
            else:
                rate = args.objects / wall[kind]
                res["insert"] = {
                    "vectors_per_s": rate,
                    "seconds": wall[kind],
                    "cpu_seconds": cpu[kind],
                    "ratio_vs_target": rate / TARGET_INSERT_PER_S,
                }
            # Close and reopen, as the app does after a restart: search runs on what was saved.
            t0 = time.perf_counter()
            indexes[kind].close()
            indexes[kind] = _open(kind, folder, args, ef_values[0])
            res["close_reopen_s"] = time.perf_counter() - t0
            idx = indexes[kind]
            assert idx.count() == args.objects, (kind, idx.count(), args.objects)
            for ef in ef_values:
                idx.set_ef_search(ef)
                res[f"ef_search_{ef}"] = {
                    "unfiltered": measure(idx, qvecs, [None] * nq, truth, 0),
                    "category_filter": measure(
                        idx, qvecs, [{"category": c} for c in qcats], truth, nq
                    ),
                    "status_filter": measure(idx, qvecs, [status_where] * nq, truth, 2 * nq),
                }
            if kind == "chroma" and ef_values[-1] != CHROMA_DEFAULT_EF:
                idx.set_ef_search(CHROMA_DEFAULT_EF)  # the default section runs as serve does
            sub = folder / kind
            res["disk_mb"] = _dir_bytes(sub) / 2**20
            if "vectors_per_s" in res["insert"]:
                res["estimate_1m_insert_minutes"] = 1e6 / res["insert"]["vectors_per_s"] / 60
            res["estimate_1m_disk_gb"] = res["disk_mb"] / args.objects * 1e6 / 1024
            result[kind] = res
            if len(kinds) > 1:  # free its memory before measuring the next one
                idx.close()
                del indexes[kind]
        if not args.no_default and "chroma" not in kinds:
            result["default"] = {"skipped": "the serve configuration needs chroma among --index"}
        elif not args.no_default:
            from tests.bench.search_default import run_default

            for idx in indexes.values():
                idx.close()
            indexes.clear()
            for stale in folder.glob("registry.db*"):  # --reuse: the SQLite side is rebuilt
                stale.unlink()
            shutil.rmtree(folder / "matrix", ignore_errors=True)
            fresh = args.fresh_objects or min(5000, max(100, args.objects // 20))
            result.update(run_default(folder, data, qvecs, qcats, truth, "chroma" in kinds, fresh))
        result["peak_rss_mb"] = _peak_rss_mb()
        result["vectors_in_ram_gb_at_1m"] = 1e6 * args.dim * 4 / 2**30
    finally:
        for idx in indexes.values():
            idx.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return result
