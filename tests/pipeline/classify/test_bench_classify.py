"""``bench classify`` runs end to end on tiny sizes and reports every figure (no timing asserted)."""
from __future__ import annotations

import argparse

from tests.bench import bench_classify


def test_bench_classify_reports_its_figures():
    args = argparse.Namespace(classes=4, shots=5, queries=40, objects=40, dim=16, batch_size=16)
    out = bench_classify.run(args)
    assert out["support"] == 20 and out["calibration"]["items"] == 20
    assert out["scoring"]["queries_per_s"] > 0 and out["scoring"]["ratio_vs_matmul_floor"] > 0
    assert out["registry"]["objects"] == 40 and out["registry"]["objects_per_s"] > 0
