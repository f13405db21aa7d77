"""Evaluate a training run: its best weights predict one split of the dataset version it was
trained on; pycocotools' COCOeval scores them against a COCO export of the same version.

Written under ``<data>/runs/<run_id>/eval/``:

* ``coco_gt/``: the COCO export (ground truth; reused by later evaluations);
* ``<split>/metrics.json``: everything below as numbers;
* ``<split>/confusion_matrix.png``: rows = true class, columns = predicted, last = background
  (IoU 0.5, predictions with score >= 0.25, one-to-one Hungarian matching);
* ``<split>/pr_curves_bbox.png`` (and ``pr_curves_segm.png`` for segmentation runs): precision
  against recall at IoU 0.5 per class.

Metrics: ``bbox`` (and ``segm`` for segmentation models) with ``map`` (AP@[.5:.95]), ``map50``,
``map75``, ``per_class`` {name: {ap, ap50, gt}}. Predictions keep scores down to ``conf``
(0.001 by default, as COCO mAP expects: a higher floor cuts the PR curve short). The summary is
also stored in the run's ``metadata["eval"][split]`` for the Train tab.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

CONFUSION_CONF = 0.25


def _gt_export(reg: Any, run: dict, folder: Path) -> Path:
    """The COCO ground truth of the run's dataset, reused only while no object changed since it
    was written (the manifest's ``registry_state``): a label fixed in Review counts at once."""
    from registry.export import export_dataset
    from registry.runs import objects_state

    manifest = folder / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text(encoding="utf-8"))
        if ((m.get("dataset") or {}).get("dataset_id") == run["dataset_id"] and m.get("task") == run["task"]
                and m.get("registry_state") == objects_state(reg.connection)):
            return folder
    if not run.get("dataset_id"):
        raise ValueError(f"run {run['run_id']}: expected the dataset it was trained on, got none recorded")
    export_dataset(reg, run["dataset_id"], folder, "coco", run["task"], overwrite=folder.exists())
    return folder


def _results(det: Any, image_id: int, cat_ids: list[int | None], with_masks: bool) -> list[dict]:
    from pycocotools import mask as mask_utils

    out = []
    for i in range(len(det)):
        cid = cat_ids[int(det.class_id[i])]
        if cid is None:
            continue
        x0, y0, x1, y1 = (float(v) for v in det.xyxy[i])
        r = {"image_id": image_id, "category_id": cid, "bbox": [x0, y0, x1 - x0, y1 - y0],
             "score": float(det.confidence[i])}
        if with_masks and det.mask is not None:
            rle = mask_utils.encode(np.asfortranarray(det.mask[i].astype(np.uint8)))
            r["segmentation"] = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
        out.append(r)
    return out


