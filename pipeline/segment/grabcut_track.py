"""Mask propagation without weights: per-frame GrabCut seeded by the tracked box.

The fallback of :class:`pipeline.segment.sam2_video.Sam2VideoPropagator` when no SAM2.1 video
weights are on the machine (same ``propagate`` interface, ``name = "grabcut-track"``).

Per frame after the prompt frame, for each object still followed:

1. the box to search is the previous frame's mask bounding box grown by ``grow`` of its size
   on each side plus ``grow_px`` pixels (room for the object's motion between two frames);
2. :class:`pipeline.segment.grabcut.GrabCutSegmenter` cuts that box (outside = background);
3. the score is GrabCut's colour-separability score (see ``grabcut.py``), set to 0 when the
   area jumps by more than ``max_area_change`` times (a cut that leaked into the background
   or shrank to a fragment is not the same object any more), so the drift rule stops it.

On the prompt frame the object's mask is used as given; a box-only object is cut once with
GrabCut first. No memory across frames beyond the previous mask: objects that cross or hide
behind each other are where SAM2's memory earns its weights.

Coordinates: images (H, W, 3) uint8 RGB; boxes xyxy absolute pixels; masks (N, H, W) bool.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from pipeline.mask_ops import expand_box, mask_to_xyxy
from pipeline.segment.propagation import (
    PropagatedFrame,
    apply_drift_rule,
    check_frame,
    check_prompts,
)

#: GrabCut's score measures colour separability, not presence: a cut that still finds the
#: object in clutter scores ~0.3; leaks are caught by the area test instead.
GRABCUT_DRIFT_THRESHOLD = 0.15


class GrabCutTracker:
    """Follows objects frame to frame with GrabCut (no weights).

    Args:
        segmenter: a ``GrabCutSegmenter`` (a default one when None).
        grow: box growth per side as a fraction of the previous box's width / height.
        grow_px: extra growth per side in pixels.
        max_area_change: an area ratio to the previous frame above this (or below its inverse)
            scores 0.

    Attributes:
        name: ``"grabcut-track"`` (stored as ``detection_model``).
        default_drift_threshold: the drift threshold that fits this score.
    """

    name = "grabcut-track"
    version = "grabcut-track"
    default_drift_threshold = GRABCUT_DRIFT_THRESHOLD

    def __init__(self, segmenter: Any = None, *, grow: float = 0.3, grow_px: int = 4,
                 max_area_change: float = 3.0) -> None:
        if segmenter is None:
            from pipeline.segment.grabcut import GrabCutSegmenter

            segmenter = GrabCutSegmenter()
        if grow < 0 or grow_px < 0 or max_area_change <= 1:
            raise ValueError(f"GrabCutTracker: expected grow >= 0, grow_px >= 0, max_area_change > 1, got "
                             f"{grow}, {grow_px}, {max_area_change}")
        self.segmenter = segmenter
        self.grow = float(grow)
        self.grow_px = int(grow_px)
        self.max_area_change = float(max_area_change)

    def search_box(self, mask: np.ndarray) -> np.ndarray:
        """The xyxy box (absolute pixels) to cut on the next frame, from this frame's mask."""
        h, w = mask.shape
        return np.asarray(expand_box(mask_to_xyxy(mask)[0], w, h, pad=self.grow, pad_px=self.grow_px), np.float32)

    def _cut(self, frame: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seg = self.segmenter
        lock = getattr(seg, "lock", None)
        if lock is None:
            seg.set_image(frame)
            return seg.predict_boxes(boxes)
        with lock:  # a shared segmenter: nobody swaps the image in between
            seg.set_image(frame)
            return seg.predict_boxes(boxes)

    def propagate(
        self,
        frames: Iterable[np.ndarray],
        boxes: np.ndarray | Sequence[Sequence[float]] | None = None,
        masks: Sequence[np.ndarray | None] | None = None,
        *,
        drift_threshold: float = GRABCUT_DRIFT_THRESHOLD,
        max_frames: int | None = None,
        stop_on_drift: bool = True,
    ) -> Iterator[PropagatedFrame]:
        """Same contract as :meth:`pipeline.segment.sam2_video.Sam2VideoPropagator.propagate`."""
        hw: tuple[int, int] | None = None
        active = prev = None
        limit = None if max_frames is None else int(max_frames) + 1
        for step, frame in enumerate(itertools.islice(frames, limit)):  # never reads past the limit
            frame = check_frame(frame, hw, step)
            if step == 0:
                hw = (frame.shape[0], frame.shape[1])
                p_boxes, p_masks = check_prompts(boxes, masks, hw)
                n = len(p_masks)
                active = np.ones(n, bool)
                cur = np.zeros((n, *hw), bool)
                scores = np.ones(n, np.float32)
                need = [i for i, m in enumerate(p_masks) if m is None]
                for i, m in enumerate(p_masks):
                    if m is not None:
                        cur[i] = m
                if need:
                    cut, cut_scores = self._cut(frame, p_boxes[need])
                    cur[need], scores[need] = cut, cut_scores
            else:
                n = len(active)
                cur = np.zeros((n, *hw), bool)
                scores = np.zeros(n, np.float32)
                idx = [i for i in range(n) if active[i]]
                search = np.stack([self.search_box(prev[i]) for i in idx])
                cut, cut_scores = self._cut(frame, search)
                for k, i in enumerate(idx):
                    cur[i], scores[i] = cut[k], cut_scores[k]
                    before, after = int(prev[i].sum()), int(cut[k].sum())
                    if after == 0 or not (1 / self.max_area_change <= after / max(before, 1) <= self.max_area_change):
                        scores[i] = 0.0
            result = apply_drift_rule(step, cur, scores, active, drift_threshold, stop=stop_on_drift)
            # the next search box comes from the last non-empty mask (an object followed through
            # a drift frame with stop_on_drift=False is searched where it was last seen)
            prev = cur if step == 0 else np.where(cur.reshape(n, -1).any(axis=1)[:, None, None], cur, prev)
            if step == 0:
                # the prompt frame's cut is the first tracked mask; an empty one cannot be followed
                active &= cur.reshape(n, -1).any(axis=1)
            yield result
            if not active.any():
                break
