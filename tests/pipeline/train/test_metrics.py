"""Pure training/evaluation logic: metric names, model resolution, COCOeval summaries, the
confusion matrix, class selection for the run detector."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.train.coco_metrics import box_iou, coco_evaluate, confusion_matrix
from pipeline.train.yolo_detector import select_classes
from pipeline.train.yolo_train import best_metrics, normalize_metrics, resolve_model
from pipeline.types import Detections


def _gt() -> dict:
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 80},
                   {"id": 2, "file_name": "b.png", "width": 100, "height": 80}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 9, "name": "bird"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 30, 20], "area": 600, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [50, 40, 40, 30], "area": 1200, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [0, 0, 20, 20], "area": 400, "iscrowd": 0},
        ],
    }


def test_normalize_metrics_renames_ultralytics_keys():
    raw = {"train/box_loss": 1.5, "train/seg_loss": "2.0", "metrics/mAP50(B)": 0.4, "metrics/mAP50-95(M)": 0.2,
           "val/box_loss": 1.7, "lr/pg0": 0.01, "fitness": float("nan"), "note": "text"}
    assert normalize_metrics(raw) == {"box_loss": 1.5, "seg_loss": 2.0, "box_map50": 0.4, "mask_map50_95": 0.2,
                                      "val/box_loss": 1.7, "lr/pg0": 0.01}
    epochs = [{"epoch": 1, "fitness": 0.1, "box_map50": 0.2, "lr/pg0": 0.01}, {"epoch": 2, "fitness": 0.3, "box_map50": 0.5}]
    assert best_metrics(epochs, {"box_map50": 0.55}) == {"fitness": 0.3, "box_map50": 0.55, "best_epoch": 2}
    assert best_metrics([], None) == {}


def test_resolve_model_never_downloads(tmp_path):
    with pytest.raises(ValueError, match=r"expected the checkpoint 'yolo11x-nothere.pt' on disk.*yolo11x-nothere.yaml"):
        resolve_model("yolo11x-nothere.pt", [tmp_path])
    with pytest.raises(ValueError, match="expected a .pt checkpoint or a .yaml"):
        resolve_model("yolo11n.onnx")
    with pytest.raises(ValueError, match="architecture name"):
        resolve_model("notamodel-zz.yaml")
    (tmp_path / "mine.pt").write_bytes(b"x")
    assert resolve_model("mine.pt", [tmp_path]) == str((tmp_path / "mine.pt").resolve())
    assert resolve_model("yolo11n-seg.yaml") == "yolo11n-seg.yaml"


def test_coco_evaluate_perfect_and_wrong_class():
    gt = _gt()
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
               for a in gt["annotations"]]
    res = coco_evaluate(gt, perfect, "bbox")
    assert res["map"] == pytest.approx(1.0) and res["map50"] == pytest.approx(1.0)
    assert res["per_class"]["cat"] == {"ap": pytest.approx(1.0), "ap50": pytest.approx(1.0), "gt": 2}
    assert res["per_class"]["bird"] == {"ap": None, "ap50": None, "gt": 0}  # no ground truth
    assert set(res["pr_curves"]) == {"cat", "dog"} and len(res["pr_curves"]["cat"]["recall"]) == 101
    wrong = [dict(r, category_id=3) for r in perfect]  # the dog called a cat
    res = coco_evaluate(gt, wrong, "bbox")
    assert res["per_class"]["dog"]["ap"] == 0.0 and res["per_class"]["cat"]["ap"] < 1.0
    assert 0.0 < res["map"] < 1.0
    empty = coco_evaluate(gt, [], "bbox")
    assert empty["map"] == 0.0 and empty["per_class"]["dog"]["ap"] == 0.0
    with pytest.raises(ValueError, match="unknown ones"):
        coco_evaluate(gt, [dict(perfect[0], image_id=99)], "bbox")


def test_confusion_matrix_counts_hits_confusions_misses_and_false_positives():
    gt_xyxy = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], float)
    pred = np.array([[1, 1, 10, 10], [20, 20, 40, 41], [70, 70, 80, 80]], float)
    m = confusion_matrix([(gt_xyxy, [0, 1, 1], pred, [0, 0, 1])], 2)
    assert m.tolist() == [[1, 0, 0],   # cat found as cat
                          [1, 0, 1],   # a dog called cat; a dog missed
                          [0, 1, 0]]   # a dog predicted on background
    assert box_iou(gt_xyxy[:1], gt_xyxy[:1])[0, 0] == pytest.approx(1.0)


def test_select_classes_keeps_requested_classes_case_insensitive_with_synonyms():
    det = Detections(xyxy=[[0, 0, 5, 5], [1, 1, 6, 6], [2, 2, 7, 7]], confidence=[0.9, 0.8, 0.7], class_id=[0, 1, 2],
                     class_names=["Cat", "dog", "bird"], data={"det_score": np.array([0.9, 0.8, 0.7], np.float32)})
    out = select_classes(det, ["puppy", "cat"], {"puppy": ["DOG"]})
    assert out.class_names == ["puppy", "cat"] and out.labels == ["cat", "puppy"]
    assert out.confidence.tolist() == pytest.approx([0.9, 0.8]) and len(out.data["det_score"]) == 2
