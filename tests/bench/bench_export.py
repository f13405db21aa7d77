"""Export N objects as COCO segment and YOLO segment: seconds and peak RSS, vs supervision.

    python launch.py bench export [--objects 100000] [--per-image 10] [--sv-objects 1000] [--workers N] [--json]

Bench data is written with a bulk SQL path (one transaction of executemany inserts into
``sources``/``objects``; a pool of 64 mask shapes at 640x480 — blobs, rings with holes, two-part
masks — reused across objects; tiny unique image files declared 640x480), so generating 100k
objects takes seconds. Each export runs in its own subprocess (``os.wait4`` gives that process's
own peak RSS; the sum over it and its export workers is sampled with psutil). ``--workers``
passes the exporter's worker count (default: its automatic choice, none below 20k objects). The reference is supervision's COCO writer (``sv.DetectionDataset(...).as_coco``)
on the first ``--sv-objects`` objects of the same data in the same run: supervision needs every
mask dense in memory (N x H x W bytes: 100k masks at 640x480 would be ~30 GB), so the ratio is
taken per object, with our COCO export of exactly the same subset measured beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
W, H = 640, 480


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--objects", type=int, default=20000, help="objects to export (full size: 100000)"
    )
    parser.add_argument("--per-image", type=int, default=10, help="objects per image (default 10)")
    parser.add_argument(
        "--sv-objects",
        type=int,
        default=1000,
        help="objects for the supervision reference (dense masks: ~0.3 MB each)",
    )
    parser.add_argument(
        "--workdir", default=None,
        help="keep data and exports here (default: a temp dir, removed afterwards)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="export worker processes (default: the exporter's automatic choice; 0 = none)",
    )


def _mask_pool(n: int = 64) -> list[dict]:
    import cv2
    import numpy as np

    from registry.formats.mask_geometry import rle_encode

    rng = np.random.default_rng(0)
    pool = []
    for i in range(n):
        m = np.zeros((H, W), np.uint8)
        cx, cy = int(rng.integers(80, W - 80)), int(rng.integers(80, H - 80))
        ax, ay = int(rng.integers(8, 70)), int(rng.integers(8, 70))
        cv2.ellipse(m, (cx, cy), (ax, ay), int(rng.integers(0, 180)), 0, 360, 1, -1)
        if i % 4 == 1:  # a hole
            cv2.ellipse(m, (cx, cy), (max(2, ax // 3), max(2, ay // 3)), 0, 0, 360, 0, -1)
        elif i % 4 == 2:  # a second part
            cv2.circle(m, (min(W - 10, cx + ax + 20), cy), max(3, ay // 3), 1, -1)
        pool.append(rle_encode(m.astype(bool)))
    return pool


def _generate(data_dir: Path, n_objects: int, per_image: int) -> None:
    """Bulk-loads n_objects into a fresh registry (one transaction)."""
    import numpy as np
    from pycocotools import mask as mask_utils

    from registry.facade import Registry
    from registry.ids import new_ids, utc_now

    media = data_dir / "bench-images"
    media.mkdir(parents=True, exist_ok=True)
    n_images = (n_objects + per_image - 1) // per_image
    pool = _mask_pool()
    boxes = [
        [float(v) for v in mask_utils.toBbox({"size": r["size"], "counts": r["counts"].encode()})]
        for r in pool
    ]
    areas = [
        int(mask_utils.area({"size": r["size"], "counts": r["counts"].encode()})) for r in pool
    ]
    # A minimal valid PNG header + unique trailer: the exporter links files, it does not decode.
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (128, 128, 128)).save(buf, format="PNG")
    tiny = buf.getvalue()
    with Registry(
        data_dir, embedding_dim=8, embedding_version="bench", index="exact", sync_on_write=False
    ) as reg:
        for name in ("car", "person", "bicycle", "dog", "traffic light"):
            reg.create_category(name)
        cat_ids = [c["category_id"] for c in reg.list_categories()]
        src_ids = new_ids("src", n_images)
        now = utc_now()
        src_rows = []
        for i, sid in enumerate(src_ids):
            p = media / f"{i:07d}.png"
            p.write_bytes(tiny + i.to_bytes(8, "little"))
            src_rows.append((sid, "image", str(p), p.name, W, H, f"benchhash{i:012d}", now))
        obj_ids = new_ids("obj", n_objects)
        rng = np.random.default_rng(1)
        conf = rng.random(n_objects)
        with reg.transaction() as tx:
            tx.executemany(
                "INSERT INTO sources (source_id, source_type, file_path, file_name, width, height, "
                "content_hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                src_rows,
            )
            rows = []
            for k, oid in enumerate(obj_ids):
                m = k % len(pool)
                x, y, w, h = boxes[m]
                rows.append(
                    (
                        oid,
                        src_ids[k // per_image],
                        cat_ids[k % len(cat_ids)],
                        x,
                        y,
                        w,
                        h,
                        pool[m]["counts"],
                        H,
                        W,
                        areas[m],
                        float(conf[k]),
                        now,
                        now,
                    )
                )
                if len(rows) == 20000:
                    _insert_objects(tx, rows)
                    rows = []
            _insert_objects(tx, rows)


def _insert_objects(tx, rows) -> None:
    tx.executemany(
        "INSERT INTO objects (object_id, source_id, category_id, bbox_x, bbox_y, bbox_w, bbox_h, "
        "mask_counts, mask_h, mask_w, area, confidence, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


_EXPORT_CHILD = """
import sys, json, time, threading
sys.path.insert(0, {root!r})
import psutil
from registry.facade import Registry
from registry.export import export_dataset

