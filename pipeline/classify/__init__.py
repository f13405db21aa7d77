"""Few-shot classification: class prototypes + kNN vote over a support set, unknown rejection
with thresholds calibrated by leave-one-out. Pure numpy (no torch, no database)."""
from __future__ import annotations

from pipeline.classify.calibrate import DEFAULT_MIN_COVERAGE, calibrate, loo_scores
from pipeline.classify.prototypes import (
    DEFAULT_K,
    DEFAULT_KNN_WEIGHT,
    UNKNOWN,
    PrototypeModel,
    answers,
    build_model,
    confidence,
    l2_normalize,
)

__all__ = [
    "DEFAULT_K", "DEFAULT_KNN_WEIGHT", "DEFAULT_MIN_COVERAGE", "UNKNOWN", "PrototypeModel", "answers",
    "build_model", "calibrate", "confidence", "l2_normalize", "loo_scores",
]
