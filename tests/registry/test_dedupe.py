"""registry.dedupe: the same duplicates as the old all-pairs code, in bounded memory."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from registry import dedupe
from registry import masks as rle_ops

ROOT = Path(__file__).resolve().parents[2]


# -- the old implementation (facade._iou_matrix / _dedupe before the sweep), as the reference --
def _old_iou_matrix(a: dedupe.Items, b: dedupe.Items, same: np.ndarray, t: float) -> np.ndarray:
    out = np.zeros((len(a), len(b)))
    pi, pj = np.nonzero(same)
    if not pi.size:
        return out
    ba, bb = a.box[pi], b.box[pj]
    w = np.minimum(ba[:, 0] + ba[:, 2], bb[:, 0] + bb[:, 2]) - np.maximum(ba[:, 0], bb[:, 0])
    h = np.minimum(ba[:, 1] + ba[:, 3], bb[:, 1] + bb[:, 3]) - np.maximum(ba[:, 1], bb[:, 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    union = ba[:, 2] * ba[:, 3] + bb[:, 2] * bb[:, 3] - inter
    vals = np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)
    masked = a.has_mask()[pi] & b.has_mask()[pj]
    for k in np.flatnonzero(masked):  # plain all-pairs mask IoU, no pruning at all
        vals[k] = rle_ops.iou([a.rle[pi[k]]], [b.rle[pj[k]]])[0, 0]
    out[pi, pj] = vals
    return out


def _old_dedupe(new: dedupe.Items, stored: dedupe.Items, t: float) -> dict[int, tuple[str, int]]:
    dup: dict[int, tuple[str, int]] = {}
    if len(stored):
        ious = _old_iou_matrix(new, stored, new.category[:, None] == stored.category[None, :], t)
        best = ious.argmax(axis=1)
        for i in np.flatnonzero(ious[np.arange(len(new)), best] > t):
            dup[int(i)] = ("stored", int(best[i]))
    if len(new) > 1:
        same = np.tril(new.category[:, None] == new.category[None, :], k=-1)
        within = _old_iou_matrix(new, new, same, t)
        kept: list[int] = []
        for i in range(len(new)):
            if i in dup:
                continue
            if kept:
                k = int(np.argmax(within[i, kept]))
                if within[i, kept[k]] > t:
                    dup[i] = ("new", kept[k])
                    continue
            kept.append(i)
    return dup


def _random_items(rng: np.random.Generator, n: int, h: int = 30, w: int = 40) -> dedupe.Items:
    """Boxes and masks in a small image, many near-copies of earlier ones, some masks leaving
    their box (the facade does not tie a mask to its box)."""
    cats, boxes, rles, areas = [], [], [], []
    for k in range(n):
        if k and rng.random() < 0.5:  # a near-copy of an earlier item
            j = int(rng.integers(0, k))
            x, y, bw, bh = boxes[j]
            box = (x + rng.uniform(-0.6, 0.6), y + rng.uniform(-0.6, 0.6), bw, bh + rng.uniform(0, 0.5))
            cat = cats[j] if rng.random() < 0.8 else int(rng.integers(1, 4))
            src_rle = rles[j]
        else:
            bw, bh = rng.uniform(1, 20), rng.uniform(1, 15)
            box = (rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh)
            cat = int(rng.integers(1, 4))
            src_rle = None
        kind = rng.random()
        if kind < 0.4:
            rle = None
        else:
            if src_rle is not None and rng.random() < 0.7:
                m = rle_ops.decode(src_rle).copy()
                m[int(rng.integers(0, h)), int(rng.integers(0, w))] ^= True
            else:
                m = np.zeros((h, w), bool)
                x0, y0 = int(box[0]), int(box[1])
                if rng.random() < 0.2:  # a mask away from its box
                    x0, y0 = int(rng.integers(0, w - 5)), int(rng.integers(0, h - 5))
                m[y0:y0 + max(1, int(box[3])), x0:x0 + max(1, int(box[2]))] = True
            rle = rle_ops.encode(m) if m.any() else None
        cats.append(cat)
        boxes.append(tuple(float(v) for v in box))
        rles.append(rle)
        areas.append(None if rle is None else float(rle_ops.area(rle)))
    return dedupe.Items.build(cats, boxes, rles, areas)


@pytest.mark.parametrize("seed", range(16))
def test_same_duplicates_as_the_all_pairs_code(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    # A tiny pair budget forces many chunks, so the chunk boundaries are exercised too.
    monkeypatch.setattr(dedupe, "PAIR_BUDGET", int(rng.choice([7, 50, 1 << 20])))
    monkeypatch.setattr(dedupe, "LOWER_BLOCK", int(rng.choice([3, 16, 1024])))
    stored = _random_items(rng, int(rng.integers(0, 40)))
    new = _random_items(rng, int(rng.integers(1, 80)))
    if len(stored) and rng.random() < 0.7:  # some new items copy stored ones
        take = rng.integers(0, len(stored), size=min(10, len(stored)))
        new = dedupe.Items.build(
            np.r_[new.category, stored.category[take]], np.r_[new.box, stored.box[take]],
            new.rle + [stored.rle[i] for i in take], np.r_[new.area, stored.area[take]].tolist())
    for t in (0.5, 0.9):
        want = _old_dedupe(new, stored, t)
        got = dedupe.find_duplicates(new, stored, t)
        assert got == want, (seed, t)
    assert want, "the random items must contain duplicates for the comparison to mean something"


def test_identical_boxes_all_fold_into_the_first():
    n = 300
    items = dedupe.Items.build([5] * n, [(3.0, 4.0, 10.0, 10.0)] * n, [None] * n, [None] * n)
    got = dedupe.find_duplicates(items, dedupe.Items.build([], [], [], []), 0.9)
    assert got == {i: ("new", 0) for i in range(1, n)}


_MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys, tracemalloc
    import numpy as np
    from PIL import Image
    from registry.facade import ObjectIn, Registry

    data, n = sys.argv[1], int(sys.argv[2])
    w, h = 4000, 3000
    Image.new("RGB", (w, h), (90, 120, 30)).save(f"{data}/big.png")
    rng = np.random.default_rng(0)
    size = rng.uniform(10, 200, size=(n, 2))
    xy = rng.uniform(0, 1, size=(n, 2)) * (np.array([w, h]) - size)
    boxes = np.c_[xy, xy + size]
    planted = 500  # the last 500 boxes are shifted copies of the first 500: IoU > 0.9
    boxes[-planted:] = np.minimum(boxes[:planted] + 0.2, [w, h, w, h])
    with Registry(data, embedding_dim=8, index="exact", sync_on_write=False) as reg:
        sid = reg.register_source(f"{data}/big.png")
        objs = [ObjectIn("cell", tuple(map(float, b))) for b in boxes]
        tracemalloc.start()
        res = reg.register_objects(sid, objs)
        peak = tracemalloc.get_traced_memory()[1]
        stored = reg.count_objects(source_id=sid)
    print(json.dumps({"peak_mb": peak / 2**20, "duplicates": len(res.duplicates),
                      "planted": planted, "stored": stored,
                      "dup_of_first": sorted(i for i, _ in res.duplicates)[-planted:] == list(range(n - planted, n))}))
""")


