"""``evaluate --auto-labels``: how good were the auto-labels, judged by what reviewers validated.

Every object is one of:

- a **proposal**: made by a detector (``detection_model`` set and not ``"manual"``, an import
  or a tracker gap-fill, see :data:`NOT_DETECTOR`; with ``detection_model=NAME`` only that
  detector's), reviewed (approved or rejected). Its proposed
  class and box are what the detector said: ``metadata.proposed_category`` /
  ``metadata.proposed_bbox_xywh`` (recorded by the registry at the first relabel / box change)
  or else the current ones.
- a **validated** (ground-truth) box: every approved object, with its final class and box,
  hand-drawn and imported ones included.

Only images (a source, or a video frame) with at least one proposal take part, so a hand-drawn
box on an image the detector labeled is a miss, while images labeled by hand alone say nothing
about the detector. Pending objects are left out (their truth is unknown) and counted.

Outcomes per proposal: approved as is, relabelled (class changed), box edited, rejected; boxes
added by hand (or imported) on those images are the misses. Metrics (see :mod:`pipeline.al.autolabel_metrics`): precision,
recall and F1 per class at IoU 0.5 with Hungarian matching, and the AUROC of the stored
(derived) confidence separating right from wrong proposals. Boxes are ``bbox_xywh`` absolute
pixels in the registry, turned into ``xyxy`` here.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

MANUAL = "manual"
#: ``detection_model`` values that are not a detector's proposal: hand-drawn boxes, imported
#: annotations (COCO/YOLO leave it empty, MOT files say "mot-import") and tracker gap-fills.
NOT_DETECTOR = frozenset({"", MANUAL, "mot-import", "interpolated"})


def is_detector_output(model: str | None) -> bool:
    """Whether an object with this ``detection_model`` is an auto-label (a detector's proposal)."""
    return bool(model) and model not in NOT_DETECTOR and not str(model).startswith("import")


def _xyxy(xywh) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in xywh)
    return (x, y, x + w, y + h)


#: A box that kept this much IoU with the proposal counts as approved as is (a refined mask
#: moves its tight box by a pixel or two; that is not a correction of the detector).
BOX_KEPT_IOU = 0.95


def _iou_xywh(a, b) -> float:
    ax0, ay0, aw, ah = (float(v) for v in a)
    bx0, by0, bw, bh = (float(v) for v in b)
    iw = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    ih = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    union = aw * ah + bw * bh - iw * ih
    return iw * ih / union if union > 0 else 0.0


def outcome_of(obj: dict) -> str:
    """"approved" (as is), "relabelled", "box edited" (IoU with the proposed box under
    :data:`BOX_KEPT_IOU`), "rejected" or "pending" for a detector's object."""
    status = obj["validation_status"]
    if status != "approved":
        return status
    meta = obj.get("metadata") or {}
    proposed = meta.get("proposed_category")
    if proposed is not None and str(proposed).casefold() != str(obj["category"]).casefold():
        return "relabelled"
    box = meta.get("proposed_bbox_xywh")
    if box is not None and _iou_xywh(box, obj["bbox_xywh"]) < BOX_KEPT_IOU:
        return "box edited"
    return "approved"


