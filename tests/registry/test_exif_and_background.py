"""EXIF-rotated JPEGs keep their boxes through import and export (issue 8 #8); images without
objects are exported as background images (issue 8 #11)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

import image_header
from registry.datasets import build_dataset
from registry.export import export_dataset
from registry.facade import ObjectIn
from registry.importers.coco_import import import_coco
from registry.importers.common import check_image
from tests.registry.export_helpers import box_of, open_registry, shape_masks, write_image

# Stored pixels are 80 wide x 40 tall; orientations 6 and 8 turn them upright to 40 x 80.
RAW_W, RAW_H = 80, 40


def _rotated_jpeg(path: Path, orientation: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (RAW_H, RAW_W, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, "JPEG", exif=exif.tobytes())
    return path


@pytest.fixture
def _ultralytics_env(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics-config"))


@pytest.mark.parametrize("orientation", [6, 8])
def test_one_size_function_for_every_registry_path(tmp_path, data_dir, orientation):
    jpg = _rotated_jpeg(tmp_path / f"r{orientation}.jpg", orientation, seed=orientation)
    with Image.open(jpg) as im:
        from PIL import ImageOps

        upright = ImageOps.exif_transpose(im).size
    assert upright == (RAW_H, RAW_W)
    assert image_header.image_size(jpg) == upright
    assert check_image(jpg) == upright  # the importers' check
    with open_registry(data_dir) as reg:
        src = reg.get_source(reg.register_source(jpg))
        assert (src["width"], src["height"]) == upright


@pytest.mark.parametrize("orientation", [6, 8])
def test_rotated_jpeg_coco_import_to_yolo_export_keeps_the_box(tmp_path, data_dir, orientation, _ultralytics_env):
    from ultralytics.data.utils import check_det_dataset, verify_image_label

    root = tmp_path / "ds"
    _rotated_jpeg(root / "images" / "rot.jpg", orientation, seed=1)
    w, h = RAW_H, RAW_W  # upright: 40 x 80, as viewers and the models see it
    bbox = [5.0, 10.0, 20.0, 30.0]  # xywh in upright pixels
    (root / "instances.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "rot.jpg", "width": w, "height": h}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": bbox}],
        "categories": [{"id": 1, "name": "cat"}],
    }))
    with open_registry(data_dir) as reg:
        report = import_coco(reg, root / "instances.json")
        assert report.errors == [] and report.objects_imported == 1
        built = build_dataset(reg, "rot", split="1,0,0")
        export_dataset(reg, built["dataset_id"], tmp_path / "out", "yolo", "detect")
    out = tmp_path / "out"
    label = next((out / "labels").rglob("*.txt"))
    cls, cx, cy, bw, bh = (float(v) for v in label.read_text().split())
    x, y, bwp, bhp = bbox
    assert cls == 0
    np.testing.assert_allclose([cx, cy, bw, bh], [(x + bwp / 2) / w, (y + bhp / 2) / h, bwp / w, bhp / h], atol=1e-6)
    # ultralytics reads the same upright size from the exported JPEG
    check_det_dataset(str(out / "data.yaml"))
    image = next((out / "images").rglob("*.jpg"))
    res = verify_image_label((str(image), str(label), "", False, 1, 0, 0, False))
    assert tuple(res[2]) == (h, w) and res[1].shape == (1, 5)


def _registry_with_backgrounds(reg, root: Path) -> tuple[list[str], list[str]]:
    """4 images with objects, 3 without, 1 whose only object was rejected (also background)."""
    with_objects, background = [], []
    for i in range(4):
        src = reg.register_source(write_image(root / f"obj_{i}.png", seed=i))
        m = shape_masks(i)[0]
        reg.register_objects(src, [ObjectIn("cat", box_of(m), mask=m)])
        with_objects.append(src)
    for i in range(3):
        background.append(reg.register_source(write_image(root / f"bg_{i}.png", seed=100 + i)))
    src = reg.register_source(write_image(root / "rejected.png", seed=200))
    oid = reg.register_objects(src, [ObjectIn("cat", (1, 1, 9, 9))]).object_ids[0]
    reg.update_object(oid, status="rejected", validated_by="me")
    background.append(src)
    return with_objects, background


def test_background_images_exported_to_yolo_by_default(tmp_path, data_dir, _ultralytics_env):
    from ultralytics.data.utils import check_det_dataset, verify_image_label

    with open_registry(data_dir) as reg:
        with_objects, background = _registry_with_backgrounds(reg, tmp_path / "raw")
        built = build_dataset(reg, "bg", split="1,0,0")
        assert built["background_images"] == 4 and built["image_count"] == 8
        res = export_dataset(reg, built["dataset_id"], tmp_path / "y", "yolo", "detect")
        assert res["counts"]["train"]["images"] == 8 and res["counts"]["train"]["background"] == 4
        no_bg = export_dataset(reg, built["dataset_id"], tmp_path / "n", "yolo", "detect", background=False)
        assert no_bg["counts"]["train"]["images"] == 4
    files = json.loads((tmp_path / "y" / "manifest.json").read_text())["image_files"]
    id_of = {Path(f).stem: i for f, i in files.items()}  # exported names are the sources' own
    labels = {id_of[p.stem]: p.read_text() for p in (tmp_path / "y" / "labels" / "train").iterdir()}
    assert set(labels) == set(with_objects) | set(background)
    assert all(labels[s] == "" for s in background) and all(labels[s].strip() for s in with_objects)
    data = check_det_dataset(str(tmp_path / "y" / "data.yaml"))
    assert data["nc"] == 1
    empty = 0
    for sid in background:
        image = tmp_path / "y" / next(f for f, i in files.items() if i == sid)
        out = verify_image_label((str(image), str(tmp_path / "y" / "labels" / "train" / f"{image.stem}.txt"),
                                  "", False, 1, 0, 0, False))
        assert out[1].shape == (0, 5)
        empty += out[7]  # ultralytics counts it as an empty (background) label
    assert empty == 4
    files_n = json.loads((tmp_path / "n" / "manifest.json").read_text())["image_files"]
    assert {files_n[f"images/train/{p.name}"] for p in (tmp_path / "n" / "images" / "train").iterdir()} == set(with_objects)


def test_background_images_exported_to_coco_and_cli_flag(tmp_path, data_dir):
    import os
    import subprocess
    import sys

    with open_registry(data_dir) as reg:
        with_objects, background = _registry_with_backgrounds(reg, tmp_path / "raw")
        build_dataset(reg, "bgc", split="1,0,0")
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))

    def export(out: Path, *flags: str) -> COCO:
        res = subprocess.run([sys.executable, "launch.py", "export", "--data", str(data_dir), "--format", "coco",
                              "--dataset", "bgc", "--out", str(out), *flags], cwd=root, env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        return COCO(str(out / "annotations" / "instances_train.json"))

    coco = export(tmp_path / "c")
    by_agl = {img["agl_id"]: img["id"] for img in coco.dataset["images"]}
    assert set(by_agl) == set(with_objects) | set(background)
    assert all(coco.getAnnIds(imgIds=[by_agl[s]]) == [] for s in background)
    assert all(len(coco.getAnnIds(imgIds=[by_agl[s]])) == 1 for s in with_objects)
    coco_no = export(tmp_path / "c2", "--no-background")
    assert {img["agl_id"] for img in coco_no.dataset["images"]} == set(with_objects)


def test_background_images_never_move_objects_and_follow_the_ratios(tmp_path, data_dir):
    from registry.datasets import dataset_background, dataset_members, get_dataset
    from tests.registry.export_helpers import populate

    with open_registry(data_dir) as reg:
        populate(reg, tmp_path / "raw", 12)
        before = dataset_members(reg, build_dataset(reg, "a", seed=3)["dataset_id"])
        for i in range(20):
            reg.register_source(write_image(tmp_path / "raw" / f"bg_{i}.png", seed=300 + i))
        built = build_dataset(reg, "b", seed=3)
        assert dataset_members(reg, built["dataset_id"]) == before
        bg = dataset_background(get_dataset(reg, built["dataset_id"]))
        assert sum(map(len, bg.values())) == 20 == built["background_images"]
        assert len(bg["train"]) == 16 and len(bg["val"]) == 2 and len(bg["test"]) == 2
        assert built["splits"]["val"]["background"] == 2
        none = build_dataset(reg, "c", seed=3, include_background=False)
        assert none["background_images"] == 0
        assert not any(dataset_background(get_dataset(reg, none["dataset_id"])).values())
