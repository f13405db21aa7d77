"""Active-learning suggestions on a large registry: seconds and peak memory of each strategy.

    python launch.py bench suggest [--objects 20000] [--reviewed 0.1] [--dim 768] [--n 100] [--pool-size 20000] [--json]

Each strategy's time is printed beside the read floor measured in the same run on the same
registry: streaming every object (``iter_objects``) and reading all their vectors in pages
(``get_embeddings``), which any strategy working from the registry pays at least once
(``ratio_vs_read_floor``). Peak memory is tracemalloc's peak of Python + numpy allocations
during the call, next to the size of all vectors (``all_vectors_mb``): bounded means far below
it once the registry outgrows ``--pool-size``.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objects", type=int, default=20_000, help="registry objects (default 20000)")
    parser.add_argument("--reviewed", type=float, default=0.1, help="fraction already reviewed (default 0.1)")
    parser.add_argument("--dim", type=int, default=768, help="embedding length (default 768)")
    parser.add_argument("--n", type=int, default=100, help="suggestions per call (default 100)")
    parser.add_argument("--pool-size", type=int, default=20_000, help="k-center candidate pool (default 20000)")


def _seed(reg, n: int, reviewed: float, dim: int, folder: Path) -> None:
    import cv2

    from registry.facade import ObjectIn

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((64, dim)).astype(np.float32)
    per_image = 50
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(0, n, per_image):
        img = folder / f"img_{s}.png"
        cv2.imwrite(str(img), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        src = reg.register_source(img)
        k = min(per_image, n - s)
        vec = centres[rng.integers(0, 64, k)] + 0.3 * rng.standard_normal((k, dim)).astype(np.float32)
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        done = rng.random(k) < reviewed
        objs = [ObjectIn(category=f"c{i % 8}", xyxy=(0, 0, 8, 8), confidence=float(rng.random()), embedding=vec[i],
                         validation_status="approved" if done[i] else "pending",
                         validated_by="bench" if done[i] else None) for i in range(k)]
        reg.register_objects(src, objs, dedupe=False)


def _measure(fn) -> tuple[float, float, object]:
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return dt, peak / 2**20, out


def run(args: argparse.Namespace) -> dict:
    from app.workflows.suggest import suggest
    from registry.facade import Registry

    tmp = Path(tempfile.mkdtemp(prefix="agl-bench-suggest-"))
    try:
        reg = Registry(tmp / "data", embedding_dim=args.dim, embedding_version="bench", index="exact",
                       sync_on_write=False)
        t0 = time.perf_counter()
        _seed(reg, args.objects, args.reviewed, args.dim, tmp / "imgs")
        result: dict = {"machine_note": "2 shared CPU cores; figures are noisy", "objects": args.objects,
                        "dim": args.dim, "n": args.n, "pool_size": args.pool_size,
                        "seed_seconds": time.perf_counter() - t0,
                        "all_vectors_mb": args.objects * args.dim * 4 / 2**20}

        def read_floor() -> int:
            page, total = [], 0
            for o in reg.iter_objects(batch_size=2000):
                page.append(o["object_id"])
                if len(page) == 2000:
                    total += len(reg.get_embeddings(page)[0])
                    page = []
            return total + (len(reg.get_embeddings(page)[0]) if page else 0)

        floor_s, floor_mb, _ = _measure(read_floor)
        result["read_floor"] = {"seconds": floor_s, "peak_mb": floor_mb}
        for strategy in ("least-confident", "margin", "diversity", "hybrid"):
            dt, mb, out = _measure(lambda s=strategy: suggest(reg, n=args.n, strategy=s, pool_size=args.pool_size))
            result[strategy] = {"seconds": dt, "peak_mb": mb, "ratio_vs_read_floor": dt / floor_s,
                                "picked": len(out["ids"]), "pool": out["pool"], "reviewed_seeds": out["reviewed_seeds"]}
        reg.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"suggest on {args.objects} objects ({args.dim}-d, {result['all_vectors_mb']:.0f} MB of vectors), "
          f"n={args.n}, pool {args.pool_size}")
    print(f"  read floor (iter_objects + get_embeddings): {floor_s:.2f} s, peak {floor_mb:.0f} MB")
    for s in ("least-confident", "margin", "diversity", "hybrid"):
        r = result[s]
        print(f"  {s:<16} {r['seconds']:6.2f} s  x{r['ratio_vs_read_floor']:.2f} of the floor  peak {r['peak_mb']:.0f} MB")
    return result