def evaluate_auto_labels(reg: Any, *, detection_model: str | None = None, project: str | None = None,
                         iou_thr: float = 0.5, batch_size: int = 2000) -> dict:
    """Scores the detector's reviewed proposals against the validated objects (see module doc).

    Args:
        reg: a ``registry.facade.Registry``.
        detection_model: only this detector's objects are proposals (None: every non-manual one).
        project: only this project's objects.
        iou_thr: the IoU a proposal needs to match a validated box (0.5).
        batch_size: objects read per page.

    Returns:
        The metrics of :func:`pipeline.al.autolabel_metrics.evaluate` (without ``hits``) plus
        ``outcomes`` (counts: approved, relabelled, box edited, rejected, added by hand,
        pending), ``detection_models`` (proposal counts per model) and the arguments.

    Raises:
        ValueError: ``detection_model`` names no stored object (lists the stored ones), or no
            proposal has been reviewed yet.
    """
    from pipeline.al.autolabel_metrics import Box, evaluate  # scipy: only when evaluating

    proposals: list[Box] = []
    truth: list[Box] = []
    outcomes: Counter = Counter()
    models: Counter = Counter()
    all_models: Counter = Counter()
    labeled_images: set[str] = set()
    manual_on: list[str] = []
    for obj in reg.iter_objects(batch_size=batch_size, project=project or None):
        image = f"{obj['source_id']}|{obj.get('frame_id') or ''}"
        model = obj.get("detection_model") or ""
        all_models[model or "(none: imported)"] += 1
        is_proposal = is_detector_output(model) and (detection_model is None or model == detection_model)
        status = obj["validation_status"]
        if is_proposal:
            labeled_images.add(image)
            outcome = outcome_of(obj)
            outcomes[outcome] += 1
            if status == "pending":
                continue
            models[model] += 1
            meta = obj.get("metadata") or {}
            proposals.append(Box(image, str(meta.get("proposed_category") or obj["category"]),
                                 _xyxy(meta.get("proposed_bbox_xywh") or obj["bbox_xywh"]), obj.get("confidence"),
                                 obj["object_id"]))
        if status == "approved":
            truth.append(Box(image, obj["category"], _xyxy(obj["bbox_xywh"])))
            if not is_detector_output(model):
                manual_on.append(image)
    if detection_model is not None and detection_model not in all_models:
        have = ", ".join(f"{m} ({c})" for m, c in all_models.most_common()) or "none"
        raise ValueError(f"--detection-model: no objects made by {detection_model!r}; stored detection models: {have}")
    if not proposals:
        raise ValueError(f"no reviewed auto-labels to evaluate ({outcomes.get('pending', 0)} pending): approve, "
                         "reject or relabel some in the Review tab first")
    truth = [t for t in truth if t.image in labeled_images]
    result = evaluate(proposals, truth, iou_thr=iou_thr)
    result.pop("hits")
    outcomes["added by hand"] = sum(1 for img in manual_on if img in labeled_images)
    order = ("approved", "relabelled", "box edited", "rejected", "added by hand", "pending")
    result.update(outcomes={k: int(outcomes.get(k, 0)) for k in order}, detection_models=dict(models),
                  detection_model=detection_model, project=project, iou_threshold=float(iou_thr))
    return result


def _pct(v: float | None) -> str:
    return "   -  " if v is None else f"{100 * v:5.1f}%"


def summary_lines(result: dict) -> list[str]:
    """The result as a short printed report (counts, per-class table, AUROC, thresholds)."""
    o = result["outcomes"]
    lines = [
        f"auto-labels of {', '.join(f'{m} ({c})' for m, c in result['detection_models'].items())}: "
        f"{result['proposals']} reviewed proposal(s), {result['validated']} validated box(es) on {result['images']} image(s)",
        f"outcomes: approved as is {o['approved']} · relabelled {o['relabelled']} · box edited {o['box edited']} · "
        f"rejected {o['rejected']} · added by hand {o['added by hand']} · still pending {o['pending']}",
        f"{'class':<20}{'TP':>5}{'FP':>5}{'FN':>5}{'precision':>11}{'recall':>9}{'F1':>9}",
    ]
    for name, m in [*result["per_class"].items(), ("(all)", result["overall"])]:
        lines.append(f"{name[:19]:<20}{m['tp']:>5}{m['fp']:>5}{m['fn']:>5}{_pct(m['precision']):>11}"
                     f"{_pct(m['recall']):>9}{_pct(m['f1']):>9}")
    auc = result["auroc"]
    lines.append(f"IoU {result['iou_threshold']:.2f}, Hungarian matching · macro F1 {_pct(result['macro_f1']).strip()} · "
                 f"confidence AUROC (right vs wrong) {'-' if auc is None else f'{auc:.3f}'}")
    for t in result["thresholds"]:
        lines.append(f"  keep confidence >= {t['threshold']:.2f}: {t['kept']} proposal(s), precision "
                     f"{_pct(t['precision']).strip()}, recall {_pct(t['recall']).strip()}")
    return lines
