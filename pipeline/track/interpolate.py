"""Box interpolation between keyframes (CVAT's "interpolation" mode): linear in xyxy.

Conventions: boxes are ``xyxy`` in absolute pixels (x = column, y = row); frames are the
video's original 0-based frame indices.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def interpolate_boxes(
    key_frames: Sequence[int], key_boxes: np.ndarray, frames: Sequence[int]
) -> tuple[list[int], np.ndarray]:
    """Boxes on the gap frames between keyframes, each coordinate linear in the frame index.

    For a gap frame ``f`` between consecutive keyframes ``f0 < f < f1`` with boxes ``b0``,
    ``b1``: ``b(f) = b0 + (b1 - b0) * (f - f0) / (f1 - f0)``.

    Args:
        key_frames: frame indices of the track's keyframes (any order, no repeats).
        key_boxes: (K, 4) xyxy boxes aligned with ``key_frames``.
        frames: the frame indices that may be filled (e.g. the frames a video source keeps);
            only those strictly inside the track's span and not keyframes are returned.

    Returns:
        ``(gap_frames, boxes)``: sorted gap frame indices and their (G, 4) float64 xyxy boxes.
    """
    kf = np.asarray(list(key_frames), dtype=np.int64)
    kb = np.asarray(key_boxes, dtype=np.float64).reshape(-1, 4)
    if len(kf) != len(kb):
        raise ValueError(f"expected one box per keyframe, got {len(kf)} keyframes and {len(kb)} boxes")
    if len(np.unique(kf)) != len(kf):
        raise ValueError(f"expected distinct keyframes, got repeats in {sorted(kf.tolist())}")
    if len(kf) < 2:
        return [], np.zeros((0, 4))
    order = np.argsort(kf)
    kf, kb = kf[order], kb[order]
    keys = set(kf.tolist())
    gaps = sorted({int(f) for f in frames if kf[0] < int(f) < kf[-1] and int(f) not in keys})
    if not gaps:
        return [], np.zeros((0, 4))
    g = np.asarray(gaps, dtype=np.float64)
    boxes = np.stack([np.interp(g, kf.astype(np.float64), kb[:, c]) for c in range(4)], axis=1)
    return gaps, boxes