# Peak RSS of this process and its worker processes together, sampled every 50 ms: the
# parent's own ru_maxrss (taken by the bench with wait4) misses the workers. Listing children
# scans /proc, so it is refreshed once a second only (workers live for the whole export), to
# keep the sampler from competing with the export for the GIL.
me = psutil.Process()
peak = [0]
stop = threading.Event()


def sample():
    procs, listed = [me], 0.0
    while not stop.is_set():
        now = time.monotonic()
        if now - listed > 1.0:
            procs, listed = [me] + me.children(recursive=True), now
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        peak[0] = max(peak[0], total)
        stop.wait(0.05)


th = threading.Thread(target=sample, daemon=True)
th.start()
t = time.perf_counter()
with Registry({data!r}, embedding_dim=8, embedding_version="bench", index="exact", sync_on_write=False) as reg:
    res = export_dataset(reg, {dataset!r}, {out!r}, {fmt!r}, "segment", workers={workers!r})
seconds = time.perf_counter() - t
stop.set()
th.join()
print(json.dumps({{"seconds": seconds, "polygons": res["polygons"], "rle": res["rle"],
                  "peak_rss_tree_mb": peak[0] / 2**20}}))
"""

_SV_CHILD = """
import sys, json, time
sys.path.insert(0, {root!r})
import numpy as np
t0 = time.perf_counter()
import cv2
import supervision as sv
import supervision.dataset.formats.coco as sv_coco
from registry.facade import Registry


def _contains_multiple_segments(mask, connectivity=4):
    # supervision 0.31.2 passes a preallocated `labels` array that OpenCV 5's bindings reject
    # ("Layout of the output array labels is incompatible"); same computation without it.
    n, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=connectivity)
    return bool(n > 2)


sv_coco.contains_multiple_segments = _contains_multiple_segments
from registry.formats.mask_geometry import rle_decode
with Registry({data!r}, embedding_dim=8, embedding_version="bench", index="exact", sync_on_write=False) as reg:
    cats = [c["name"] for c in reg.list_categories()]
    rows = reg.db.execute(
        "SELECT o.source_id, s.file_path, o.category_id, o.bbox_x, o.bbox_y, o.bbox_w, o.bbox_h, o.mask_counts "
        "FROM dataset_objects d JOIN objects o USING (object_id) JOIN sources s ON s.source_id = o.source_id "
        "WHERE d.dataset_id = ? ORDER BY o.source_id", [{dataset!r}]).fetchall()
    cat_index = {{c["category_id"]: i for i, c in enumerate(reg.list_categories())}}
t = time.perf_counter()
per_image = {{}}
for sid, path, cid, x, y, w, h, counts in rows:
    per_image.setdefault(path, []).append((cat_index[cid], [x, y, x + w, y + h], counts))
images, annotations = [], {{}}
for path, objs in per_image.items():
    images.append(path)
    masks = np.stack([rle_decode({{"size": [{h}, {w}], "counts": c}}) for _, _, c in objs])
    annotations[path] = sv.Detections(xyxy=np.array([b for _, b, _ in objs], dtype=np.float32),
                                      mask=masks, class_id=np.array([k for k, _, _ in objs]))
