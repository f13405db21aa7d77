"""How good were the auto-labels: proposals matched to the validated set, per class (pure numpy).

Boxes are ``xyxy`` absolute pixels of one image (x = column, y = row). For each image and class,
the detector's proposals (their category and box as proposed, before any reviewer edit) are
matched one-to-one to the validated objects of that class (approved, with their final category
and box) by the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``): the most pairs
at IoU >= ``iou_thr``, and among those the highest total IoU; a matched
pair with IoU >= ``iou_thr`` is a true positive, an unmatched proposal a false positive, an
unmatched validated object a false negative (a box the detector missed, or whose class it got
wrong). A relabelled object is thus a false positive of the proposed class and a false negative
of the final one.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata

from pipeline.mask_ops import box_iou_matrix


@dataclass
class Box:
    """One box of an image: ``xyxy`` absolute pixels, its class, and (proposals) a confidence."""

    image: str
    category: str
    xyxy: tuple[float, float, float, float]
    confidence: float | None = None
    key: str | None = None


def match_image(proposals: Sequence[Box], truth: Sequence[Box], iou_thr: float = 0.5) -> tuple[list[bool], int]:
    """Matches one image's proposals to its validated boxes, class by class.

    Returns:
        (one flag per proposal: True = true positive, number of validated boxes left unmatched).
    """
    hit = [False] * len(proposals)
    missed = 0
    classes = {p.category for p in proposals} | {t.category for t in truth}
    for c in sorted(classes):
        pi = [i for i, p in enumerate(proposals) if p.category == c]
        ti = [j for j, t in enumerate(truth) if t.category == c]
        if not pi or not ti:
            missed += len(ti)
            continue
        iou = box_iou_matrix(np.array([proposals[i].xyxy for i in pi], np.float32),
                             np.array([truth[j].xyxy for j in ti], np.float32))
        # most matches at or above the threshold first, then the highest total IoU among those
        rows, cols = linear_sum_assignment(np.where(iou >= iou_thr, -(1.0 + iou), 0.0))
        matched = 0
        for r, k in zip(rows, cols, strict=True):
            if iou[r, k] >= iou_thr:
                hit[pi[r]] = True
                matched += 1
        missed += len(ti) - matched
    return hit, missed


def auroc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    """Area under the ROC curve of ``scores`` separating positives from negatives (ties count
    half, Mann-Whitney U); None when either side is empty."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(positive, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f1 = 2 * p * r / (p + r) if p is not None and r is not None and p + r > 0 else (0.0 if p is not None and r is not None else None)
    return {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": f1}


def evaluate(
    proposals: Iterable[Box], truth: Iterable[Box], *, iou_thr: float = 0.5,
    thresholds: Sequence[float] = (0.25, 0.5, 0.75, 0.9),
) -> dict:
    """Per-class and overall precision/recall/F1 at ``iou_thr``, AUROC of the confidence
    separating right (true positive) from wrong proposals, and what a confidence threshold
    would keep.

    Args:
        proposals: the detector's boxes (category and box as proposed, with confidence).
        truth: the validated boxes (final category and box).
        iou_thr: the IoU a match needs (0.5).
        thresholds: confidences for the "keep only proposals at or above t" table.

    Returns:
        ``{"per_class": {name: {tp, fp, fn, precision, recall, f1}}, "overall": {...},
        "macro_f1", "auroc", "proposals", "validated", "images", "thresholds": [{threshold,
        kept, precision, recall}], "hits": {key: bool}}`` (precision etc. None when undefined).
    """
    if not 0.0 < float(iou_thr) <= 1.0:
        raise ValueError(f"iou_thr: expected a value in (0, 1], got {iou_thr}")
    by_img_p: dict[str, list[Box]] = defaultdict(list)
    by_img_t: dict[str, list[Box]] = defaultdict(list)
    for p in proposals:
        by_img_p[p.image].append(p)
    for t in truth:
        by_img_t[t.image].append(t)
    tp: dict[str, int] = defaultdict(int)
    fp: dict[str, int] = defaultdict(int)
    fn: dict[str, int] = defaultdict(int)
    scored: list[tuple[float, bool]] = []
    hits: dict[str, bool] = {}
    for img in sorted(set(by_img_p) | set(by_img_t)):
        props, gts = by_img_p.get(img, []), by_img_t.get(img, [])
        flags, _ = match_image(props, gts, iou_thr)
        matched_per_class: dict[str, int] = defaultdict(int)
        for p, ok in zip(props, flags, strict=True):
            (tp if ok else fp)[p.category] += 1
            matched_per_class[p.category] += int(ok)
            if p.confidence is not None:
                scored.append((float(p.confidence), ok))
            if p.key is not None:
                hits[p.key] = ok
        for c in {t.category for t in gts}:
            fn[c] += sum(1 for t in gts if t.category == c) - matched_per_class.get(c, 0)
    classes = sorted(set(tp) | set(fp) | set(fn))
    per_class = {c: _prf(tp[c], fp[c], fn[c]) for c in classes}
    f1s = [v["f1"] for v in per_class.values() if v["f1"] is not None]
    n_truth = sum(len(v) for v in by_img_t.values())
    total_tp = sum(tp.values())
    table = []
    for thr in thresholds:
        kept = [ok for s, ok in scored if s >= thr]
        k_tp = sum(kept)
        table.append({"threshold": float(thr), "kept": len(kept), "precision": k_tp / len(kept) if kept else None,
                      "recall": k_tp / n_truth if n_truth else None})
    return {
        "per_class": per_class,
        "overall": _prf(total_tp, sum(fp.values()), sum(fn.values())),
        "macro_f1": float(np.mean(f1s)) if f1s else None,
        "auroc": auroc([s for s, _ in scored], [ok for _, ok in scored]),
        "proposals": sum(len(v) for v in by_img_p.values()),
        "validated": n_truth,
        "images": len(set(by_img_p) | set(by_img_t)),
        "thresholds": table,
        "hits": hits,
    }
