"""``launch.py bench video`` runs (on the toy model: its figures mean nothing, its accounting does)."""
from __future__ import annotations

import argparse

from tests.bench import bench_video


def test_bench_video_runs_and_the_bounded_session_holds_no_frames():
    parser = argparse.ArgumentParser()
    bench_video.add_args(parser)
    args = parser.parse_args(["--arch", "tiny", "--frames", "3", "--size", "96", "--objects", "1", "--in-process"])
    res = bench_video.run(args)
    b, d = res["bounded"], res["default"]
    assert b["frames"] == d["frames"] == 3
    assert d["stored_frames"] == 3 and d["stored_outputs"] == 3
    assert b["stored_frames"] == 0 and b["state_mb"] < d["state_mb"]
    assert b["per_frame_s"] > 0 and b["peak_rss_mb"] > 0
    assert 0 < res["ratios"]["bounded_vs_default_state"] < 1