ds = sv.DetectionDataset(classes=cats, images=images, annotations=annotations)
t_build = time.perf_counter() - t
ds.as_coco(annotations_path={out!r})
print(json.dumps({{"seconds": time.perf_counter() - t, "seconds_write_only": time.perf_counter() - t - t_build}}))
"""


def _run_child(code: str) -> dict:
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}): {err[-2000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: KiB
    return result


def run(args: argparse.Namespace) -> dict:
    if args.workdir:
        return _run(args, Path(args.workdir))
    # A 100k run leaves ~0.5 GB of data and exports: removed unless --workdir asks to keep them.
    work = Path(tempfile.mkdtemp(prefix="agl-bench-export-"))
    try:
        result = _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["workdir"] = None
    return result


def _run(args: argparse.Namespace, work: Path) -> dict:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from registry.datasets import build_dataset
    from registry.facade import Registry

    data = work / "data"
    t = time.perf_counter()
    _generate(data, args.objects, args.per_image)
    gen_s = time.perf_counter() - t
    n_sv_images = max(1, args.sv_objects // args.per_image)
    with Registry(
        data, embedding_dim=8, embedding_version="bench", index="exact", sync_on_write=False
    ) as reg:
        t = time.perf_counter()
        full = build_dataset(
            reg, "bench", split="0.8,0.1,0.1", seed=0, near_duplicate_threshold=None
        )
        build_s = time.perf_counter() - t
        first = [
            r[0]
            for r in reg.db.execute(
                "SELECT source_id FROM sources ORDER BY source_id LIMIT ?", [n_sv_images]
            ).fetchall()
        ]
        subset = build_dataset(
            reg,
            "bench-sv",
            {"sources": first},
            split="1,0,0",
            seed=0,
            near_duplicate_threshold=None,
        )
    result: dict = {
        "objects": full["object_count"],
        "images": full["image_count"],
        "generate_s": gen_s,
        "build_s": build_s,
    }
    for fmt in ("coco", "yolo"):
        r = _run_child(
            _EXPORT_CHILD.format(
                root=str(ROOT),
                data=str(data),
                dataset=full["dataset_id"],
                out=str(work / f"out_{fmt}"),
                fmt=fmt,
                workers=args.workers,
            )
        )
        result[f"{fmt}_segment"] = {
            "seconds": r["seconds"],
            "peak_rss_mb": r["peak_rss_mb"],
            "peak_rss_with_workers_mb": r["peak_rss_tree_mb"],
            "objects_per_s": full["object_count"] / r["seconds"],
            "polygons": r["polygons"],
            "rle": r["rle"],
        }
    ours = _run_child(
        _EXPORT_CHILD.format(
            root=str(ROOT),
            data=str(data),
            dataset=subset["dataset_id"],
            out=str(work / "out_subset"),
            fmt="coco",
            workers=0,
        )
    )
    ref = _run_child(
        _SV_CHILD.format(
            root=str(ROOT),
            data=str(data),
            dataset=subset["dataset_id"],
            out=str(work / "sv_coco.json"),
            h=H,
            w=W,
        )
    )
    n = subset["object_count"]
    result["reference_subset"] = {
        "objects": n,
        "ours_coco_segment_s": ours["seconds"],
        "supervision_as_coco_s": ref["seconds"],
        "supervision_write_only_s": ref["seconds_write_only"],
        "ours_peak_rss_mb": ours["peak_rss_mb"],
        "supervision_peak_rss_mb": ref["peak_rss_mb"],
        "speedup_vs_supervision": ref["seconds"] / ours["seconds"],
    }
    coco = result["coco_segment"]
    result["targets"] = {
        "coco_segment_s_per_100k": coco["seconds"] * 100_000 / max(full["object_count"], 1),
        "coco_segment_time_ok(<=30s@100k)": coco["seconds"] * 100_000 / max(full["object_count"], 1)
        <= 30,
        "coco_segment_rss_ok(<=1GB)": max(coco["peak_rss_mb"], coco["peak_rss_with_workers_mb"])
        <= 1024,
    }
    from registry.export import _auto_workers

    result["workers"] = (
        args.workers if args.workers is not None else _auto_workers(full["object_count"])
    )
    result["workdir"] = str(work)
    return result
