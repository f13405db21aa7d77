"""Segmenters: a SAM2-shaped predictor interface and its implementations."""
from __future__ import annotations

from pipeline.segment.base import PointPrediction, Segmenter

__all__ = ["PointPrediction", "Segmenter"]
