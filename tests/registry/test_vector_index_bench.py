"""Keeps ``launch.py bench search`` working: a tiny run must produce sane figures."""

from __future__ import annotations

import argparse

from tests.bench import bench_search


def test_bench_search_tiny_run(tmp_path):
    parser = argparse.ArgumentParser()
    bench_search.add_args(parser)
    args = parser.parse_args(
        [
            "--objects", "1500", "--dim", "32", "--queries", "12", "--clusters", "40",
            "--categories", "4", "--chunk", "400", "--ef-search", "20,200",
            "--dir", str(tmp_path / "bench"),
        ]
    )  # fmt: skip
    result = bench_search.run(args)
    assert result["config"]["objects"] == 1500
    for kind in ("chroma", "hnsw"):
        res = result[kind]
        assert res["insert"]["vectors_per_s"] > 0
        wide = res["ef_search_200"]
        # With a wide search on 1.5k vectors both backends are as good as exact.
        assert wide["unfiltered"]["recall_at_10"] >= 0.95, (kind, wide)
        assert wide["category_filter"]["recall_at_10"] >= 0.95, (kind, wide)
        assert wide["unfiltered"]["p95_ms"] >= wide["unfiltered"]["p50_ms"] > 0
    # --reuse with the same folder skips the insert but still measures recall.
    args.reuse = True
    again = bench_search.run(args)
    assert "skipped" in again["chroma"]["insert"]
    assert again["chroma"]["ef_search_200"]["unfiltered"]["recall_at_10"] >= 0.95