def evaluate_run(reg: Any, data_dir: Path, run_id: str, *, split: str = "test", conf: float = 0.001,
                 device: str | None = None) -> dict:
    """COCOeval of a run's best weights on ``split``; writes the files listed in the module doc.

    Returns:
        ``{"run_id", "split", "images", "bbox": {...}, "segm": {...} (segment runs), "confusion_matrix":
        {"names": [... , "background"], "matrix": [[...]]}, "files": {name: path}}``.

    Raises:
        ValueError: unknown run, no best weights, or a split without labelled images.
    """
    from app.workflows.train import run_dir
    from pipeline.train.coco_metrics import coco_evaluate, confusion_matrix
    from pipeline.train.plots import plot_confusion_matrix, plot_pr_curves
    from pipeline.train.yolo_detector import YoloDetector

    run = reg.get_run(run_id)
    weights = run.get("best_weights")
    if not weights or not Path(weights).is_file():
        raise ValueError(f"run {run_id}: expected best weights on disk, got {weights or 'none'} "
                         f"(status {run['status']}); train it first (launch.py train)")
    out = run_dir(data_dir, run_id) / "eval"
    gt_dir = _gt_export(reg, run, out / "coco_gt")
    gt_file = gt_dir / "annotations" / f"instances_{split}.json"
    if not gt_file.is_file():
        have = sorted(p.stem.removeprefix("instances_") for p in (gt_dir / "annotations").glob("instances_*.json"))
        raise ValueError(f"--split: expected a split of {run['dataset_name']} v{run['dataset_version']} with images, "
                         f"got {split!r}; available: {have}")
    gt = json.loads(gt_file.read_text(encoding="utf-8"))
    if not gt.get("annotations"):
        raise ValueError(f"--split {split}: expected labelled objects in it, got none; try --split val")
    names = [c["name"] for c in gt["categories"]]
    by_name = {c["name"].casefold(): c["id"] for c in gt["categories"]}
    params = run.get("params") or {}
    detector = YoloDetector(weights, version=f"run:{run_id}", device=device or params.get("device"),
                            imgsz=int(params.get("imgsz") or 640))
    cat_ids = [by_name.get(n.casefold()) for n in detector.names]
    segm = run["task"] == "segment" and detector.task == "segment"
    images = gt["images"]
    paths = [gt_dir / "images" / split / img["file_name"] for img in images]
    results: list[dict] = []
    pairs = []
    cls_index = {c["id"]: i for i, c in enumerate(gt["categories"])}
    gt_by_image: dict[int, list[dict]] = {}
    for a in gt["annotations"]:
        gt_by_image.setdefault(a["image_id"], []).append(a)
    # Segmentation: one image per predict call. At conf 0.001 the model returns up to 300 masks per
    # image at full resolution (~620 MB of uint8 at 1080p); a whole predict batch would hold 16x that.
    dets = ((d for p in paths for d in detector.predict([p], conf=conf, masks=True)) if segm
            else detector.predict(paths, conf=conf, masks=False))
    for img, det in zip(images, dets, strict=True):
        results.extend(_results(det, img["id"], cat_ids, segm))
        anns = gt_by_image.get(img["id"], [])
        g_xyxy = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                           for a in anns], dtype=np.float64).reshape(-1, 4)
        keep = [i for i in range(len(det)) if det.confidence[i] >= CONFUSION_CONF and cat_ids[det.class_id[i]] is not None]
        pairs.append((g_xyxy, [cls_index[a["category_id"]] for a in anns], det.xyxy[keep],
                      [cls_index[cat_ids[det.class_id[i]]] for i in keep]))
    report: dict[str, Any] = {"run_id": run_id, "split": split, "images": len(images), "weights": str(weights),
                              "conf": conf, "files": {}}
    split_dir = out / split
    split_dir.mkdir(parents=True, exist_ok=True)
    for iou_type in ("bbox", "segm") if segm else ("bbox",):
        res = coco_evaluate(gt, results, iou_type)
        report[iou_type] = res
        png = plot_pr_curves(res["pr_curves"], res["per_class"], split_dir / f"pr_curves_{iou_type}.png",
                             title=f"{run_id} · {split}\n{iou_type} precision-recall (IoU 0.5)")
        report["files"][f"pr_curves_{iou_type}"] = str(png)
    matrix = confusion_matrix(pairs, len(names))
    report["confusion_matrix"] = {"names": [*names, "background"], "matrix": matrix.tolist(), "iou": 0.5,
                                  "conf": CONFUSION_CONF}
    report["files"]["confusion_matrix"] = str(plot_confusion_matrix(
        matrix, names, split_dir / "confusion_matrix.png", title=f"{run_id} · {split}\nconfusion matrix (IoU 0.5, score >= {CONFUSION_CONF})"))
    metrics_file = split_dir / "metrics.json"
    report["files"]["metrics"] = str(metrics_file)
    metrics_file.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    meta = dict(run.get("metadata") or {})
    meta.setdefault("eval", {})[split] = {k: report[k] for k in ("images", "files")} | {
        t: {"map": report[t]["map"], "map50": report[t]["map50"],
            "per_class": {n: c["ap50"] for n, c in report[t]["per_class"].items()}}
        for t in ("bbox", "segm") if t in report}
    reg.update_run(run_id, metadata=meta)
    return report


def summary_lines(report: dict) -> list[str]:
    """Human-readable lines: mAP per IoU type, per-class AP, the files written."""
    lines = [f"{report['run_id']} on {report['split']} ({report['images']} images):"]
    for t in ("bbox", "segm"):
        if t in report:
            r = report[t]
            lines.append(f"  {t}: mAP {r['map']:.3f}  mAP50 {r['map50']:.3f}  mAP75 {r['map75']:.3f}  "
                         f"({r['detections']} detections)")
            for name, c in r["per_class"].items():
                ap = "n/a" if c["ap"] is None else f"{c['ap']:.3f}"
                ap50 = "n/a" if c["ap50"] is None else f"{c['ap50']:.3f}"
                lines.append(f"    {name:20s} AP {ap}  AP50 {ap50}  ({c['gt']} objects)")
    cm = report["confusion_matrix"]
    lines.append("  confusion matrix (rows true, columns predicted): " + ", ".join(cm["names"]))
    lines.extend("    " + " ".join(f"{v:4d}" for v in row) for row in cm["matrix"])
    lines.extend(f"  {k}: {v}" for k, v in report["files"].items())
    return lines
