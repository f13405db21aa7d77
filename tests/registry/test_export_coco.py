"""COCO export checked by pycocotools, and the mask geometry behind it."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from registry.datasets import build_dataset
from registry.export import export_dataset
from registry.formats import mask_geometry as geom
from tests.registry.export_helpers import CLASSES, open_registry, populate, shape_masks


@pytest.fixture
def reg(data_dir: Path, tmp_path: Path):
    r = open_registry(data_dir)
    populate(r, tmp_path / "raw", 10)
    yield r
    r.close()


def test_coco_segment_loads_in_pycocotools_and_masks_match_registry(reg, tmp_path):
    built = build_dataset(reg, "coco", seed=3)
    res = export_dataset(reg, built["dataset_id"], tmp_path / "out", "coco", "segment")
    assert res["polygons"] > 0 and res["rle"] > 0  # blobs as polygons; rings and two-part masks as RLE
    seen = 0
    for split, path in res["files"].items():
        coco = COCO(path)
        assert {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())} == {
            reg.get_category(n)["category_id"]: n for n in CLASSES
        }
        for img in coco.loadImgs(coco.getImgIds()):
            assert (tmp_path / "out" / "images" / split / img["file_name"]).is_file()
            # the source's own name (populate's img_<i>.png), never a path
            src = reg.get_source(img["agl_id"])
            assert "/" not in img["file_name"] and img["file_name"] == src["file_name"]
        for ann in coco.loadAnns(coco.getAnnIds()):
            obj = reg.get_object(ann["agl_object_id"])
            truth = reg.get_mask(obj["object_id"])
            got = coco.annToMask(ann).astype(bool)
            assert geom.mask_iou(got, truth) >= 0.99, (ann["id"], obj["category"])
            if isinstance(ann["segmentation"], list):
                assert np.array_equal(got, truth)  # polygons only when exact
            assert ann["area"] == truth.sum()
            assert ann["iscrowd"] == 0
            assert ann["bbox"] == pytest.approx(obj["bbox_xywh"], abs=1e-3)
            assert ann["category_id"] == obj["category_id"]
            seen += 1
    assert seen == built["object_count"] == 30
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["train"]["objects"] == built["splits"]["train"]["objects"]
    assert manifest["registry_state"]["object_count"] == 30
    assert manifest["seed"] == 3


def test_coco_category_ids_stable_across_exports(reg, tmp_path):
    a = build_dataset(reg, "all")
    b = build_dataset(reg, "some", {"categories": [CLASSES[2]]})
    ra = export_dataset(reg, a["dataset_id"], tmp_path / "a", "coco", "detect")
    rb = export_dataset(reg, b["dataset_id"], tmp_path / "b", "coco", "detect")
    cats_a = {c["name"]: c["id"] for c in COCO(ra["files"]["train"]).dataset["categories"]}
    cats_b = {c["name"]: c["id"] for c in COCO(rb["files"]["train"]).dataset["categories"]}
    assert min(cats_a.values()) >= 1
    assert cats_b == {CLASSES[2]: cats_a[CLASSES[2]]}
    # detect: boxes only; the file still loads and has empty segmentations
    ann = json.loads(Path(ra["files"]["train"]).read_text())["annotations"][0]
    assert ann["segmentation"] == [] and len(ann["bbox"]) == 4


def test_export_refuses_non_empty_folder_and_zips(reg, tmp_path):
    built = build_dataset(reg, "z")
    out = tmp_path / "z"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        export_dataset(reg, built["dataset_id"], out, "coco", "segment")
    with pytest.raises(ValueError, match="no manifest"):
        export_dataset(reg, built["dataset_id"], out, "coco", "segment", overwrite=True)
    res = export_dataset(reg, built["dataset_id"], tmp_path / "z2", "coco", "segment", zip=True)
    assert Path(res["zip"]).is_file()
    assert reg.db.execute("SELECT export_path FROM datasets WHERE dataset_id = ?",
                          [built["dataset_id"]]).fetchone()[0] == res["zip"]


# ------------------------------------------------------------------------- mask geometry


def test_coco_segmentation_policy():
    blob, ring, parts = shape_masks(0)
    seg, kind = geom.coco_segmentation(blob)
    assert kind == "polygon" and len(seg) == 1
    assert np.array_equal(geom.coco_segmentation_to_mask(seg, *blob.shape), blob)
    for m in (ring, parts):
        seg, kind = geom.coco_segmentation(m)
        assert kind == "rle"
        assert np.array_equal(geom.coco_segmentation_to_mask(seg, *m.shape), m)
    # the RLE path gives the same answer without decoding the full mask
    assert geom.coco_segmentation_from_rle(geom.rle_encode(blob)) == geom.coco_segmentation(blob)


def test_coco_polygons_exact_for_many_shapes():
    rng = np.random.default_rng(0)
    exact = 0
    for _ in range(60):
        m = np.zeros((60, 80), np.uint8)
        cv2.ellipse(m, (int(rng.integers(15, 65)), int(rng.integers(15, 45))),
                    (int(rng.integers(2, 12)), int(rng.integers(2, 12))), int(rng.integers(0, 180)), 0, 360, 1, -1)
        m = m.astype(bool)
        seg, kind = geom.coco_segmentation(m)
        back = geom.coco_segmentation_to_mask(seg, 60, 80)
        assert np.array_equal(back, m)  # whatever the kind, the export is exact
        exact += kind == "polygon"
    assert exact >= 55  # and convex blobs are nearly always polygons


def test_rle_decode_crop_matches_full_decode():
    rng = np.random.default_rng(1)
    for t in range(50):
        h, w = (int(v) for v in rng.integers(3, 90, 2))
        m = rng.random((h, w)) < rng.random()
        rle = geom.rle_encode(m)
        x0, x1 = sorted(int(v) for v in rng.integers(0, w + 1, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, h + 1, 2))
        assert np.array_equal(geom.rle_decode_crop(rle, x0, y0, x1, y1), m[y0:y1, x0:x1]), t
        assert geom.rle_runs(rle["counts"]).sum() == h * w
    uncompressed = {"size": [3, 2], "counts": [1, 2, 3]}
    assert geom.rle_decode(uncompressed).sum() == 2
