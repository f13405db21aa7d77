"""Importers: round trips through export, idempotent re-import, per-item errors, batches."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from registry.datasets import build_dataset
from registry.export import export_dataset
from registry.formats import mask_geometry as geom
from registry.formats.yolo import parse_label_file
from registry.importers.coco_import import import_coco
from registry.importers.yolo_import import import_yolo
from tests.registry.export_helpers import (
    CLASSES,
    H,
    W,
    box_of,
    open_registry,
    populate,
    shape_masks,
    write_image,
)


def _uncompressed_rle(mask: np.ndarray) -> dict:
    flat = mask.T.ravel().astype(np.int8)  # column-major
    change = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    if flat[0]:
        runs = [0] + runs
    return {"size": list(mask.shape), "counts": runs}


def _coco_file(root: Path, n_images: int = 4) -> tuple[Path, dict]:
    """A COCO file with polygons, compressed RLE and uncompressed RLE; returns (path, truth)."""
    images, anns, truth = [], [], {}
    cats = [{"id": 10 + k, "name": n, "supercategory": "thing"} for k, n in enumerate(CLASSES)]
    for i in range(n_images):
        write_image(root / "images" / f"im {i}.png", seed=100 + i)
        images.append({"id": i + 1, "file_name": f"im {i}.png", "width": W, "height": H})
        blob, ring, parts = shape_masks(i)
        segs = [geom.coco_polygons(blob), geom.rle_encode(ring), _uncompressed_rle(parts)]
        for k, (m, seg) in enumerate(zip((blob, ring, parts), segs, strict=True)):
            x0, y0, x1, y1 = box_of(m)
            aid = len(anns) + 1
            anns.append({"id": aid, "image_id": i + 1, "category_id": 10 + k, "segmentation": seg,
                         "bbox": [x0 + 0.25, y0, x1 - x0 - 0.25, y1 - y0], "area": float(m.sum()),
                         "iscrowd": 0})
            truth[(f"im {i}.png", CLASSES[k])] = (m, anns[-1]["bbox"])
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path, truth


def test_coco_round_trip_boxes_masks_names(data_dir, tmp_path):
    path, truth = _coco_file(tmp_path / "in")
    with open_registry(data_dir) as reg:
        report = import_coco(reg, path, validated=True)
        assert report.objects_imported == 12 and not report.errors, report.summary()
        assert reg.count_objects(status="approved") == 12
        again = import_coco(reg, path)
        assert again.objects_imported == 0 and again.objects_duplicate == 12 and again.sources_new == 0
        assert reg.count_objects() == 12 and reg.count_sources() == 4
        built = build_dataset(reg, "rt", split="1,0,0")
        res = export_dataset(reg, built["dataset_id"], tmp_path / "out", "coco", "segment")
        name_of_source = {s["source_id"]: s["file_name"] for s in reg.list_sources()}
    coco = COCO(res["files"]["train"])
    assert sorted(c["name"] for c in coco.dataset["categories"]) == sorted(CLASSES)
    assert len(coco.dataset["annotations"]) == 12
    for ann in coco.dataset["annotations"]:
        img = coco.imgs[ann["image_id"]]
        key = (name_of_source[img["agl_id"]], coco.cats[ann["category_id"]]["name"])
        mask, bbox = truth[key]
        assert np.allclose(ann["bbox"], bbox, atol=0.5)
        assert geom.mask_iou(coco.annToMask(ann).astype(bool), mask) >= 0.99


def _yolo_dataset(root: Path) -> Path:
    """A small YOLO detect dataset with an empty-label (background) image."""
    for split, n in (("train", 4), ("val", 2)):
        for i in range(n):
            write_image(root / "images" / split / f"{split}{i}.jpg".replace(".jpg", ".png"), seed=300 + i + 10 * len(split))
            lines = [f"{k % 2} {0.3 + 0.1 * k:.6f} {0.4:.6f} {0.2:.6f} {0.25 + 0.05 * k:.6f}" for k in range(i % 3)]
            label = root / "labels" / split / f"{split}{i}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("\n".join(lines))
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: red car\n  1: person/rider\n")
    return root / "data.yaml"


def test_yolo_round_trip_boxes(data_dir, tmp_path):
    yaml_path = _yolo_dataset(tmp_path / "y")
    with open_registry(data_dir) as reg:
        report = import_yolo(reg, yaml_path)
        assert not report.errors, report.summary()
        assert report.images_seen == 6 and report.images_registered == 6
        n = reg.count_objects()
        assert import_yolo(reg, yaml_path).objects_imported == 0 and reg.count_objects() == n
        built = build_dataset(reg, "y", split="1,0,0")
        export_dataset(reg, built["dataset_id"], tmp_path / "out", "yolo", "detect")
        original = {}
        for f in (tmp_path / "y" / "labels").rglob("*.txt"):
            objs, _ = parse_label_file(f, 2)
            for cls, v in objs:
                original.setdefault(f.stem, []).append((cls, v))
        exported = {}
        files = json.loads((tmp_path / "out" / "manifest.json").read_text())["image_files"]
        id_of = {Path(f).stem: i for f, i in files.items()}
        for f in (tmp_path / "out" / "labels").rglob("*.txt"):
            src = reg.get_source(id_of[f.stem])
            assert f.stem == Path(src["file_name"]).stem  # the export keeps the image's own name
            objs, _ = parse_label_file(f, 2)
            exported[Path(src["file_name"]).stem] = objs
    assert sum(len(v) for v in original.values()) == n
    for stem, objs in original.items():
        got = exported[stem]
        assert len(got) == len(objs)
        for cls, v in objs:
            # within 0.5 px at the 64x48 image size
            assert any(c == cls and np.all(np.abs((g - v) * [W, H, W, H]) <= 0.5) for c, g in got)


def test_yolo_segment_import_round_trip(data_dir, tmp_path):
    with open_registry(data_dir) as reg:
        populate(reg, tmp_path / "raw", 4)
        built = build_dataset(reg, "s", split="1,0,0")
        export_dataset(reg, built["dataset_id"], tmp_path / "seg", "yolo", "segment")
        masks = {(o["source_id"], o["category"]): reg.get_mask(o["object_id"]) for o in reg.list_objects(limit=100)}
        hashes = {s["source_id"]: s["content_hash"] for s in reg.list_sources()}
    with open_registry(tmp_path / "data2") as reg2:
        report = import_yolo(reg2, tmp_path / "seg")
        assert report.objects_imported == 12 and not report.errors
        for o in reg2.list_objects(limit=100):
            src = reg2.get_source(o["source_id"])
            original = next(k for k, h in hashes.items() if h == src["content_hash"])
            truth = masks[(original, o["category"])]
            assert geom.mask_iou(reg2.get_mask(o["object_id"]), truth) >= 0.94  # bridges only


def test_bad_items_reported_and_skipped(data_dir, tmp_path):
    path, _ = _coco_file(tmp_path / "in", n_images=3)
    doc = json.loads(path.read_text())
    (tmp_path / "in" / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    doc["images"] += [{"id": 50, "file_name": "missing.png", "width": W, "height": H},
                      {"id": 51, "file_name": "corrupt.png", "width": W, "height": H}]
    doc["annotations"] += [
        {"id": 900, "image_id": 77, "category_id": 10, "bbox": [1, 1, 5, 5]},           # unknown image
        {"id": 901, "image_id": 1, "category_id": 99, "bbox": [1, 1, 5, 5]},           # unknown category
        {"id": 902, "image_id": 1, "category_id": 10, "bbox": [50, 40, 30, 30]},       # outside
        {"id": 903, "image_id": 1, "category_id": 11, "bbox": [1, 1, 5, 5],
         "segmentation": [[1, 1, 2, 2]]},                                                # degenerate
        {"id": 904, "image_id": 1, "category_id": 11, "bbox": [1, 1, 5, 5],
         "segmentation": [[1, 1, 3, 3, 5, 5]]},                                          # zero area
    ]
    path.write_text(json.dumps(doc))
    with open_registry(data_dir) as reg:
        report = import_coco(reg, path)
        assert report.objects_imported == 9
        reasons = " | ".join(f"{i}: {r}" for i, r in report.errors)
        for expected in ("missing.png", "corrupt", "unknown image id 77", "unknown category id 99",
                         "outside", "degenerate polygon"):
            assert expected in reasons, (expected, reasons)
        assert len(report.errors) == 7
        assert "7 items skipped" in report.summary()


def test_malformed_files_import_nothing(data_dir, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [}')
    bad_yaml = tmp_path / "data.yaml"
    bad_yaml.write_text("names: [a, b\ntrain: images")
    not_coco = tmp_path / "list.json"
    not_coco.write_text("[1, 2]")
    with open_registry(data_dir) as reg:
        with pytest.raises(ValueError, match="not valid JSON"):
            import_coco(reg, bad)
        with pytest.raises(ValueError, match="expected a JSON object"):
            import_coco(reg, not_coco)
        with pytest.raises(ValueError, match="not valid YAML"):
            import_yolo(reg, bad_yaml)
        assert reg.count_sources() == 0 and reg.count_objects() == 0


def test_killed_import_leaves_whole_batches_and_rerun_completes(data_dir, tmp_path):
    path, _ = _coco_file(tmp_path / "in", n_images=6)
    with open_registry(data_dir) as reg:
        real = reg.register_objects
        calls = {"n": 0}

        def dies_on_fourth(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 4:
                raise KeyboardInterrupt  # as if the process were killed mid-batch
            return real(*args, **kwargs)

        reg.register_objects = dies_on_fourth
        with pytest.raises(KeyboardInterrupt):
            import_coco(reg, path, batch_size=2)
        assert reg.count_sources() == 2 and reg.count_objects() == 6  # batch 1 whole, batch 2 rolled back
        reg.register_objects = real
        report = import_coco(reg, path, batch_size=2)
        assert reg.count_sources() == 6 and reg.count_objects() == 18
        assert report.objects_duplicate == 6 and report.objects_imported == 12


def test_rle_uncompressed_helper_matches_pycocotools():
    m = shape_masks(0)[2]
    rle = mask_utils.frPyObjects(_uncompressed_rle(m), H, W)
    assert np.array_equal(mask_utils.decode(rle).astype(bool), m)
