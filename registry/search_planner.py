"""The query planner of similarity search: which path answers a filtered query.

Like Qdrant's planner: the filter's cardinality (how many objects pass it) is estimated from
SQLite, then

* below :attr:`PlannerConfig.exact_threshold` candidates, the **exact** path scores exactly
  the filtered candidates (their rowids read from SQLite's indexes) on the float32 matrix
  (:mod:`registry.vectors.matrix`): recall 1.0, cost proportional to the candidates;
* above it, the cheaper path by a cost model (:class:`PlannerConfig`) wins; the **ann** path asks the ANN index (Chroma) *unfiltered* for
  ``fetch = max(k·m, k / selectivity · overfetch + extra)`` neighbours and filters them in
  SQLite (always current); when fewer than ``k`` survive, the query **falls back to exact**
  (``ann_fallback_exact``). An index-side metadata filter is never used: Chroma pre-filters
  by scanning its metadata, which costs more than the search (issue 14: p95 157 ms at 100k).
* the **quantized** path (:mod:`registry.vectors.quantized`) takes the filter's rowids from
  in-memory postings (only while they are current), ranks them by the Hamming distance of their
  sign bits and re-scores the best ``R = rescore_factor · need`` exactly on the float32 rows;
  the SQLite rows filter the result. It competes in the same cost model when the filter is
  category/status only and keeps more than ``4 · R`` candidates (fewer: R is most of them).

Estimates come from one ``GROUP BY category_id, validation_status`` over the covering index
``idx_objects_category``, cached and refreshed when the database changed (``PRAGMA
data_version`` / own ``total_changes``) and the cache is older than
:attr:`PlannerConfig.stats_max_age_s`. They only choose the path, never decide results: both
paths filter on the SQLite rows themselves. Filters the cached counts do not cover
(``project``, ``min_confidence``) make the estimate an upper bound; when that bound is above the
threshold a bounded ``count(*) ... LIMIT threshold + 1`` decides.
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from registry.db import Connection


@dataclass
class PlannerConfig:
    """Knobs of the planner (defaults measured by ``launch.py bench search``; see docs/search.md).

    Attributes:
        exact_threshold: filters passing at most this many objects are always scored exactly.
        overfetch: safety factor on ``k / selectivity`` for the ANN path's fetch.
        min_fetch_extra: added to every filtered fetch (small selectivities at small k).
        max_ann_fetch: an ANN fetch above this is not asked for: exact is cheaper then.
        exact_us_per_candidate: cost model, the exact path's time per candidate (gather + dot).
        ann_base_us, ann_us_per_neighbour: cost model, the ANN path's time per query and per
            neighbour asked of the index (Chroma's query + the SQLite post-filter).
        stats_max_age_s: cached counts are refreshed at most this often (when data changed).
        quantized: whether the quantized path may be chosen at all.
        rescore_factor: ``R = rescore_factor · need`` Hamming-nearest candidates re-scored exactly.
        quantized_base_us, quantized_us_per_candidate, quantized_us_per_rescore: its cost model
            (the postings check + SQLite post-filter; the scan per candidate, each candidate's
            bits gathered through ``row_of``; the float32 re-score).
        slab_us_per_candidate: the scan per candidate when the postings' slab holds the
            filter's bits in order (:mod:`registry.vectors.postings`).
        quantized_max_stale_s: 0 = postings are used only while no commit happened since they
            were read; > 0 also uses postings that much older (faster under constant writes;
            objects that entered the filter since are missed until the refresh).
        scan_us_per_row: the cost model of the sign-bit scan over EVERY matrix row
            (``quantized_scan``: rows read in order, split across the cores; no candidate list).
        scan_min_selectivity: the all-rows scan answers a filter only when at least this
            fraction passes it (it re-scores ``R / selectivity`` rows, then filters in SQLite).
        recall_budget_us: a path that ranks every candidate (exact, quantized, quantized_scan)
            estimated within this wins over ANN even when ANN is estimated cheaper: ANN's recall
            is bounded by its graph (0.90 at 1M on the bench data, whatever ``ef``), the others'
            by exact re-scoring.

    Above ``exact_threshold`` the cheaper path by the cost model wins. The costs were measured at
    100k × 768 on the 2-core build machine (bench search: ~6 ms exact at ~5.5k candidates; the
    ANN path ~13.5 ms at ~370 neighbours); they move the break-even, never the results.
    """

    exact_threshold: int = 5_000
    overfetch: float = 2.0
    min_fetch_extra: int = 16
    max_ann_fetch: int = 1_000
    exact_us_per_candidate: float = 1.2
    ann_base_us: float = 2_000.0
    ann_us_per_neighbour: float = 30.0
    stats_max_age_s: float = 2.0
    quantized: bool = True
    rescore_factor: int = 32
    quantized_base_us: float = 700.0
    quantized_us_per_candidate: float = 0.06
    quantized_us_per_rescore: float = 1.5
    slab_us_per_candidate: float = 0.005
    quantized_max_stale_s: float = 0.0
    scan_us_per_row: float = 0.005
    scan_min_selectivity: float = 0.1
    recall_budget_us: float = 8_000.0

    def rescore_for(self, need: int) -> int:
        """``R`` for a query that wants ``need`` candidates."""
        return max(int(self.rescore_factor), 1) * max(int(need), 1)


@dataclass
class Plan:
    """What the planner chose for one query (``search(..., explain=True)`` returns it).

    Attributes:
        path: ``"exact"`` | ``"ann"`` | ``"ann_fallback_exact"`` | ``"quantized"`` |
            ``"quantized_scan"`` | ``"quantized_fallback_exact"``.
        reason: why, in words.
        estimate: estimated objects passing the filter (None = unfiltered).
        total: objects with an embedding (estimate from the cached counts).
        fetch: ANN neighbours asked for; on the quantized path ``R``, the rows re-scored.
        candidates: vectors scored exactly (exact path), ANN hits kept by the filter, or the
            candidates ranked by Hamming distance (quantized path).
        fresh: vectors scanned in the fresh segment (committed, not yet relayed).
        stages: the stages that ran, e.g. ``["ann", "exact", "fused"]``.
    """

    path: str = "ann"
    reason: str = ""
    estimate: int | None = None
    total: int = 0
    fetch: int = 0
    candidates: int = 0
    fresh: int = 0
    stages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CardinalityStats:
    """Cached object counts by ``(category_id, validation_status)`` of one connection."""

    def __init__(self, conn: Connection, max_age_s: float) -> None:
        self.conn = conn
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._cells: dict[tuple[int, str], int] = {}
        self._total = 0
        self._key: tuple[int, int] | None = None
        self._at = 0.0
        self.refreshes = 0

    def _data_key(self) -> tuple[int, int]:
        with self.conn.lock:
            version = self.conn.conn.execute("PRAGMA data_version").fetchone()[0]
            return int(version), int(self.conn.conn.total_changes)

    def cells(self) -> tuple[dict[tuple[int, str], int], int]:
        """``({(category_id, status): count}, total)``, refreshed when stale."""
        with self._lock:
            now = time.monotonic()
            if self._key is None or now - self._at >= self.max_age_s:
                key = self._data_key()
                if key != self._key:
                    with self.conn.lock:
                        rows = self.conn.conn.execute(
                            "SELECT category_id, validation_status, count(*) FROM objects "
                            "GROUP BY category_id, validation_status"
                        ).fetchall()
                    self._cells = {(int(c), str(s)): int(n) for c, s, n in rows}
                    self._total = sum(self._cells.values())
                    self._key = key
                    self.refreshes += 1
                self._at = now
            return self._cells, self._total

    def estimate(self, category_ids: list[int] | None, statuses: list[str] | None) -> tuple[int, int]:
        """``(objects passing the category and status filters, all objects)``."""
        cells, total = self.cells()
        if category_ids is None and statuses is None:
            return total, total
        cats = None if category_ids is None else set(category_ids)
        sts = None if statuses is None else set(statuses)
        n = sum(v for (c, s), v in cells.items()
                if (cats is None or c in cats) and (sts is None or s in sts))
        return n, total


def bounded_count(conn: Connection, where: str, params: list[Any], limit: int) -> int:
    """``min(objects matching where, limit)`` reading at most ``limit`` index entries."""
    with conn.lock:
        return int(conn.conn.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM objects o{where} LIMIT ?)", [*params, int(limit)]
        ).fetchone()[0])


def choose(
    cfg: PlannerConfig, *, k: int, need: int, estimate: int | None, total: int, refine: Any = None,
    quantized: int | None = None, rows: int | None = None, slab: bool = False,
) -> Plan:
    """Picks the path for a query that wants ``k`` results from ``need`` stage-1 candidates.

    The ANN fetch is ``max(need, k / selectivity · overfetch + min_fetch_extra)``: enough for
    about ``overfetch · k`` survivors of the filter (all of them are re-ranked), and never fewer
    than an unfiltered query's ``k · m``. Among the paths that rank every candidate (exact, the
    postings' sign-bit scan, the all-rows sign-bit scan) the cheapest wins when it is estimated
    within ``recall_budget_us``; otherwise the cheapest path of all, ANN included.

    Args:
        cfg: the planner's knobs.
        k: results wanted.
        need: candidates stage 1 delivers unfiltered (``k``, or ``k · m`` with re-ranking).
        estimate: objects passing the filter (None = unfiltered).
        total: all objects.
        refine: optional ``(limit) -> int`` exact bounded count, called when the estimate is an
            upper bound above the threshold (filters the cached counts do not cover).
        quantized: the candidates the quantized path would scan (its postings are current), or
            None when it is unavailable.
        rows: the matrix rows the all-rows scan would read, or None when it is unavailable.
        slab: the quantized path reads its candidates' bits in order from the postings' slab.
    """
    rescore = cfg.rescore_for(need)
    scan_ok = cfg.quantized and rows is not None and rows > 4 * rescore
    if estimate is None:
        if scan_ok:
            s_us = cfg.quantized_base_us + rows * cfg.scan_us_per_row + rescore * cfg.quantized_us_per_rescore
            if s_us <= cfg.recall_budget_us:
                return Plan(path="quantized_scan", reason=f"unfiltered: {rows} rows by sign bits + {rescore} "
                            f"re-scored (~{s_us / 1000:.1f} ms, within the recall budget of "
                            f"{cfg.recall_budget_us / 1000:.0f} ms)", total=total, fetch=rescore)
        return Plan(path="ann", reason="unfiltered", total=total, fetch=need)
    if estimate > cfg.exact_threshold and refine is not None:
        estimate = refine(cfg.exact_threshold + 1)
    if estimate <= cfg.exact_threshold:
        return Plan(path="exact", reason=f"{estimate} candidates <= exact_threshold {cfg.exact_threshold}",
                    estimate=estimate, total=total)
    selectivity = max(estimate, 1) / max(total, 1)
    fetch = min(max(need, int(k / selectivity * cfg.overfetch) + cfg.min_fetch_extra), total)
    # (estimated microseconds, path, fetch, what it does); the first three rank every candidate
    options = [(estimate * cfg.exact_us_per_candidate, "exact", 0, f"exact over {estimate} candidates")]
    if cfg.quantized and quantized is not None and quantized > 4 * rescore:
        per = cfg.slab_us_per_candidate if slab else cfg.quantized_us_per_candidate
        q_us = cfg.quantized_base_us + quantized * per + rescore * cfg.quantized_us_per_rescore
        options.append((q_us, "quantized", rescore, f"{quantized} candidates by sign bits"
                        f"{' (slab)' if slab else ''} + {rescore} re-scored"))
    if scan_ok and selectivity >= cfg.scan_min_selectivity:
        wide = min(int(rescore / selectivity) + 1, rows)
        s_us = cfg.quantized_base_us + rows * cfg.scan_us_per_row + wide * cfg.quantized_us_per_rescore
        options.append((s_us, "quantized_scan", wide, f"all {rows} rows by sign bits + {wide} re-scored, filtered"))
    ranked = min(options)
    if fetch <= cfg.max_ann_fetch:
        options.append((cfg.ann_base_us + fetch * cfg.ann_us_per_neighbour, "ann", fetch, f"ANN with {fetch} neighbours"))
    best = ranked if ranked[0] <= cfg.recall_budget_us else min(options)
    others = "; ".join(f"{what} ~{us / 1000:.1f} ms" for us, path, _, what in options if path != best[1])
    why = (f"within the recall budget of {cfg.recall_budget_us / 1000:.0f} ms" if best is ranked
           and best[0] <= cfg.recall_budget_us else "the cheapest")
    return Plan(path=best[1], reason=f"{best[3]} (~{best[0] / 1000:.1f} ms) is {why}; {others}; "
                f"selectivity {selectivity:.3f}", estimate=estimate, total=total, fetch=best[2])
