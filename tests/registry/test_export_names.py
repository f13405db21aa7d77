"""Exports are portable and keep the images' own names (issue 10).

* ``data.yaml`` holds no server folder: a moved export folder, or its zip unpacked anywhere,
  passes ultralytics' ``check_det_dataset`` and our own importer;
* image files keep the source's own name (safe characters, made unique), YOLO label stems and
  COCO ``file_name`` match, and ``manifest.json`` maps every file back to its registry id.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from pycocotools.coco import COCO

from registry.datasets import build_dataset
from registry.export import export_dataset
from registry.export_output import ExportNames, safe_stem
from registry.facade import ObjectIn
from registry.importers.yolo_import import import_yolo
from tests.registry.export_helpers import (
    CLASSES,
    box_of,
    open_registry,
    populate,
    shape_masks,
    write_image,
)


@pytest.fixture
def _ultralytics_env(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics-config"))


def _check_found(data_yaml: Path, root: Path) -> int:
    """``check_det_dataset`` on ``data_yaml`` resolves every split inside ``root`` and each image's
    label file (ultralytics' own image->label mapping) exists there; returns the image count."""
    from ultralytics.data.utils import check_det_dataset, img2label_paths

    data = check_det_dataset(str(data_yaml))
    n = 0
    for split in ("train", "val", "test"):
        folder = Path(data[split])
        assert folder.is_relative_to(root.resolve()), (split, folder, root)
        images = sorted(str(p) for p in folder.iterdir())
        assert images, split
        assert all(Path(p).is_file() for p in img2label_paths(images))
        n += len(images)
    return n


def test_export_found_after_moving_and_unzipping_elsewhere(data_dir, tmp_path, monkeypatch, _ultralytics_env):
    with open_registry(data_dir) as reg:
        populate(reg, tmp_path / "raw", 10)
        built = build_dataset(reg, "mv", seed=1)
        res = export_dataset(reg, built["dataset_id"], tmp_path / "server" / "exp", "yolo", "detect", zip=True)
        n_images = sum(c["images"] for c in res["counts"].values())
    doc = yaml.safe_load((tmp_path / "server" / "exp" / "data.yaml").read_text())
    assert "path" not in doc and doc["train"] == "images/train"
    assert str(tmp_path) not in (tmp_path / "server" / "exp" / "data.yaml").read_text()

    moved = shutil.move(str(tmp_path / "server" / "exp"), str(tmp_path / "laptop" / "moved"))
    unzipped = tmp_path / "other" / "unzipped"
    with zipfile.ZipFile(res["zip"]) as zf:
        zf.extractall(unzipped)
    shutil.rmtree(tmp_path / "server")  # nothing of the original place is left
    monkeypatch.chdir(tmp_path)  # not the dataset folder: the root must come from the yaml's place
    for root in (Path(moved), unzipped):
        assert _check_found(root / "data.yaml", root) == n_images

    # our importer reads the new yaml, and an old one holding an absolute ``path``
    old = unzipped / "old.yaml"
    old.write_text(yaml.safe_dump({"path": str(unzipped), **doc}), encoding="utf-8")
    for i, data_yaml in enumerate((Path(moved) / "data.yaml", old)):
        with open_registry(tmp_path / f"fresh{i}") as fresh:
            report = import_yolo(fresh, data_yaml)
            assert not report.errors, report.summary()
            assert report.images_registered == n_images and fresh.count_objects() == 30


def _named_registry(reg, raw: Path) -> dict[str, str]:
    """Sources whose names collide, need cleaning or are not ASCII; returns {source_id: file_name}."""
    names = ["a/street_0042.png", "b/street_0042.png", "c/Street_0042.png", "d/café au lait.png",
             "e/..weird<>name..png", "f/日本語.png"]
    out = {}
    for i, rel in enumerate(names):
        sid = reg.register_source(write_image(raw / rel, seed=50 + i))
        m = shape_masks(i)[0]
        reg.register_objects(sid, [ObjectIn(category=CLASSES[0], xyxy=box_of(m), mask=m)])
        out[sid] = Path(rel).name
    return out


def test_exports_keep_the_sources_names_unique_and_safe(data_dir, tmp_path):
    with open_registry(data_dir) as reg:
        original = _named_registry(reg, tmp_path / "raw")
        built = build_dataset(reg, "names", split="1,0,0")
        export_dataset(reg, built["dataset_id"], tmp_path / "y", "yolo", "detect")
        export_dataset(reg, built["dataset_id"], tmp_path / "y2", "yolo", "detect")
        coco_res = export_dataset(reg, built["dataset_id"], tmp_path / "c", "coco", "detect")
        boxes = {o["source_id"]: o["bbox_xywh"] for o in reg.list_objects(limit=None)}
    files = json.loads((tmp_path / "y" / "manifest.json").read_text())["image_files"]
    assert sorted(files.values()) == sorted(original)
    names = {sid: Path(f).name for f, sid in files.items()}
    # the same registry gives the same names
    assert json.loads((tmp_path / "y2" / "manifest.json").read_text())["image_files"] == files
    stems = sorted(Path(n).stem for n in names.values())
    assert "café_au_lait" in stems and "日本語" in stems and "weird_name" in stems
    by_stem = sorted(s for s in stems if s.casefold().startswith("street_0042"))
    assert len(by_stem) == 3 and len({s.casefold() for s in by_stem}) == 3
    plain = [s for s in by_stem if s.casefold() == "street_0042"]
    assert len(plain) == 1  # the first keeps the plain name, the others get __<last 8 id characters>
    for sid, name in names.items():
        stem = Path(name).stem
        if stem not in plain and stem.casefold().startswith("street_0042"):
            assert stem.endswith("__" + sid.split("_", 1)[1][-8:]), (stem, sid)
        assert "/" not in name and ".." not in name and not name.startswith(".")
        assert (tmp_path / "y" / "images" / "train" / name).is_file()
    # YOLO label stems are the image stems, each holding its own source's box
    label_stems = {p.stem for p in (tmp_path / "y" / "labels" / "train").iterdir()}
    assert label_stems == set(stems)
    for sid, name in names.items():
        line = (tmp_path / "y" / "labels" / "train" / f"{Path(name).stem}.txt").read_text().split()
        x, y, w, h = boxes[sid]
        np.testing.assert_allclose([float(v) for v in line[1:]],
                                   [(x + w / 2) / 64, (y + h / 2) / 48, w / 64, h / 48], atol=1e-5)
    # COCO: the same file names, agl_id the registry id
    coco = COCO(coco_res["files"]["train"])
    assert {img["agl_id"]: img["file_name"] for img in coco.dataset["images"]} == names


def test_safe_stem_and_unique_names():
    assert safe_stem("../../etc/passwd") == "passwd"
    assert safe_stem("C:\\Users\\x\\shot 1.JPG") == "shot_1"
    assert safe_stem("e\u0301te\u0301.png") == "\u00e9t\u00e9"  # NFD -> NFC, unicode kept
    assert safe_stem("CON.jpg") == "CON_" and safe_stem("..") == "" and safe_stem(None) == ""
    assert len(safe_stem("é" * 300 + ".png").encode()) <= 120
    names = ExportNames()
    got = [names.name("src_aaaaaaaaaaaa", "x.jpg", ".jpg"), names.name("src_bbbbbbbbbbbb", "X.png", ".png"),
           names.name("src_cccccccccccc", "x__bbbbbbbb.png", ".png"), names.name("src_dddd", None, ".jpg"),
           names.name("frm_eeee", "clip.mp4", ".jpg", frame_idx=7)]
    assert got == ["x.jpg", "X__bbbbbbbb.png", "x__bbbbbbbb__cccccccc.png", "src_dddd.jpg", "clip_f000007.jpg"]


def test_video_frames_are_named_after_the_video_and_frame_index(data_dir, tmp_path):
    with open_registry(data_dir) as reg:
        video = tmp_path / "raw" / "street clip.mp4"
        video.parent.mkdir(parents=True)
        video.write_bytes(b"not really a video, but unique bytes")
        vid = reg.register_source(video, source_type="video", width=64, height=48, frame_count=3, fps=5.0)
        frames = {}
        for i in (0, 7, 12):
            fid = reg.add_frame(vid, i, file_path=str(write_image(tmp_path / "raw" / f"f{i}.png", seed=900 + i)))
            reg.register_objects(vid, [ObjectIn(category=CLASSES[0], xyxy=(2 + i, 2, 20 + i, 20), frame_id=fid)])
            frames[fid] = i
        built = build_dataset(reg, "frames", split="1,0,0")
        export_dataset(reg, built["dataset_id"], tmp_path / "y", "yolo", "detect")
    files = json.loads((tmp_path / "y" / "manifest.json").read_text())["image_files"]
    assert {i: f for f, i in files.items()} == {
        fid: f"images/train/street_clip_f{i:06d}.png" for fid, i in frames.items()}
    for i in frames.values():
        line = (tmp_path / "y" / "labels" / "train" / f"street_clip_f{i:06d}.txt").read_text().split()
        assert line[0] == "0" and float(line[1]) == pytest.approx((11 + i) / 64, abs=1e-5)
