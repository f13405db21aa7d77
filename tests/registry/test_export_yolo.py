"""YOLO export checked by ultralytics: its dataset check, and a one-epoch training run.

Offline settings that keep ultralytics from reaching the network (see ``_ultralytics_env``):
``YOLO_OFFLINE=1`` (no hub/GitHub checks or asset downloads), ``YOLO_CONFIG_DIR`` set to a
temporary folder (settings file not written to ~/.config), and for training ``plots=False``
(plotting downloads the Arial.ttf font) and ``amp=False`` (the AMP check downloads
yolo11n.pt); the model is built from a yaml, so no weights are fetched.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from registry.datasets import build_dataset
from registry.export import export_dataset
from registry.formats import mask_geometry as geom
from registry.formats.yolo import parse_label_file
from tests.registry.export_helpers import CLASSES, open_registry, populate, shape_masks


@pytest.fixture
def reg(data_dir: Path, tmp_path: Path):
    r = open_registry(data_dir)
    populate(r, tmp_path / "raw", 10)
    yield r
    r.close()


@pytest.fixture
def _ultralytics_env(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics-config"))


def _labels(root: Path) -> dict[str, list]:
    n = len(yaml.safe_load((root / "data.yaml").read_text())["names"])
    # exported images keep their own names; the manifest maps each one to its registry id
    files = json.loads((root / "manifest.json").read_text())["image_files"]
    id_of = {(Path(f).parent.name, Path(f).stem): i for f, i in files.items()}
    out = {}
    for f in sorted((root / "labels").rglob("*.txt")):
        objs, errors = parse_label_file(f, n)
        assert not errors
        out[id_of[f.parent.name, f.stem]] = objs
    return out


def test_yolo_layout_and_data_yaml(reg, tmp_path):
    built = build_dataset(reg, "y", seed=1)
    res = export_dataset(reg, built["dataset_id"], tmp_path / "y", "yolo", "detect")
    root = tmp_path / "y"
    doc = yaml.safe_load((root / "data.yaml").read_text())
    assert "path" not in doc  # the root is the yaml's folder, wherever the export is unpacked
    assert doc["names"] == {i: n for i, n in enumerate(CLASSES)}  # registry category order
    for split in ("train", "val", "test"):
        images = sorted(p.stem for p in (root / "images" / split).iterdir())
        labels = sorted(p.stem for p in (root / "labels" / split).iterdir())
        assert images == labels and len(images) == built["splits"][split]["images"] > 0
        assert doc[split] == f"images/{split}"
    # no class name ever becomes a path
    assert not any("rider" in str(p) or "Überzug" in str(p) for p in root.rglob("*"))
    labels = _labels(root)
    for _stem, objs in labels.items():
        for _cls, values in objs:
            assert values.size == 4 and np.all((values >= 0) & (values <= 1))
    # every object's box is the registry's box, normalised, with its class (one line each)
    objs = reg.list_objects(limit=None)
    assert sum(len(v) for v in labels.values()) == len(objs) > 0
    for obj in objs:
        src = reg.get_source(obj["source_id"])
        w, h = src["width"], src["height"]
        x, y, bw, bh = obj["bbox_xywh"]
        expected = np.array([(x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h])
        cls = CLASSES.index(obj["category"])
        assert any(c == cls and np.allclose(v, expected, atol=1e-5) for c, v in labels[obj["source_id"]]), obj
    assert res["counts"]["train"]["objects"] == built["splits"]["train"]["objects"]


def test_yolo_segment_polygons_reproduce_masks_with_holes_and_parts():
    for seed in range(5):
        for m in shape_masks(seed):
            pts = geom.yolo_polygon(m)
            back = geom.yolo_polygon_to_mask(pts, *m.shape)
            # Nothing of the mask is lost (parts and holes kept); fillPoly only adds the
            # one-pixel line of each zero-width bridge across a gap between parts.
            assert (m & ~back).sum() == 0
            assert (back & ~m).sum() <= 20
            assert geom.mask_iou(back, m) >= 0.94


def test_yolo_segment_export_and_ultralytics_check(reg, tmp_path, _ultralytics_env):
    from ultralytics.data.utils import check_det_dataset

    built = build_dataset(reg, "seg", seed=2)
    res = export_dataset(reg, built["dataset_id"], tmp_path / "s", "yolo", "segment")
    assert res["polygons"] == 30 and res["box_as_polygon"] == 0
    data = check_det_dataset(str(tmp_path / "s" / "data.yaml"))
    assert data["nc"] == 3 and list(data["names"].values()) == list(CLASSES)
    for split in ("train", "val", "test"):
        assert Path(data[split]).is_dir()
    # every label polygon, scaled back, reproduces its registry mask
    labels = _labels(tmp_path / "s")
    for obj in reg.list_objects(limit=100):
        src = reg.get_source(obj["source_id"])
        truth = reg.get_mask(obj["object_id"])
        best = 0.0
        for _cls, values in labels[obj["source_id"]]:
            pts = values.reshape(-1, 2) * [src["width"], src["height"]]
            best = max(best, geom.mask_iou(geom.yolo_polygon_to_mask(pts, *truth.shape), truth))
        assert best >= 0.94  # the bridge between two parts is the only difference


@pytest.mark.slow
def test_ultralytics_trains_one_epoch_on_export(reg, tmp_path, _ultralytics_env):
    from ultralytics import YOLO

    built = build_dataset(reg, "train", seed=0)
    export_dataset(reg, built["dataset_id"], tmp_path / "t", "yolo", "segment")
    model = YOLO("yolo11n-seg.yaml")  # architecture from yaml: random weights, nothing downloaded
    model.train(
        data=str(tmp_path / "t" / "data.yaml"), epochs=1, imgsz=64, batch=4, workers=0,
        amp=False, plots=False, device="cpu", project=str(tmp_path / "runs"), name="t",
        exist_ok=True, verbose=False,
    )
    assert (tmp_path / "runs" / "t" / "weights" / "last.pt").is_file()
    assert os.environ["YOLO_OFFLINE"] == "1"
