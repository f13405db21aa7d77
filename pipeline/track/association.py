"""Frame-to-track association: a cost matrix from box overlap and appearance, gated, solved
by the Hungarian method (``scipy.optimize.linear_sum_assignment``).

Conventions: boxes are ``xyxy`` float arrays, absolute pixels of the frame, x = column,
y = row. Embeddings are (N, D) float arrays; a row of NaN means "this object has no
embedding". Cost and gate matrices are (T, N): row t = track t, column n = detection n.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.mask_ops import box_iou_matrix

# Stands in for "forbidden" inside the solver: finite (the solver needs a feasible matrix) and
# larger than any real cost (costs lie in [0, 1]).
FORBIDDEN = 1e6


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero, NaN rows stay NaN)."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    if not x.size:
        return x
    with np.errstate(invalid="ignore", divide="ignore"):
        # NaN > 0 is False: without the NaN case a NaN row ("no embedding") became a zero row,
        # i.e. cosine 0 with everything, which the cosine gate then refused
        return np.where(norm > 0, x / norm, np.where(np.isnan(norm), np.nan, 0.0))


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(T, N) cosine similarity of rows of ``a`` (T, D) and ``b`` (N, D); NaN where either row is NaN."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"expected embeddings of one length, got {a.shape[1]} (tracks) and {b.shape[1]} (detections)")
    return normalize_rows(a) @ normalize_rows(b).T


def expand_boxes(boxes: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """xyxy boxes scaled about their centres by ``factor`` (one per box, >= 1 widens)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * np.asarray(factor, dtype=np.float64).reshape(-1, 1)
    return np.concatenate([centre - half, centre + half], axis=1)


def inside_fraction(det_boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(T, N): the share of detection n's area inside region t (xyxy both; 0 for empty boxes)."""
    d = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    r = np.asarray(regions, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(r[:, None, :2], d[None, :, :2])
    rb = np.minimum(r[:, None, 2:], d[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = np.prod(np.clip(d[:, 2:] - d[:, :2], 0, None), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(area[None, :] > 0, inter / area[None, :], 0.0)


def association_cost(
    track_boxes: np.ndarray,
    det_boxes: np.ndarray,
    track_emb: np.ndarray | None,
    det_emb: np.ndarray | None,
    *,
    iou_weight: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cost = w·(1 − IoU) + (1 − w)·(1 − cos) where both sides have an embedding, else 1 − IoU.

    Args:
        track_boxes: (T, 4) xyxy, the tracks' predicted boxes on this frame.
        det_boxes: (N, 4) xyxy, this frame's detections.
        track_emb: (T, D) or None; NaN rows = no embedding.
        det_emb: (N, D) or None; NaN rows = no embedding.
        iou_weight: ``w`` in [0, 1].

    Returns:
        ``(cost, iou, cos)``, each (T, N) float64; ``cos`` is NaN where it was not used.
    """
    iou = box_iou_matrix(track_boxes, det_boxes).astype(np.float64)
    cos = np.full(iou.shape, np.nan)
    if track_emb is not None and det_emb is not None and iou.size:
        cos = cosine_matrix(track_emb, det_emb)
    both = ~np.isnan(cos)
    cost = np.where(both, iou_weight * (1 - iou) + (1 - iou_weight) * (1 - np.nan_to_num(cos)), 1 - iou)
    return cost, iou, cos


def solve_assignment(cost: np.ndarray, allowed: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost one-to-one matching restricted to ``allowed`` (T, N) bool pairs.

    Returns:
        ``(track_row, detection_col)`` pairs, only allowed ones, in track-row order.
    """
    if cost.size == 0 or not allowed.any():
        return []
    rows, cols = linear_sum_assignment(np.where(allowed, cost, FORBIDDEN))
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]
