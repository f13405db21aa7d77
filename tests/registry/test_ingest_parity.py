"""Parity of the ingest fast paths with the plain pycocotools calls they replace.

Masks are ``(H, W)`` bool arrays, RLEs compressed COCO ``{"size": [H, W], "counts": str}``,
boxes ``xywh`` absolute pixels. Random masks include empty ones, masks touching every border,
full masks and odd sizes.
"""
from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from registry import dedupe
from registry import masks as rle_ops


def _random_rles(rng: np.random.Generator, n: int, h: int, w: int) -> list[dict]:
    out = []
    for k in range(n):
        m = np.zeros((h, w), dtype=bool)
        kind = k % 5
        if kind == 0:
            pass  # empty
        elif kind == 1:
            m[:] = True  # full: touches all four borders
        elif kind == 2:
            m = rng.random((h, w)) < 0.3  # speckle, runs crossing columns
        else:
            y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
            m[y0:y0 + int(rng.integers(1, h + 1)), x0:x0 + int(rng.integers(1, w + 1))] = True
            if kind == 4:
                m[-1, :] = True  # bottom border row
                m[:, 0] = True  # left border column
        out.append(rle_ops.encode(m))
    return out


def test_bboxes_coco_and_iou_coco_match_pycocotools_on_random_masks() -> None:
    rng = np.random.default_rng(7)
    for h, w in [(1, 1), (7, 13), (31, 17), (64, 1)]:
        rles = _random_rles(rng, 23, h, w)
        coco = [rle_ops.to_coco(r) for r in rles]
        ref_boxes = np.asarray([mask_utils.toBbox(c) for c in coco], dtype=np.float64).reshape(-1, 4)
        np.testing.assert_array_equal(rle_ops.bboxes_coco(coco), ref_boxes)
        np.testing.assert_array_equal(rle_ops.bboxes(rles), ref_boxes)
        assert (ref_boxes[0] == 0).all() and ref_boxes[1].tolist() == [0, 0, w, h]
        ref_iou = np.asarray(mask_utils.iou(coco, coco, [0] * len(coco)), dtype=np.float64)
        np.testing.assert_array_equal(rle_ops.iou_coco(coco, coco), ref_iou)
        np.testing.assert_array_equal(rle_ops.iou(rles, rles), ref_iou)
        assert ref_iou[1, 1] == 1.0


def test_items_cache_mask_boxes_and_coco_once_and_match_direct_calls() -> None:
    rng = np.random.default_rng(3)
    rles = _random_rles(rng, 300, 29, 37)  # > 255: crosses pycocotools' chunk size
    rle_list: list[dict | None] = [r if k % 7 else None for k, r in enumerate(rles)]
    masked = np.array([k for k, r in enumerate(rle_list) if r is not None])
    items = dedupe.Items.build([k % 3 for k in range(300)], [(0.0, 0.0, 5.0, 5.0)] * 300, rle_list,
                               [None] * 300)
    some = masked[::3]
    first = items.mask_boxes(some)  # partial fill, then the rest
    allb = items.mask_boxes(masked)
    ref = np.asarray([rle_ops.bbox_xywh(rle_list[i]) for i in masked])
    np.testing.assert_array_equal(allb, ref)
    np.testing.assert_array_equal(first, ref[::3])
    assert np.isnan(items._mask_box[0]).all()  # item 0 has no mask: never boxed
    c = items.coco(int(masked[0]))
    assert c is items.coco(int(masked[0])) and isinstance(c["counts"], bytes)
    assert c["counts"].decode("ascii") == rle_list[int(masked[0])]["counts"]


def _old_find_duplicates(new: dedupe.Items, stored: dedupe.Items, t: float) -> dict:
    """Brute force over all pairs with plain pycocotools calls (the behaviour to keep)."""
    out: dict[int, tuple[str, int]] = {}

    def pair(a: dedupe.Items, i: int, b: dedupe.Items, j: int) -> float:
        if a.rle[i] is not None and b.rle[j] is not None:
            return float(rle_ops.iou([a.rle[i]], [b.rle[j]])[0, 0])
        return float(rle_ops.box_iou_xywh(a.box[i:i + 1], b.box[j:j + 1])[0, 0])

    kept: list[int] = []
    for i in range(len(new)):
        best, arg = t, None
        for j in range(len(stored)):
            if stored.category[j] == new.category[i]:
                v = pair(new, i, stored, j)
                if v > best:
                    best, arg = v, j
        if arg is not None:
            out[i] = ("stored", arg)
            continue
        for j in kept:
            if new.category[j] == new.category[i]:
                v = pair(new, i, new, j)
                if v > best:
                    best, arg = v, j
        if arg is not None:
            out[i] = ("new", arg)
        else:
            kept.append(i)
    return out


