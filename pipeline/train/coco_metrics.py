"""Detection / segmentation quality: pycocotools' COCOeval, per-class AP, PR curves, a confusion matrix.

Conventions: ground truth is a COCO dataset dict (``images``, ``annotations`` with ``bbox`` =
``[x, y, w, h]`` absolute pixels, ``categories``); results are COCO result dicts (``image_id``,
``category_id``, ``bbox`` ``[x, y, w, h]``, ``score``, and ``segmentation`` as compressed RLE for
``segm``). APs are fractions in [0, 1] (COCO's 101-point interpolation, area "all", 100
detections per image); a class with no ground truth in the split has AP ``None``.
"""
from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

IOU_TYPES = ("bbox", "segm")


def _coco(gt: dict) -> Any:
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"info": {}, "licenses": [], **gt}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_evaluate(gt: dict, results: list[dict], iou_type: str = "bbox") -> dict:
    """COCOeval of ``results`` against ``gt``.

    Args:
        gt: the COCO ground-truth dict (one split).
        results: COCO result dicts (see the module doc); may be empty.
        iou_type: ``"bbox"`` or ``"segm"``.

    Returns:
        ``{"iou_type", "map" (AP@[.5:.95]), "map50", "map75", "stats" (COCOeval's 12 numbers),
        "per_class": {name: {"ap", "ap50", "gt"}}, "pr_curves": {name: {"recall": [...],
        "precision": [...]}} (IoU 0.5; precision -1 where undefined dropped), "detections"}``.

    Raises:
        ValueError: an unknown iou_type or a result for an image/category not in ``gt``.
    """
    from pycocotools.cocoeval import COCOeval

    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type: expected one of {IOU_TYPES}, got {iou_type!r}")
    image_ids = {img["id"] for img in gt.get("images", [])}
    cat_names = {c["id"]: c["name"] for c in gt.get("categories", [])}
    for r in results:
        if r["image_id"] not in image_ids or r["category_id"] not in cat_names:
            raise ValueError(f"result for image {r['image_id']} / category {r['category_id']}: expected ids present "
                             f"in the ground truth, got unknown ones; predict on the same split's images")
    gt_counts = {cid: 0 for cid in cat_names}
    for a in gt.get("annotations", []):
        gt_counts[a["category_id"]] = gt_counts.get(a["category_id"], 0) + 1
    per_class = {cat_names[c]: {"ap": None, "ap50": None, "gt": gt_counts[c]} for c in cat_names}
    empty = {"iou_type": iou_type, "map": 0.0, "map50": 0.0, "map75": 0.0, "stats": [0.0] * 12,
             "per_class": per_class, "pr_curves": {}, "detections": len(results)}
    if not gt.get("annotations"):
        raise ValueError("ground truth: expected at least one annotation in the split, got none; "
                         "evaluate on a split with labelled objects (--split val / train)")
    if not results:
        for c in per_class.values():
            if c["gt"]:
                c.update(ap=0.0, ap50=0.0)
        return empty
    coco_gt = _coco(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes([dict(r) for r in results])
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # [T iou thresholds, R recall points, K classes, A areas, M max dets]
    recall_points = np.asarray(ev.params.recThrs, dtype=float)
    curves: dict[str, dict[str, list[float]]] = {}
    for k, cid in enumerate(ev.params.catIds):
        name = cat_names[cid]
        if not gt_counts.get(cid):
            continue
        p_all = precision[:, :, k, 0, -1]
        p50 = precision[0, :, k, 0, -1]
        valid = p_all[p_all > -1]
        per_class[name]["ap"] = float(valid.mean()) if valid.size else 0.0
        per_class[name]["ap50"] = float(p50[p50 > -1].mean()) if (p50 > -1).any() else 0.0
        ok = p50 > -1
        curves[name] = {"recall": recall_points[ok].round(4).tolist(), "precision": p50[ok].round(4).tolist()}
    stats = [max(0.0, float(s)) for s in ev.stats]  # -1 = "no such objects" -> 0 for display
    return {"iou_type": iou_type, "map": stats[0], "map50": stats[1], "map75": stats[2], "stats": stats,
            "per_class": per_class, "pr_curves": curves, "detections": len(results)}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4), absolute pixels."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def confusion_matrix(
    pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], n_classes: int, *, iou: float = 0.5,
) -> np.ndarray:
    """Counts of (true class, predicted class), with "background" as the last row and column.

    Per image, predictions are matched to ground-truth boxes one-to-one, class-agnostic, by
    maximum total IoU (Hungarian, ``scipy.optimize.linear_sum_assignment``) among pairs with
    IoU >= ``iou``. A matched pair counts at ``[true, predicted]`` (the diagonal when the class
    is right); an unmatched ground truth at ``[true, background]`` (missed); an unmatched
    prediction at ``[background, predicted]`` (false positive).

    Args:
        pairs: per image ``(gt_xyxy (G, 4), gt_class (G,), pred_xyxy (P, 4), pred_class (P,))``,
            absolute pixels; classes are indexes in ``[0, n_classes)``.
        n_classes: number of classes.
        iou: the matching threshold.

    Returns:
        (n_classes + 1, n_classes + 1) int64 matrix; rows = true class, columns = predicted.
    """
    from scipy.optimize import linear_sum_assignment

    bg = n_classes
    m = np.zeros((n_classes + 1, n_classes + 1), dtype=np.int64)
    for gt_xyxy, gt_cls, pr_xyxy, pr_cls in pairs:
        gt_cls = np.asarray(gt_cls, dtype=np.int64)
        pr_cls = np.asarray(pr_cls, dtype=np.int64)
        matched_g: set[int] = set()
        matched_p: set[int] = set()
        if len(gt_cls) and len(pr_cls):
            ious = box_iou(gt_xyxy, pr_xyxy)
            rows, cols = linear_sum_assignment(-np.where(ious >= iou, ious, 0.0))
            for g, p in zip(rows, cols, strict=True):
                if ious[g, p] >= iou:
                    m[gt_cls[g], pr_cls[p]] += 1
                    matched_g.add(int(g))
                    matched_p.add(int(p))
        for g, c in enumerate(gt_cls):
            if g not in matched_g:
                m[c, bg] += 1
        for p, c in enumerate(pr_cls):
            if p not in matched_p:
                m[bg, c] += 1
    return m
