"""``launch.py export`` and ``launch.py import`` end to end, in-process."""
from __future__ import annotations

import json
from pathlib import Path

import yaml
from pycocotools.coco import COCO

from app.cli.main import main
from tests.registry.export_helpers import CLASSES, open_registry, populate


def test_export_then_import_cli(data_dir: Path, tmp_path: Path, capsys):
    with open_registry(data_dir) as reg:
        populate(reg, tmp_path / "raw", 6)
    out = tmp_path / "coco"
    rc = main(["export", "--data", str(data_dir), "--format", "coco", "--task", "segment",
               "--out", str(out), "--dataset", "cli", "--split", "0.5,0.25,0.25", "--seed", "4",
               "--categories", f"{CLASSES[0]},{CLASSES[1]}", "--zip", "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["build"]["object_count"] == 12
    assert Path(result["export"]["zip"]).is_file()
    for split in ("train", "val", "test"):
        assert len(COCO(str(out / "annotations" / f"instances_{split}.json")).getImgIds()) > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 4 and manifest["filter"]["categories"] == [CLASSES[0], CLASSES[1]]

    # re-export of the same dataset name, no build options: the same version, same membership
    rc = main(["export", "--data", str(data_dir), "--format", "yolo", "--task", "detect",
               "--out", str(tmp_path / "yolo"), "--dataset", "cli"])
    assert rc == 0
    assert "exported yolo detect" in capsys.readouterr().out
    doc = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert list(doc["names"].values()) == [CLASSES[0], CLASSES[1]]
    assert json.loads((tmp_path / "yolo" / "manifest.json").read_text())["dataset"]["version"] == "1"

    # import the COCO train split into a fresh registry, twice
    data2 = tmp_path / "data2"
    args = ["import", "--data", str(data2), "--format", "coco", str(out / "annotations" / "instances_train.json"),
            "--images", str(out / "images" / "train"), "--validated", "--project", "p1"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "no errors" in first
    assert main(args + ["--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["objects_imported"] == 0 and second["objects_duplicate"] > 0
    with open_registry(data2) as reg2:
        assert reg2.count_objects(status="approved", project="p1") == second["objects_duplicate"]

    # a malformed file: exit 2, a one-line error
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["import", "--data", str(data2), "--format", "coco", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
