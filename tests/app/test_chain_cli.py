"""The real chain from the command line, as a user runs it on an air-gapped machine:
``models import`` the three (tiny) model folders, ``label`` a folder (no test hook: the real
ModelManager -> Florence-2 -> SAM2 -> DINOv2 path), then ``export`` and load what came out.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.chain_models import SCENE_SIZE, build_chain_models, scene_boxes, write_scene
from tests.conftest import ROOT
from tests.pipeline.tiny_models_sam2_dino import TINY_DINO_DIM


def _run(*args: str, tmp_path: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home"), "PYTHONPATH": str(ROOT),
           "YOLO_CONFIG_DIR": str(tmp_path / "yolo-cfg")}
    env.pop("AGL_WEIGHTS", None)
    env.pop("AGL_DATA", None)
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def imported(tmp_path: Path, data_dir: Path) -> Path:
    """A data folder whose models/ holds the three tiny models, imported by the CLI."""
    build_chain_models(tmp_path / "usb")
    proc = _run("models", "import", str(tmp_path / "usb"), "--data", str(data_dir), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for role in ("detector", "segmenter", "embedder"):
        assert f"{role}: imported" in proc.stdout
    status = _run("models", "status", "--data", str(data_dir), "--json", tmp_path=tmp_path)
    assert status.returncode == 0, status.stderr
    models = json.loads(status.stdout)["models"]
    assert [m["role"] for m in models] == ["detector", "segmenter", "embedder"], status.stdout
    assert all(m["present"] for m in models), status.stdout
    return data_dir


def test_models_import_then_label_then_export_with_the_real_chain(tmp_path, imported):
    data_dir = imported
    images = tmp_path / "photos"
    for i in range(3):
        write_scene(images / f"scene_{i}.png", seed=30 + i)

    proc = _run("label", "--data", str(data_dir), "--classes", "cat, dog", str(images), "--confidence", "0.2",
                "--json", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["labeled"] == 3 and report["objects"] == 6 and not report["failed"], report

    from app.workflows.search import search_by_vector
    from registry.facade import Registry

    # the vectors carry the release name of the spec the weights were imported as
    with Registry(data_dir, embedding_dim=TINY_DINO_DIM, embedding_version="dinov2-base") as reg:
        objs = reg.list_objects(limit=100)
        assert len(objs) == 6
        assert sorted({o["category"] for o in objs}) == ["cat", "dog"]
        assert {o["detection_model"] for o in objs} == {"florence-2-base"}
        assert all(0.2 <= o["confidence"] <= 1 for o in objs)
        boxes = scene_boxes()
        for o in objs:
            x, y, w, h = o["bbox_xywh"]
            np.testing.assert_allclose([x, y, x + w, y + h], boxes[o["category"]], atol=0.5)
            assert reg.get_mask(o["object_id"]).any()
        assert reg.doctor()["ok"]  # outbox synced into the index by the label command
        for o in objs:
            hits = search_by_vector(reg, reg.get_embedding(o["object_id"]), k=1)
            assert hits[0]["object_id"] == o["object_id"]

    coco_out = tmp_path / "coco"
    proc = _run("export", "--data", str(data_dir), "--format", "coco", "--task", "segment", "--out", str(coco_out),
                "--split", "1,0,0", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    from pycocotools.coco import COCO

    coco = COCO(str(coco_out / "annotations" / "instances_train.json"))
    assert len(coco.getImgIds()) == 3 and len(coco.getAnnIds()) == 6
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == ["cat", "dog"]
    for ann in coco.loadAnns(coco.getAnnIds()):
        assert coco.annToMask(ann).shape == SCENE_SIZE and ann["area"] > 0

    yolo_out = tmp_path / "yolo"
    proc = _run("export", "--data", str(data_dir), "--format", "yolo", "--task", "detect", "--out", str(yolo_out),
                "--split", "1,0,0", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    labels = sorted((yolo_out / "labels").rglob("*.txt"))
    assert len(labels) == 3
    names = yaml.safe_load((yolo_out / "data.yaml").read_text())["names"]
    names = names if isinstance(names, list) else [names[k] for k in sorted(names)]
    h, w = SCENE_SIZE
    for label in labels:  # one cat and one dog per image, at the scripted boxes
        rows = [line.split() for line in label.read_text().splitlines() if line.strip()]
        assert sorted(names[int(r[0])] for r in rows) == ["cat", "dog"], (label, rows)
        for r in rows:
            x0, y0, x1, y1 = boxes[names[int(r[0])]]
            expected = [(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h]
            np.testing.assert_allclose([float(v) for v in r[1:]], expected, atol=2 / w)


def test_a_corrupt_file_is_reported_and_a_second_run_resumes(tmp_path, imported):
    images = tmp_path / "photos"
    write_scene(images / "scene_a.png", seed=40)
    write_scene(images / "scene_b.png", seed=41)
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    # in batches of 3: the corrupt file fails alone, the two scenes go through label_many together
    args = ("label", "--data", str(imported), "--classes", "cat,dog", str(images), "--confidence", "0.2",
            "--segmenter", "grabcut", "--batch-images", "3")
    first = _run(*args, tmp_path=tmp_path)
    assert first.returncode == 1, first.stderr  # one file failed, the rest labeled
    assert "1 of 3 failed:" in first.stdout and "corrupt.jpg" in first.stdout
    assert "2 labeled" in first.stdout
    assert "Traceback" not in first.stdout + first.stderr
    from registry.facade import Registry

    with Registry(imported, embedding_dim=TINY_DINO_DIM, embedding_version="dinov2-base") as reg:
        assert reg.count_sources() == 2 and reg.count_objects() == 4
        assert all(o["has_mask"] and o["detection_model"] == "florence-2-base" for o in reg.list_objects(limit=None))
        assert reg.doctor()["ok"]
    (images / "corrupt.jpg").unlink()
    again = _run(*args, "--json", tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["skipped"] == 2 and report["labeled"] == 0 and report["objects"] == 0, report
