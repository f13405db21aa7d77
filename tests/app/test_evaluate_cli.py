"""``launch.py evaluate --run``: a 1-epoch segmentation run on a tiny synthetic export, scored with
COCOeval (bbox + segm), with the confusion matrix and PR curves written as PNGs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from app.cli.main import main
from app.workflows.train import TrainRequest, train_run
from registry.facade import Registry
from tests.pipeline.train.helpers import CLASSES, seed_dataset


@pytest.fixture
def seg_run(data_dir, tmp_path) -> dict:
    seed_dataset(data_dir, tmp_path / "raw", n_images=10)
    with Registry(data_dir, sync_on_write=False) as reg:
        return train_run(reg, data_dir, TrainRequest("shapes", "yolo11n-seg.yaml", epochs=1, imgsz=64, batch=4),
                         quiet=True)


def test_evaluate_run_writes_metrics_confusion_matrix_and_pr_curves(seg_run, data_dir, capsys, artifacts_dir):
    run_id = seg_run["run_id"]
    assert seg_run["task"] == "segment" and seg_run["status"] == "finished"
    capsys.readouterr()
    assert main(["evaluate", "--data", str(data_dir), "--run", run_id, "--split", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["run_id"] == run_id and report["split"] == "test" and report["images"] == 2
    for iou_type in ("bbox", "segm"):
        r = report[iou_type]
        assert r["detections"] > 0  # the model's boxes (random-ish after one epoch) were scored
        assert 0.0 <= r["map"] <= r["map50"] <= 1.0 and len(r["stats"]) == 12
        assert set(r["per_class"]) == set(CLASSES)
        assert all(c["gt"] == 2 and 0.0 <= c["ap"] <= 1.0 for c in r["per_class"].values())
    cm = report["confusion_matrix"]
    assert cm["names"] == [*CLASSES, "background"]
    # every ground-truth object is counted once: matched (any column) or missed (background column)
    assert [sum(row) for row in cm["matrix"][:3]] == [2, 2, 2]
    out = data_dir / "runs" / run_id / "eval" / "test"
    for name in ("confusion_matrix", "pr_curves_bbox", "pr_curves_segm"):
        png = Path(report["files"][name])
        assert png.parent == out and png.suffix == ".png"
        with Image.open(png) as im:
            assert im.size[0] >= 300 and im.size[1] >= 200
        shutil.copyfile(png, artifacts_dir / f"evaluate_{name}.png")
    saved = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert saved["segm"]["map50"] == report["segm"]["map50"]
    with Registry(data_dir, sync_on_write=False) as reg:
        ev = reg.get_run(run_id)["metadata"]["eval"]["test"]
        assert set(ev["bbox"]["per_class"]) == set(CLASSES) and ev["files"]["confusion_matrix"] == str(out / "confusion_matrix.png")
    capsys.readouterr()
    assert main(["evaluate", "--data", str(data_dir), "--run", run_id]) == 0  # the table, reusing the GT export
    text = capsys.readouterr().out
    assert "segm: mAP" in text and "Überzug" in text and "confusion matrix" in text


def test_evaluate_unknown_run_or_missing_weights_is_one_clear_line(data_dir, capsys):
    assert main(["evaluate", "--data", str(data_dir), "--run", "run_nothere"]) == 2
    assert "no training run 'run_nothere'" in capsys.readouterr().err
    with Registry(data_dir, sync_on_write=False) as reg:
        run_id = reg.create_run(model="yolo11n.yaml", task="detect")
    assert main(["evaluate", "--data", str(data_dir), "--run", run_id]) == 2
    assert "expected best weights on disk" in capsys.readouterr().err