def test_find_duplicates_with_cached_geometry_matches_brute_force() -> None:
    rng = np.random.default_rng(11)
    h, w = 24, 33
    base = _random_rles(rng, 12, h, w)
    for trial in range(4):
        n_new, n_old = 40, 15
        picks = rng.integers(0, len(base), n_new + n_old)
        rles = [base[p] if rng.random() < 0.8 else None for p in picks]
        boxes = [rle_ops.bbox_xywh(base[p]) for p in picks]
        boxes = [(x, y, max(bw, 1.0), max(bh, 1.0)) for x, y, bw, bh in boxes]
        areas = [None if r is None else rle_ops.area(r) for r in rles]
        cats = rng.integers(0, 2, n_new + n_old).tolist()
        new = dedupe.Items.build(cats[:n_new], boxes[:n_new], rles[:n_new], areas[:n_new])
        old = dedupe.Items.build(cats[n_new:], boxes[n_new:], rles[n_new:], areas[n_new:])
        got = dedupe.find_duplicates(new, old, 0.5)
        ref = _old_find_duplicates(new, old, 0.5)
        assert got == ref, f"trial {trial}"
        assert len(ref) > 5  # the random draw really has duplicates of both kinds
        assert {k for k, _ in ref.values()} == {"stored", "new"}


def test_dedupe_reads_stored_objects_through_the_source_or_frame_index(tmp_path) -> None:
    from registry.facade import ObjectIn, Registry
    from registry.objects_write import stored_query

    reg = Registry(tmp_path / "data", embedding_dim=4, index="exact", sync_on_write=False)
    try:
        img = tmp_path / "a.jpg"
        img.write_bytes(b"a")
        sid = reg.register_source(img, width=40, height=30, copy=False)
        box = (2.0, 3.0, 20.0, 25.0)
        first = reg.register_objects(sid, [ObjectIn("cat", box)])
        again = reg.register_objects(sid, [ObjectIn("cat", box), ObjectIn("dog", box)])
        assert again.duplicates == [(0, first.object_ids[0])] and again.object_ids[1] is not None
        for frame, index in ((None, "idx_objects_source"), ("frm_x", "idx_objects_frame")):
            sql, params = stored_query(sid, frame, [1, 2])
            plan = " ".join(r["detail"] for r in reg.connection.query("EXPLAIN QUERY PLAN " + sql, params))
            assert f"USING INDEX {index}" in plan, plan
        rows = reg.connection.query(*stored_query(sid, None, [1, 2]))
        assert sorted(r["object_id"] for r in rows) == sorted([first.object_ids[0], again.object_ids[1]])
    finally:
        reg.close()


def test_validate_many_hands_back_the_pycocotools_form_it_made() -> None:
    rng = np.random.default_rng(5)
    rles = _random_rles(rng, 17, 9, 14)
    out: list = []
    areas = rle_ops.validate_many(rles, out)
    assert out == [rle_ops.to_coco(r) for r in rles]
    assert areas.tolist() == [int(mask_utils.area(c)) for c in out]
    bad = [*rles[:3], {"size": [9, 14], "counts": "0"}]
    out2: list = []
    with pytest.raises(ValueError, match="^RLE 3: expected runs summing to H\\*W = 126"):
        rle_ops.validate_many(bad, out2)
    assert out2 == []  # nothing handed back from a batch that failed
    seeded = dedupe.Items.build([0] * 17, [(0.0, 0.0, 1.0, 1.0)] * 17, rles, areas.tolist(), out)
    assert seeded.coco(4) is out[4]
    np.testing.assert_array_equal(seeded.mask_boxes(np.arange(17)), rle_ops.bboxes(rles))