def test_20k_boxes_of_one_category_register_in_bounded_memory(tmp_path):
    """Issue 9 #2: all-pairs matrices made this 23 GB; the bound is 300 MB of Python/numpy
    allocations (tracemalloc) around ``register_objects`` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    script = tmp_path / "mem.py"
    script.write_text(_MEMORY_SCRIPT)

    def limit() -> None:  # the old code would ask for ~23 GB: fail fast instead of swapping
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

    out = subprocess.run([sys.executable, str(script), str(tmp_path), "20000"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600, preexec_fn=limit)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["peak_mb"] < 300, res
    assert res["duplicates"] >= res["planted"] and res["dup_of_first"], res
    assert res["stored"] + res["duplicates"] == 20000


_COCO_SCRIPT = textwrap.dedent("""
    import json, sys, tracemalloc
    from pathlib import Path
    import numpy as np
    from PIL import Image
    from registry.facade import Registry
    from registry.importers.coco_import import import_coco

    root, n = Path(sys.argv[1]), int(sys.argv[2])
    (root / "images").mkdir()
    Image.new("RGB", (4000, 3000), (10, 20, 30)).save(root / "images" / "crowd.png")
    rng = np.random.default_rng(1)
    size = rng.uniform(10, 200, size=(n, 2))
    xy = rng.uniform(0, 1, size=(n, 2)) * (np.array([4000, 3000]) - size)
    anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [*map(float, xy[i]), *map(float, size[i])]}
            for i in range(n)]
    anns += [{**a, "id": n + a["id"]} for a in anns[:300]]  # exact copies: duplicates
    (root / "instances.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "crowd.png", "width": 4000, "height": 3000}],
        "annotations": anns, "categories": [{"id": 1, "name": "cell"}]}))
    with Registry(root / "data", embedding_dim=8, index="exact", sync_on_write=False) as reg:
        tracemalloc.start()
        report = import_coco(reg, root / "instances.json")
        peak = tracemalloc.get_traced_memory()[1]
    print(json.dumps({"peak_mb": peak / 2**20, "imported": report.objects_imported,
                      "duplicates": report.objects_duplicate, "errors": len(report.errors)}))
""")


def test_20k_box_coco_import_in_bounded_memory(tmp_path):
    """The issue's case: one image, 20,000 boxes of one category in a COCO file (~2 MB)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    script = tmp_path / "coco_mem.py"
    script.write_text(_COCO_SCRIPT)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

    out = subprocess.run([sys.executable, str(script), str(tmp_path), "20000"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600, preexec_fn=limit)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["peak_mb"] < 300, res
    assert res["errors"] == 0 and res["duplicates"] >= 300
    assert res["imported"] + res["duplicates"] == 20300

