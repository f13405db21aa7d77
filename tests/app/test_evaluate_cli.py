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

    # the same segmentation run as a labeler: masks come from the model itself, no segmenter
    from app.workflows.train import build_run_labeler

    with Registry(data_dir, sync_on_write=False) as reg:
        labeler = build_run_labeler(reg, f"run:{run_id}", segmenter=lambda: pytest.fail("no segmenter needed"))
    image = next((data_dir / "runs" / run_id / "eval" / "coco_gt" / "images" / "test").iterdir())
    det = labeler.label(image, list(CLASSES), confidence=0.0)  # one epoch: scores are tiny
    assert labeler.model_names == {"detector": f"run:{run_id}", "segmenter": None, "embedder": None}
    assert len(det) >= 1 and det.mask.shape[1:] == (48, 64) and det.data["mask_iou"].tolist() == [1.0] * len(det)
    assert set(det.data["detection_model"]) == {f"run:{run_id}"}
    assert det.confidence.tolist() == det.data["det_score"].tolist()  # the model's own scores


def test_evaluate_unknown_run_or_missing_weights_is_one_clear_line(data_dir, capsys):
    assert main(["evaluate", "--data", str(data_dir), "--run", "run_nothere"]) == 2
    assert "no training run 'run_nothere'" in capsys.readouterr().err
    with Registry(data_dir, sync_on_write=False) as reg:
        run_id = reg.create_run(model="yolo11n.yaml", task="detect")
    assert main(["evaluate", "--data", str(data_dir), "--run", run_id]) == 2
    assert "expected best weights on disk" in capsys.readouterr().err


class _PerfectDetector:
    """Stands in for the run's YOLO weights: answers every image with its ground-truth boxes,
    under the model's own class order (so the YOLO index -> COCO category mapping is exercised)."""

    task = "detect"

    def __init__(self, weights, *, version=None, device=None, imgsz=640) -> None:
        self.names = list(reversed(CLASSES))  # a class order unlike the COCO category ids

    def predict(self, paths, *, conf=0.25, masks=True):
        import numpy as np

        from pipeline.types import Detections

        for path in paths:
            path = Path(path)
            gt = json.loads((path.parents[2] / "annotations" / f"instances_{path.parent.name}.json").read_text())
            img = next(i for i in gt["images"] if i["file_name"] == path.name)
            cats = {c["id"]: c["name"] for c in gt["categories"]}
            anns = [a for a in gt["annotations"] if a["image_id"] == img["id"]]
            yield Detections(xyxy=[[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                                   for a in anns], confidence=np.full(len(anns), 0.9),
                             class_id=[self.names.index(cats[a["category_id"]]) for a in anns], class_names=self.names)


def _finished_run_with_perfect_detector(reg, data_dir, tmp_path, monkeypatch) -> str:
    """A finished detect run over a seeded 10-image dataset whose detector returns the ground truth."""
    import pipeline.train.yolo_detector as yd

    built = seed_dataset(data_dir, tmp_path / "raw", n_images=10)
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"stand-in")
    monkeypatch.setattr(yd, "YoloDetector", _PerfectDetector)
    run_id = reg.create_run(model="yolo11n.yaml", task="detect", dataset_id=built["dataset_id"],
                            dataset_name="shapes", dataset_version="1.0")
    reg.update_run(run_id, status="finished", best_weights=str(weights))
    return run_id


def test_evaluate_scores_perfect_predictions_as_perfect(data_dir, tmp_path, monkeypatch):
    from app.workflows.evaluate import evaluate_run

    with Registry(data_dir, sync_on_write=False) as reg:
        run_id = _finished_run_with_perfect_detector(reg, data_dir, tmp_path, monkeypatch)
        report = evaluate_run(reg, data_dir, run_id, split="val")
    assert report["images"] == 2 and report["bbox"]["detections"] == 6
    assert report["bbox"]["map"] == pytest.approx(1.0) and report["bbox"]["map50"] == pytest.approx(1.0)
    assert {n: c["ap50"] for n, c in report["bbox"]["per_class"].items()} == {n: pytest.approx(1.0) for n in CLASSES}
    cm = report["confusion_matrix"]
    order = [cm["names"].index(n) for n in CLASSES]
    assert [[cm["matrix"][i][j] for j in order] for i in order] == [[2, 0, 0], [0, 2, 0], [0, 0, 2]]
    assert cm["matrix"][-1] == [0, 0, 0, 0] and all(row[-1] == 0 for row in cm["matrix"])


def test_evaluate_again_after_a_label_fix_uses_the_fixed_ground_truth(data_dir, tmp_path, monkeypatch):
    # The ground-truth export is cached per run; a reviewer fixing a label in the split must not
    # leave later evaluations scoring against the labels as they were before the fix.
    from app.workflows.evaluate import evaluate_run

    with Registry(data_dir, sync_on_write=False) as reg:
        run_id = _finished_run_with_perfect_detector(reg, data_dir, tmp_path, monkeypatch)
        first = evaluate_run(reg, data_dir, run_id, split="val")
        assert {n: c["gt"] for n, c in first["bbox"]["per_class"].items()} == {n: 2 for n in CLASSES}
        oid, cat = reg.db.execute(
            "SELECT o.object_id, c.name FROM dataset_objects d JOIN objects o ON o.object_id = d.object_id "
            "JOIN categories c ON c.category_id = o.category_id WHERE d.dataset_id = ? AND d.split = 'val' "
            "ORDER BY o.object_id LIMIT 1", (reg.get_run(run_id)["dataset_id"],)).fetchone()
        other = next(n for n in CLASSES if n != cat)
        reg.update_object(oid, category=other)
        second = evaluate_run(reg, data_dir, run_id, split="val")
    counts = {n: c["gt"] for n, c in second["bbox"]["per_class"].items()}
    assert counts[cat] == 1 and counts[other] == 3


class _BatchRecordingSegDetector(_PerfectDetector):
    """A segmentation stand-in that records how many images each predict call held."""

    task = "segment"
    calls: list[int] = []

    def predict(self, paths, *, conf=0.25, masks=True):
        paths = list(paths)
        type(self).calls.append(len(paths))
        yield from super().predict(paths, conf=conf, masks=masks)


def test_segmentation_evaluation_predicts_one_image_at_a_time(data_dir, tmp_path, monkeypatch):
    # At conf 0.001 a segmentation model returns up to 300 full-resolution masks per image
    # (~620 MB of uint8 at 1080p); a 16-image predict batch held ~10 GB at once.
    import pipeline.train.yolo_detector as yd

    built = seed_dataset(data_dir, tmp_path / "raw", n_images=10)
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"stand-in")
    _BatchRecordingSegDetector.calls = []
    monkeypatch.setattr(yd, "YoloDetector", _BatchRecordingSegDetector)
    from app.workflows.evaluate import evaluate_run

    with Registry(data_dir, sync_on_write=False) as reg:
        run_id = reg.create_run(model="yolo11n-seg.yaml", task="segment", dataset_id=built["dataset_id"],
                                dataset_name="shapes", dataset_version="1.0")
        reg.update_run(run_id, status="finished", best_weights=str(weights))
        report = evaluate_run(reg, data_dir, run_id, split="val")
    assert report["images"] == 2 and "segm" in report and report["bbox"]["map50"] == pytest.approx(1.0)
    assert _BatchRecordingSegDetector.calls == [1, 1]