def test_validate_many_names_a_run_beyond_its_own_size_in_a_mixed_batch() -> None:
    # A run of 150 fits the batch's largest H*W (10,000) but not its own 10x10 mask.
    big = rle_ops.encode(np.ones((100, 100), dtype=bool))
    small = mask_utils.frPyObjects({"size": [10, 10], "counts": [0, 150]}, 10, 10)
    small = {"size": [10, 10], "counts": small["counts"].decode("ascii")}
    with pytest.raises(ValueError, match="^RLE 1: .*corrupt"):
        rle_ops.validate_many([big, small])
    with pytest.raises(ValueError, match="corrupt"):
        rle_ops.validate(small)
    assert rle_ops.validate_many([big, big]).tolist() == [10_000, 10_000]


def test_validate_many_boxes_equal_pycocotools() -> None:
    rng = np.random.default_rng(8)
    rles = _random_rles(rng, 60, 23, 31)
    rles += [rle_ops.encode(np.zeros((7, 5), bool)), rle_ops.encode(np.ones((7, 5), bool))]
    one_pixel = np.zeros((7, 5), bool)
    one_pixel[6, 4] = True
    rles.append(rle_ops.encode(one_pixel))
    boxes: list = []
    areas = rle_ops.validate_many(rles, None, boxes)
    assert areas.tolist() == rle_ops.areas(rles).tolist()
    np.testing.assert_array_equal(boxes[0], rle_ops.bboxes(rles))
    assert boxes[0][-1].tolist() == [4.0, 6.0, 1.0, 1.0] and boxes[0][-3].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_validate_counts_equals_validate_many_and_words_the_same_errors() -> None:
    rng = np.random.default_rng(11)
    rles = _random_rles(rng, 40, 23, 31)
    counts = [r["counts"] for r in rles]
    boxes_fast: list = []
    boxes_ref: list = []
    fast = rle_ops.validate_counts(counts, 23, 31, boxes_fast)
    ref = rle_ops.validate_many(rles, None, boxes_ref)
    assert fast.tolist() == ref.tolist() and int(fast.sum()) > 0
    np.testing.assert_array_equal(boxes_fast[0], boxes_ref[0])
    corrupt = [*counts[:5], "0", *counts[5:]]  # RLE 5 sums to 0, not 23*31
    with pytest.raises(ValueError, match="^RLE 5: expected runs summing to H\\*W = 713"):
        rle_ops.validate_counts(corrupt, 23, 31)
    for odd, what in (("", "RLE 2"), ("é", "RLE 2"), (None, "RLE 2")):  # validate_many words these
        with pytest.raises(ValueError, match=f"^{what}: "):
            rle_ops.validate_counts([*counts[:2], odd, *counts[2:]], 23, 31)
        with pytest.raises(ValueError, match=f"^{what}: "):
            rle_ops.validate_many([*rles[:2], {"size": [23, 31], "counts": odd}, *rles[2:]])


@pytest.mark.parametrize("h, w", [(1, 40), (40, 1), (23, 31), (7, 300)])
def test_validate_many_boxes_track_columns_over_long_gaps(h: int, w: int) -> None:
    # The checker follows the current column instead of dividing per run: masks whose runs
    # jump many columns, wrap, or sit on the first or last pixel.
    masks = []
    for cols, rows in (([0], [0]), ([w - 1], [h - 1]), ([0, w - 1], [h - 1, 0]), ([w // 3, min(w - 1, w // 3 + 1)], [h - 1, 0]),
                       ([w // 2], list(range(h))), (list(range(0, w, max(1, w // 5))), [h // 2])):
        m = np.zeros((h, w), dtype=bool)
        for c in cols:
            for r in rows:
                m[r, c] = True
        masks.append(m)
    rles = [rle_ops.encode(m) for m in masks]
    boxes: list = []
    areas = rle_ops.validate_many(rles, None, boxes)
    assert areas.tolist() == [int(m.sum()) for m in masks] and int(areas.min()) >= 1
    np.testing.assert_array_equal(boxes[0], rle_ops.bboxes(rles))
    fast: list = []
    rle_ops.validate_counts([r["counts"] for r in rles], h, w, fast)
    np.testing.assert_array_equal(fast[0], boxes[0])
