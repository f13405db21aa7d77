"""The fast paths behind the exporters give exactly what the simple paths give.

Batched RLE crop decoding vs pycocotools' full decode; the one-pass COCO polygon vs the
pycocotools rasteriser; table-formatted numbers vs Python's own formatting; the CocoWriter's
string-built annotation vs ``json.dumps`` of the same dict.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from registry.formats import mask_geometry as geom
from registry.formats.coco import CocoWriter, RawJson, quarter_polygon_json
from registry.formats.yolo import polygon_line


def _random_masks(seed: int, n: int) -> list[np.ndarray]:
    """Masks of assorted sizes and shapes: noise, closed blobs, empty, full, one pixel, lines, edges."""
    rng = np.random.default_rng(seed)
    masks = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        m = (rng.random((h, w)) < rng.random() * 0.5).astype(np.uint8)
        k = int(rng.integers(0, 4))
        if k:
            m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((2 * k + 1, 2 * k + 1), np.uint8))
        m = m.astype(bool)
        if i % 9 == 0:
            m[:] = False
        elif i % 9 == 1:
            m[:] = True
        elif i % 9 == 2:
            m[:] = False
            m[int(rng.integers(0, h)), int(rng.integers(0, w))] = True
        elif i % 9 == 3:
            m[:] = False
            m[:, int(rng.integers(0, w))] = True  # a full-height line (runs span columns)
        masks.append(m)
    return masks


def _reference_crop(mask: np.ndarray) -> tuple[np.ndarray, int, int]:
    x, y, w, h = (int(v) for v in geom.mask_bbox_xywh(mask))
    return mask[y : y + h, x : x + w], x, y


@pytest.mark.parametrize("budget", [1, 300, 1 << 24])
def test_batched_crops_match_full_decode(budget):
    masks = _random_masks(0, 160)
    rles = [geom.rle_encode(m) for m in masks]
    # Mixed input forms: compressed str, compressed bytes, uncompressed counts.
    rles[5] = {"size": rles[5]["size"], "counts": rles[5]["counts"].encode()}
    m6 = masks[6]
    flat = m6.ravel(order="F").astype(np.int64)
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    rles[6] = {
        "size": list(m6.shape),
        "counts": np.diff(np.concatenate([[0], change])).tolist()[: len(change)],
    }
    assert np.array_equal(geom.rle_decode(rles[6]), m6)
    got = geom.rle_crops_to_foreground(rles, max_crop_pixels=budget)
    assert len(got) == len(masks)
    for m, (crop, x0, y0) in zip(masks, got, strict=True):
        ref, rx, ry = _reference_crop(m)
        assert crop.dtype == bool and crop.flags.c_contiguous
        assert crop.shape == ref.shape
        assert np.array_equal(crop, ref)
        if crop.size:
            assert (x0, y0) == (rx, ry)


def test_batched_crops_on_real_sized_masks_with_holes_and_parts():
    rng = np.random.default_rng(1)
    masks = []
    for i in range(24):
        m = np.zeros((480, 640), np.uint8)
        cx, cy = int(rng.integers(80, 560)), int(rng.integers(80, 400))
        cv2.ellipse(
            m,
            (cx, cy),
            (int(rng.integers(8, 70)), int(rng.integers(8, 70))),
            int(rng.integers(0, 180)),
            0,
            360,
            1,
            -1,
        )
        if i % 3 == 1:
            cv2.circle(m, (cx, cy), 5, 0, -1)
        elif i % 3 == 2:
            cv2.circle(m, (min(630, cx + 75), cy), 6, 1, -1)
        masks.append(m.astype(bool))
    got = geom.rle_crops_to_foreground([geom.rle_encode(m) for m in masks])
    for m, (crop, x0, y0) in zip(masks, got, strict=True):
        full = np.zeros_like(m)
        full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
        assert np.array_equal(full, m)


def test_batched_crops_reject_corrupt_rle():
    good = geom.rle_encode(np.eye(5, dtype=bool))
    with pytest.raises(ValueError, match="cover"):
        geom.rle_crops_to_foreground([good, {"size": [6, 5], "counts": good["counts"]}])
    with pytest.raises(ValueError, match="truncated"):
        geom.rle_crops_to_foreground([{"size": [5, 5], "counts": "0" + chr(48 + 0x20)}])


def test_rle_areas_beyond_pycocotools_uint8_batch_limit():
    masks = _random_masks(2, 300)
    areas = geom.rle_areas([geom.rle_encode(m) for m in masks])
    assert areas.tolist() == [int(m.sum()) for m in masks]


def test_coco_polygon_quarters_exact_or_none():
    polygons = 0
    for m in _random_masks(3, 200):
        crop, x0, y0 = _reference_crop(m)
        q = geom.coco_polygon_quarters(crop)
        n_parts, _ = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
        if q is None:
            continue
        polygons += 1
        assert (q % 2 == 1).all()  # quarter-pixel vertices, inside the pixel edges
        assert n_parts == 2  # background + exactly one part
        poly = (q / 4.0 + np.array([x0, y0])).ravel().tolist()
        assert np.array_equal(geom.coco_polygons_to_mask([poly], *m.shape), m)
    assert polygons > 20
    ring = np.zeros((20, 20), bool)
    ring[4:16, 4:16] = True
    ring[8:12, 8:12] = False
    assert geom.coco_polygon_quarters(ring) is None  # a hole: RLE


def test_quarter_polygon_json_is_json_of_the_floats():
    rng = np.random.default_rng(4)
    for _ in range(50):
        a, b = rng.integers(0, 80_000, int(rng.integers(6, 40))), rng.integers(0, 300, 6)
        text = quarter_polygon_json([a, b])
        assert text == json.dumps([(a / 4).tolist(), (b / 4).tolist()], separators=(",", ":"))
    assert quarter_polygon_json([]) == "[]"


def test_polygon_line_integer_path_matches_float_formatting():
    rng = np.random.default_rng(5)

    def slow(cls, pts, w, h):
        v = np.clip(np.asarray(pts, np.float64) / np.array([w, h], np.float64), 0.0, 1.0)
        return f"{cls} " + " ".join(f"{x:.6f}" for x in v.ravel())

    for _ in range(60):
        w, h = (int(v) for v in rng.integers(1, 3000, 2))
        pts = np.stack([rng.integers(0, w + 1, 30), rng.integers(0, h + 1, 30)], 1)
        for p in (pts, pts.astype(np.float64), pts - 2, pts + 0.25):
            for _ in range(2):  # the second call of a size uses its table
                assert polygon_line(2, p, w, h) == slow(2, p, w, h)


def test_coco_writer_string_path_equals_dict_encoding(tmp_path):
    cats = [{"id": 1, "name": "a/b ü"}]
    with CocoWriter(tmp_path / "a.json", categories=cats) as w:
        img = w.add_image("x.png", width=10, height=8)
        w.add_annotation(
            img,
            1,
            [1, 2.00049, 3, 4],
            area=12.0,
            segmentation={"size": [8, 10], "counts": 'a\\b"c'},
            extra={"agl_object_id": "obj_ü"},
        )
        w.add_annotation(
            img, 1, [1, 2, 3, 4], area=5, segmentation=RawJson("[[0.25,0.75,1.25,0.25,1.25,1.75]]")
        )
        w.add_annotation(
            img,
            1,
            [1, 2, 3, 4],
            area=5,
            segmentation=RawJson("[[0.25,0.75,1.25,0.25,1.25,1.75]]"),
            extra={"iscrowd": 0, "note": 1},
        )  # overlapping keys: the dict path
        w.add_annotation(img, 1, [0, 0, 1, 1], area=1)
    data = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    anns = data["annotations"]
    assert anns[0] == {
        "id": 1,
        "image_id": 1,
        "category_id": 1,
        "bbox": [1.0, 2.0, 3.0, 4.0],
        "area": 12.0,
        "iscrowd": 0,
        "segmentation": {"size": [8, 10], "counts": 'a\\b"c'},
        "agl_object_id": "obj_ü",
    }
    assert (
        anns[1]["segmentation"] == anns[2]["segmentation"] == [[0.25, 0.75, 1.25, 0.25, 1.25, 1.75]]
    )
    assert anns[2]["note"] == 1 and anns[3]["segmentation"] == [] and anns[3]["area"] == 1.0


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_export_with_worker_processes_writes_the_same_files(data_dir, tmp_path, monkeypatch, fmt):
    from registry import export as export_mod
    from registry.datasets import build_dataset
    from registry.export import export_dataset
    from tests.registry.export_helpers import open_registry, populate

    monkeypatch.setattr(export_mod, "_CHUNK_OBJECTS", 4)  # many chunks: exercises in-order writing
    with open_registry(data_dir) as reg:
        populate(reg, tmp_path / "raw", 8)
        built = build_dataset(reg, "w", seed=1)
        a = export_dataset(reg, built["dataset_id"], tmp_path / "seq", fmt, "segment", workers=0)
        b = export_dataset(reg, built["dataset_id"], tmp_path / "pool", fmt, "segment", workers=2)
    assert (a["polygons"], a["rle"]) == (b["polygons"], b["rle"]) and a["polygons"] > 0
    seq = sorted(
        p.relative_to(tmp_path / "seq") for p in (tmp_path / "seq").rglob("*") if p.is_file()
    )
    pool = sorted(
        p.relative_to(tmp_path / "pool") for p in (tmp_path / "pool").rglob("*") if p.is_file()
    )
    assert seq == pool
    for rel in seq:
        if rel.name in ("manifest.json", "data.yaml"):
            continue  # time stamps / absolute paths
        left, right = (tmp_path / "seq" / rel).read_bytes(), (tmp_path / "pool" / rel).read_bytes()
        if rel.suffix == ".json":
            left_doc, right_doc = json.loads(left), json.loads(right)
            left_doc["info"].pop("date_created")
            right_doc["info"].pop("date_created")
            assert left_doc == right_doc, rel
        else:
            assert left == right, rel


def test_worker_failure_is_reported_and_output_removed(data_dir, tmp_path):
    from registry.datasets import build_dataset
    from registry.export import export_dataset
    from tests.registry.export_helpers import open_registry, populate

    with open_registry(data_dir) as reg:
        populate(reg, tmp_path / "raw", 2)
        built = build_dataset(reg, "w", seed=1)
        with reg.transaction() as tx:  # a stored mask whose runs do not cover H*W
            tx.execute(
                "UPDATE objects SET mask_h = mask_h + 1 WHERE rowid = (SELECT min(rowid) FROM objects)"
            )
        for workers in (0, 1):  # the same error with or without worker processes
            with pytest.raises(ValueError, match="cover"):
                export_dataset(
                    reg,
                    built["dataset_id"],
                    tmp_path / f"out{workers}",
                    "coco",
                    "segment",
                    workers=workers,
                )
    assert not list(tmp_path.glob("out*/**/*.json"))
