"""bfloat16 vs float32 on the same inputs, for ``bench pipeline`` (``fidelity`` in its JSON).

``capture`` runs one loaded precision on fixed inputs and keeps the outputs (numpy, not JSON);
``compare`` reads two captures (float32 = reference) and reports agreement:

- ``florence``: teacher-forced decoder logits over the scene's scripted output (random
  weights emit no meaningful boxes, so logits are compared): max |diff|, mean |diff| relative to
  the reference's std, and the fraction of steps whose arg-max token agrees.
- ``autolabel``: the scripted auto-label run's boxes matched one-to-one (Hungarian on IoU,
  ``scipy.optimize.linear_sum_assignment``): count of each and min / mean IoU; masks of matched
  objects: min / mean IoU; embeddings of matched objects: min cosine.
- ``sam2``: masks of 5 box prompts and of a 3-click refinement, min / mean IoU; low-res logits
  max |diff| and the fraction of low-res pixels whose sign differs.
- ``dinov2``: cosine between the two precisions' vectors of the same 5 crops (min / mean).

Coordinates: boxes xyxy absolute pixels; masks (N, H, W) bool.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy -> (N, M) IoU."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def capture(labeler: Any, autolabel_result: Any, scripted_ids: Callable[[Any, np.ndarray, list[str]], list[int]],
            scene: Callable[..., tuple[np.ndarray, np.ndarray, list[str]]]) -> dict[str, Any]:
    """One precision's outputs on the fixed inputs (see the module docstring)."""
    import torch

    det, seg, emb = labeler.detector, labeler.segmenter, labeler.embedder
    image, boxes, labels = scene(700)
    classes = sorted(set(labels))
    inputs = det.preprocess(image, "<CAPTION_TO_PHRASE_GROUNDING>" + ". ".join(classes) + ".")
    start = det.model.config.text_config.decoder_start_token_id
    ids = torch.tensor([[start, *scripted_ids(det, boxes, labels)]])
    with torch.inference_mode():
        logits = det.model(**inputs, decoder_input_ids=ids).logits[0].float().numpy()
    seg.set_image(image)
    box_masks, _ = seg.predict_boxes(boxes)
    b = boxes[0]
    pts = np.array([(b[:2] + b[2:]) / 2, b[:2] + 0.25 * (b[2:] - b[:2]), b[2:] + 15], np.float32)
    first = seg.predict_points(pts[:1], np.array([1]))
    click = seg.predict_points(pts, np.array([1, 1, 0]), mask_input=first.low_res_logits, multimask=False)
    crop_masks = np.zeros((len(boxes), *image.shape[:2]), bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        crop_masks[i, y0:y1, x0:x1] = True
    return {
        "florence_logits": logits,
        "box_masks": box_masks,
        "click_mask": click.mask,
        "click_logits": click.low_res_logits,
        "vectors": emb.embed(image, boxes, crop_masks),
        "auto_xyxy": np.asarray(autolabel_result.xyxy, np.float32),
        "auto_masks": np.asarray(autolabel_result.mask, bool),
        "auto_vectors": np.asarray(autolabel_result.data["embedding"], np.float32),
    }


def compare(ref: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Agreement of ``other`` with the reference capture ``ref`` (float32)."""
    from scipy.optimize import linear_sum_assignment

    la, lb = ref["florence_logits"], other["florence_logits"]
    diff = np.abs(la - lb)
    florence = {
        "steps": int(len(la)),
        "logits_max_abs_diff": float(diff.max()),
        "logits_mean_abs_diff_vs_std": float(diff.mean() / max(float(la.std()), 1e-12)),
        "argmax_agreement": float(np.mean(la.argmax(-1) == lb.argmax(-1))),
    }
    ious = _box_iou(ref["auto_xyxy"], other["auto_xyxy"]) if len(ref["auto_xyxy"]) and len(other["auto_xyxy"]) else np.zeros((0, 0))
    rows, cols = linear_sum_assignment(-ious) if ious.size else (np.zeros(0, int), np.zeros(0, int))
    matched = ious[rows, cols] if ious.size else np.zeros(0)
    mask_ious = [_iou(ref["auto_masks"][r], other["auto_masks"][c]) for r, c in zip(rows, cols, strict=True)]
    cos = [float(ref["auto_vectors"][r] @ other["auto_vectors"][c]) for r, c in zip(rows, cols, strict=True)]
    autolabel = {
        "objects_reference": int(len(ref["auto_xyxy"])), "objects": int(len(other["auto_xyxy"])),
        "matched": int(len(matched)),
        "box_iou_min": float(matched.min()) if len(matched) else 0.0,
        "box_iou_mean": float(matched.mean()) if len(matched) else 0.0,
        "mask_iou_min": float(min(mask_ious)) if mask_ious else 0.0,
        "mask_iou_mean": float(np.mean(mask_ious)) if mask_ious else 0.0,
        "embedding_cosine_min": float(min(cos)) if cos else 0.0,
    }
    box_ious = [_iou(a, b) for a, b in zip(ref["box_masks"], other["box_masks"], strict=True)]
    ca, cb = ref["click_logits"], other["click_logits"]
    sam2 = {
        "box_mask_iou_min": float(min(box_ious)), "box_mask_iou_mean": float(np.mean(box_ious)),
        "click_mask_iou": _iou(ref["click_mask"], other["click_mask"]),
        "click_logits_max_abs_diff": float(np.abs(ca - cb).max()),
        "click_logits_sign_flip_fraction": float(np.mean((ca > 0) != (cb > 0))),
    }
    vc = np.sum(ref["vectors"] * other["vectors"], axis=1)
    dinov2 = {"cosine_min": float(vc.min()), "cosine_mean": float(vc.mean())}
    return {"florence": florence, "autolabel": autolabel, "sam2": sam2, "dinov2": dinov2}
