"""The query planner: exact below the cardinality threshold, ANN with over-fetch above it,
exact fallback when too few ANN hits survive; results equal the exact top-k on seeded data."""
from __future__ import annotations

import numpy as np
import pytest

from registry import search
from tests.registry.search_seed import DIM, exact_top, seeded

COUNTS = {"ant": 30, "bee": 120, "cow": 150}


@pytest.fixture
def chroma_reg(data_dir):
    reg, vectors = seeded(data_dir, COUNTS, index="chroma")
    reg._vectors.planner.exact_threshold = 50
    reg._vectors.planner.exact_us_per_candidate = 1e6  # above the threshold ANN is "cheaper"
    yield reg, vectors
    reg.close()


def _queries(n: int = 6) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((n, DIM)).astype(np.float32)


def test_planner_picks_exact_below_the_threshold_and_ann_above(chroma_reg):
    reg, vectors = chroma_reg
    for q in _queries():
        small = reg.search(q, k=10, category="ant", explain=True)
        assert small["plan"]["path"] == "exact" and small["plan"]["estimate"] == 30
        assert [h["object_id"] for h in small["results"]] == exact_top(reg, vectors, q, 10, category="ant")
        assert all(h["stage"] == "exact" and h["path"] == "exact" for h in small["results"])

    cows = [v for oid, v in vectors.items() if reg.get_object(oid)["category"] == "cow"][:6]
    for q in cows:  # queries among the cows: the filter agrees with the neighbourhood
        big = reg.search(q, k=10, category="cow", explain=True)
        assert big["plan"]["path"] == "ann" and big["plan"]["estimate"] == 150
        # over-fetch: max(k·m, k / selectivity · 2 + 16) = max(10, 10 / (150/300) · 2 + 16)
        assert big["plan"]["fetch"] == 56
        assert big["plan"]["stages"] == ["ann"]
        assert [h["object_id"] for h in big["results"]] == exact_top(reg, vectors, q, 10, category="cow")
        assert {h["category"] for h in big["results"]} == {"cow"}

        status = reg.search(q, k=10, status="approved", explain=True)
        assert status["plan"]["path"] == "ann" and status["plan"]["estimate"] == 100
        assert [h["object_id"] for h in status["results"]] == exact_top(reg, vectors, q, 10, status="approved")

        both = reg.search(q, k=5, category=["ant", "bee"], status="rejected", explain=True)
        assert both["plan"]["path"] == "exact" and both["plan"]["estimate"] == 50
        assert [h["object_id"] for h in both["results"]] == exact_top(
            reg, vectors, q, 5, category=["ant", "bee"], status="rejected")

        plain = reg.search(q, k=10, explain=True)
        assert plain["plan"]["path"] == "ann" and plain["plan"]["estimate"] is None
        assert [h["object_id"] for h in plain["results"]] == exact_top(reg, vectors, q, 10)


def test_cardinality_estimates_come_from_sqlite_counts(chroma_reg):
    reg, _ = chroma_reg
    reg.search(_queries(1)[0], k=3)
    stats = reg._vectors.cardinality
    cat_id = reg.get_category("bee")["category_id"]
    assert stats.estimate([cat_id], None) == (reg.count_objects(category="bee"), 300) == (120, 300)
    assert stats.estimate(None, ["pending", "rejected"])[0] == reg.count_objects(status=["pending", "rejected"])
    # min_confidence is not in the cached counts: a bounded count decides (at most threshold + 1).
    res = reg.search(_queries(1)[0], k=5, category="cow", min_confidence=0.9, explain=True)
    assert res["plan"]["path"] == "exact"
    assert res["plan"]["estimate"] == reg.count_objects(category="cow", min_confidence=0.9) == 15
    assert all(h["confidence"] >= 0.9 and h["category"] == "cow" for h in res["results"])


def test_ann_falls_back_to_exact_when_too_few_hits_survive(chroma_reg):
    reg, vectors = chroma_reg
    reg._vectors.planner.stats_max_age_s = 3600.0  # keep the counts as they are now
    q = _queries(1)[0]
    assert reg.search(q, k=3, status="approved", explain=True)["plan"]["path"] == "ann"
    # Most approved objects become rejected; the cached counts still say 100 approved.
    approved = [o["object_id"] for o in reg.iter_objects(status="approved")]
    for oid in approved[:-4]:
        reg.update_object(oid, status="rejected", validated_by="t")
    res = reg.search(q, k=10, status="approved", rerank=0, explain=True)
    assert res["plan"]["path"] == "ann_fallback_exact", res["plan"]
    assert res["plan"]["estimate"] == 100  # the stale estimate chose ANN; SQLite decided the rows
    assert [h["object_id"] for h in res["results"]] == exact_top(reg, vectors, q, 10, status="approved")
    assert len(res["results"]) == 4


