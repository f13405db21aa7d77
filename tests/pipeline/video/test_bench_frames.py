"""Keeps ``launch.py bench frames`` working: a tiny run must produce sane figures."""
from __future__ import annotations

import argparse

from tests.bench import bench_frames


def test_bench_frames_tiny_run(tmp_path):
    parser = argparse.ArgumentParser()
    bench_frames.add_args(parser)
    args = parser.parse_args(["--frames", "60", "--width", "320", "--height", "240", "--workdir", str(tmp_path / "b")])
    out = bench_frames.run(args)
    assert out["decode"]["frames"] == out["scene"]["frames"] == out["add_video"]["frames"] == out["naive"]["frames"] == 60
    assert out["scene_frames_kept"] == 2  # one cut, at frame 50
    assert out["png_mb"] > 0 and out["ratio_time_naive_over_add_video"] > 0
    assert len(list((tmp_path / "b" / "data" / "media" / "frames").rglob("*.png"))) == 60
