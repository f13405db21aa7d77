"""Tracking: link per-frame detections into tracks (Hungarian assignment on box overlap and
appearance) and interpolate boxes between keyframes. Pure numpy + scipy: no database."""
from __future__ import annotations

from pipeline.track.association import association_cost, cosine_matrix, solve_assignment
from pipeline.track.interpolate import interpolate_boxes
from pipeline.track.tracker import FrameDetections, Track, TrackerConfig, track

__all__ = [
    "FrameDetections", "Track", "TrackerConfig", "association_cost", "cosine_matrix", "interpolate_boxes",
    "solve_assignment", "track",
]