def test_filters_are_authoritative_and_unknown_category_finds_nothing(chroma_reg):
    reg, _ = chroma_reg
    q = _queries(1)[0]
    assert reg.search(q, k=5, category="nothing-like-this") == []
    assert reg.search(q, k=5, project="nope") == []
    with pytest.raises(ValueError, match="rerank"):
        reg.search(q, k=5, rerank=-1)
    with pytest.raises(ValueError, match="k >= 1"):
        search.search(reg.connection, reg._vectors, q, k=0)


def test_a_process_without_the_matrix_scores_exactly_from_sqlite(data_dir, monkeypatch):
    """Not the index writer: no matrix; the exact path and re-ranking read the embeddings table."""
    from registry.index_handle import IndexHandle

    reg, vectors = seeded(data_dir, COUNTS, index="exact")
    try:
        monkeypatch.setattr(IndexHandle, "matrix", property(lambda self: None))
        for q in _queries(3):
            res = reg.search(q, k=7, category="bee", explain=True)
            assert res["plan"]["path"] == "exact"
            assert [h["object_id"] for h in res["results"]] == exact_top(reg, vectors, q, 7, category="bee")
            ranked = reg.search(q, k=7, rerank=3)
            assert [h["object_id"] for h in ranked] == exact_top(reg, vectors, q, 7)
            assert {h["stage"] for h in ranked} == {"exact"}
    finally:
        reg.close()


def test_above_the_threshold_the_cost_model_picks_the_cheaper_path():
    from registry.search_planner import PlannerConfig, choose

    cfg = PlannerConfig()
    # 100k objects, a 5.5 % category: ~6.6 ms exact vs ~13 ms for ANN's 380 neighbours -> exact
    p = choose(cfg, k=10, need=10, estimate=5_500, total=100_000)
    assert p.path == "exact" and "within the recall budget" in p.reason
    # 1M objects, a 5 % category: 60 ms exact vs ANN with max(10, 10 / 0.05 · 2 + 16) = 416 -> ann
    p = choose(cfg, k=10, need=10, estimate=50_000, total=1_000_000)
    assert p.path == "ann" and p.fetch == 416
    # a third of 1M: ANN with 76 neighbours
    p = choose(cfg, k=10, need=10, estimate=333_333, total=1_000_000)
    assert p.path == "ann" and p.fetch == 76
    # tiny filters are exact whatever the costs say; huge fetches never go to the index
    assert choose(cfg, k=10, need=10, estimate=4_000, total=10**7).path == "exact"
    assert choose(cfg, k=10, need=10, estimate=6_000, total=10**7).path == "exact"  # fetch > max_ann_fetch
    assert choose(cfg, k=10, need=10, estimate=None, total=50).fetch == 10


def test_paths_that_rank_every_candidate_win_within_the_recall_budget():
    from registry.search_planner import PlannerConfig, choose

    cfg = PlannerConfig()
    # unfiltered at 1M with the matrix: all rows by sign bits (~6.2 ms) + 320 re-scored, not ANN
    p = choose(cfg, k=10, need=10, estimate=None, total=1_000_000, rows=1_000_000)
    assert p.path == "quantized_scan" and p.fetch == 320 and "recall budget" in p.reason
    # beyond the budget (2M rows: ~11 ms) ANN answers; without a matrix too
    assert choose(cfg, k=10, need=10, estimate=None, total=2_000_000, rows=2_000_000).path == "ann"
    assert choose(cfg, k=10, need=10, estimate=None, total=1_000_000).path == "ann"
    # a third of 1M passes (a status): all rows scanned, R / selectivity = 961 re-scored, then filtered
    p = choose(cfg, k=10, need=10, estimate=333_333, total=1_000_000, rows=1_000_000)
    assert p.path == "quantized_scan" and p.fetch == 961
    # 5 % (a category): too selective for the all-rows scan (R / 0.05 re-scores); the postings' scan wins
    p = choose(cfg, k=10, need=10, estimate=50_000, total=1_000_000, rows=1_000_000)
    assert p.path == "ann" and p.fetch == 416  # no postings: ANN, the cheapest
    p = choose(cfg, k=10, need=10, estimate=50_000, total=1_000_000, rows=1_000_000, quantized=50_000)
    assert p.path == "quantized" and p.fetch == 320
    # a budget of zero restores the cheapest-path rule
    cheap = PlannerConfig(recall_budget_us=0.0)
    assert choose(cheap, k=10, need=10, estimate=333_333, total=1_000_000, rows=1_000_000).path == "ann"
