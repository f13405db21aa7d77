"""Choosing the unknown thresholds tau1 / tau2 on the support set by leave-one-out (numpy).

Each support item is scored as a query against the rest of the support set: its own class's
prototype is recomputed without it and it is never its own neighbour (the centre keeps it:
one item moves the mean of the whole support set by 1/N only). That gives, per item, the
leave-one-out ``s1``, ``margin`` and whether the top class is its true class.

A grid of ``(tau1, tau2)`` — ``tau1`` over quantiles of the LOO ``s1`` (and 0), ``tau2`` over
quantiles of the LOO margins (and 0) — is searched for the point that maximises the
**accuracy of the accepted items subject to coverage >= min_coverage** (coverage = share of
support items not rejected as unknown; default 0.95). Among equally accurate points the most
cautious one wins (largest ``tau1``, then largest ``tau2``): the support set has no
out-of-domain examples, so the thresholds are set as high as the coverage target allows,
which is what makes queries unlike every class come out "unknown".
"""
from __future__ import annotations

import numpy as np

from pipeline.classify.prototypes import (
    DEFAULT_CONFIDENCE_SCALE,
    EPS,
    PrototypeModel,
    class_sums,
    knn_votes,
    row_chunks,
    top2,
)

DEFAULT_MIN_COVERAGE = 0.95
MAX_CALIBRATION_ITEMS = 4000
COVERAGE_BAND = 0.02


def loo_scores(model: PrototypeModel, items: np.ndarray | None = None) -> np.ndarray:
    """Leave-one-out fused scores (B, C) of the support items ``items`` (indices; None = all).

    Vectorised: the own-class prototype without item ``i`` is ``normalise(S_c - z_i)`` with
    ``S_c`` the class sum, so its cosine is ``(S_c . z_i - 1) / ||S_c - z_i||``; other classes'
    prototypes are unchanged. A class of one item has no prototype left: its cosine is -1.
    """
    z, y = model.support, model.labels
    idx = np.arange(len(z)) if items is None else np.asarray(items, np.int64)
    n_classes = len(model.classes)
    sums = class_sums(z, y, n_classes)  # (C, D) class sums of the unit rows
    zq = z[idx]
    proto = zq @ model.prototypes.T  # (B, C)
    own = y[idx]
    rest = sums[own] - zq  # (B, D)
    norm = np.linalg.norm(rest, axis=1)
    own_cos = np.where(norm > 1e-6, np.einsum("bd,bd->b", rest, zq) / np.maximum(norm, EPS), -1.0)
    proto[np.arange(len(idx)), own] = own_cos
    if model.knn_weight <= 0.0 or len(z) < 2:
        return proto.astype(np.float32, copy=False)
    votes = np.empty_like(proto, dtype=np.float32)
    for rows in row_chunks(len(idx), len(z)):  # bounded (rows, N) similarity blocks
        sims = zq[rows] @ z.T
        sims[np.arange(sims.shape[0]), idx[rows]] = -np.inf  # never your own neighbour
        votes[rows] = knn_votes(sims, y, n_classes, model.k)
    w = model.knn_weight
    return ((1.0 - w) * proto + w * votes).astype(np.float32)


def calibrate(model: PrototypeModel, *, min_coverage: float = DEFAULT_MIN_COVERAGE, grid: int = 41,
              seed: int = 0, max_items: int = MAX_CALIBRATION_ITEMS) -> dict:
    """Sets ``model.tau1``, ``tau2`` and ``confidence_scale`` from leave-one-out on its support set.

    Args:
        model: the domain model (its support set is the calibration set).
        min_coverage: the share of support items that must stay known, in (0, 1].
        grid: quantiles per threshold axis (``grid`` values each, plus 0).
        seed: which support items are used when there are more than ``max_items``.
        max_items: calibration uses at most this many items (a seeded sample), bounding memory.

    Returns:
        The calibration report (also stored as ``model.calibration``): ``tau1``, ``tau2``,
        ``accuracy`` (of the accepted items) and ``coverage`` at the chosen point,
        ``loo_accuracy`` (no rejection), ``min_coverage``, ``items``, ``confidence_scale``,
        ``objective``. With one class only, the margin is ``s1`` itself.
    """
    if not 0.0 < float(min_coverage) <= 1.0:
        raise ValueError(f"min_coverage: expected a value in (0, 1], got {min_coverage}")
    n = len(model.support)
    items = None
    if n > max_items:
        items = np.sort(np.random.default_rng(seed).choice(n, int(max_items), replace=False))
    scores = loo_scores(model, items)
    truth = model.labels if items is None else model.labels[items]
    best, s1, s2 = top2(scores)
    margin = s1 - s2
    correct = best == truth
    qs = np.linspace(0.0, 1.0, int(grid))
    t1 = np.unique(np.concatenate([[0.0], np.quantile(s1, qs)])).astype(np.float64)
    t2 = np.unique(np.concatenate([[0.0], np.quantile(np.maximum(margin, 0.0), qs)])).astype(np.float64)
    accepted = (s1[None, None, :] >= t1[:, None, None]) & (margin[None, None, :] >= t2[None, :, None])
    n_acc = accepted.sum(axis=2)
    coverage = n_acc / float(len(s1))
    acc = np.where(n_acc > 0, (accepted & correct[None, None, :]).sum(axis=2) / np.maximum(n_acc, 1), 0.0)
    ok = coverage >= float(min_coverage) - 1e-12
    if not ok.any():  # cannot happen (tau = 0, 0 accepts all), kept for safety
        ok[0, 0] = True
    # the coverage band just above the target: the thresholds reject about (1 - min_coverage)
    band = ok & (coverage <= coverage[ok].min() + COVERAGE_BAND + 1e-12)
    masked = np.where(band, acc, -1.0)
    best_acc = masked.max()
    cand = np.argwhere(masked >= best_acc - 1e-9)
    # most cautious among the equally accurate: largest tau1, then largest tau2
    i1, i2 = max(cand.tolist(), key=lambda ij: (t1[ij[0]], t2[ij[1]]))
    right = margin[correct]
    scale = float(np.median(right)) if len(right) and np.median(right) > 1e-6 else DEFAULT_CONFIDENCE_SCALE
    model.tau1, model.tau2 = float(t1[i1]), float(t2[i2])
    model.confidence_scale = scale
    report = {
        "tau1": round(model.tau1, 6),
        "tau2": round(model.tau2, 6),
        "accuracy": round(float(acc[i1, i2]), 6),
        "coverage": round(float(coverage[i1, i2]), 6),
        "loo_accuracy": round(float(correct.mean()), 6),
        "min_coverage": float(min_coverage),
        "items": int(len(s1)),
        "confidence_scale": round(scale, 6),
        "objective": "max leave-one-out accuracy of accepted items s.t. coverage >= min_coverage; "
                     "ties -> largest tau1, then tau2",
    }
    model.calibration = report
    return report
