"""``bench search`` carries the ``default`` section (Registry.search on the serve configuration)
with every path's recall against exact, the two-stage comparison and the freshness figures."""
from __future__ import annotations

import argparse

from tests.bench import bench_search


def test_bench_search_default_section(tmp_path):
    parser = argparse.ArgumentParser()
    bench_search.add_args(parser)
    args = parser.parse_args([
        "--objects", "1200", "--dim", "24", "--queries", "10", "--clusters", "30", "--categories", "4",
        "--chunk", "400", "--index", "chroma", "--dir", str(tmp_path / "b"), "--fresh-objects", "120",
    ])
    result = bench_search.run(args)
    default = result["default"]
    for name in ("unfiltered", "category_filter", "status_filter"):
        fig = default[name]
        assert fig["p95_ms"] >= fig["p50_ms"] > 0 and fig["recall_at_10"] >= 0.95, (name, fig)
        assert sum(fig["paths"].values()) == 10
    # 1200 objects: both filters are below the threshold -> exact; unfiltered -> ANN + re-rank
    assert default["category_filter"]["paths"] == {"exact": 10}
    assert default["unfiltered"]["paths"] == {"ann": 10}
    for name in ("category_filter", "status_filter"):
        forced = default["planner_paths"][name]
        assert forced["exact"]["paths"] == {"exact": 10} and forced["exact"]["recall_at_10"] == 1.0
        assert set(forced["ann"]["paths"]) <= {"ann", "ann_fallback_exact"}
        assert forced["ann"]["recall_at_10"] >= 0.9
    assert default["build"]["matrix_vectors_per_s"] > 0  # the Chroma collection was shared
    two = result["two_stage"]["unfiltered"]
    assert two["stage1"]["recall_at_10"] <= two["stage1+2_m16"]["recall_at_10"] + 1e-9
    fresh = result["freshness"]
    assert fresh["probes_found_before_relay"] == "20/20" and fresh["pending_while_probing"] == 120
    assert fresh["searchable_per_s"] > 0 and fresh["index_build_vectors_per_s"] > 0
