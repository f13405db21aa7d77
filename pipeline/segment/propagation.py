"""What every mask propagator yields, the drift rule, and prompt checks (no torch here).

A *propagator* follows objects prompted on one frame through the frames that come after it
(in propagation order: forward K, K+1, ... or backward K, K-1, ...). Two exist:

- :class:`pipeline.segment.sam2_video.Sam2VideoPropagator` (SAM2.1 memory attention, weights
  needed), ``name = "sam2-video"``;
- :class:`pipeline.segment.grabcut_track.GrabCutTracker` (per-frame GrabCut seeded by the
  previous mask's box, no weights), ``name = "grabcut-track"``.

Both expose ``propagate(frames, boxes=..., masks=..., drift_threshold=...)`` yielding one
:class:`PropagatedFrame` per frame read, the prompt frame first (``step = 0``).

Coordinates: images (H, W, 3) uint8 RGB indexed [row, col]; boxes xyxy in absolute pixels of
the frame ((x, y) = (column, row)); masks (N, H, W) bool on the frame's pixel grid.

The drift rule: on a frame after the prompt, an object whose score falls below
``drift_threshold``, or whose mask is empty, is flagged ``drift`` on that frame and is not
followed any further (``active`` is False from the next frame on, with an empty mask). The
user re-prompts there. ``drift_threshold = 0`` turns the score part off (empty masks still
stop an object); ``stop_on_drift=False`` flags drift frames but keeps following.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Default drift threshold on the object-score probability: SAM2 itself decides "object
#: present" by ``object_score_logits > 0``, i.e. a probability above 0.5.
DEFAULT_DRIFT_THRESHOLD = 0.5


@dataclass
class PropagatedFrame:
    """One frame of a propagation.

    Attributes:
        step: 0 for the prompt frame, then 1, 2, ... in propagation order.
        masks: (N, H, W) bool, one per prompted object (all False once an object stopped).
        scores: (N,) float32 in [0, 1]; SAM2: sigmoid of the object score logit; GrabCut: its
            colour-separability score. NaN for objects no longer followed.
        drift: (N,) bool, True on the frame where an object drifted (never on step 0).
        active: (N,) bool, True for objects still followed on this frame (a drifting object is
            active on its drift frame and inactive after it).
    """

    step: int
    masks: np.ndarray
    scores: np.ndarray
    drift: np.ndarray
    active: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.masks.ndim != 3 or self.masks.shape[0] != n or self.masks.dtype != bool:
            raise ValueError(f"masks: expected ({n}, H, W) bool, got {self.masks.shape} {self.masks.dtype}")
        for name in ("drift", "active"):
            arr = getattr(self, name)
            if arr.shape != (n,) or arr.dtype != bool:
                raise ValueError(f"{name}: expected ({n},) bool, got {arr.shape} {arr.dtype}")


def check_prompts(
    boxes: np.ndarray | Sequence[Sequence[float]] | None,
    masks: Sequence[np.ndarray | None] | None,
    hw: tuple[int, int],
) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Validates per-object prompts on the prompt frame.

    Args:
        boxes: (N, 4) xyxy absolute pixels, or None when every object has a mask.
        masks: N entries, each an (H, W) bool mask or None (then the object's box is used).
        hw: (H, W) of the prompt frame.

    Returns:
        ``(boxes (N, 4) float32 (NaN rows where none was given), masks list of N)``.

    Raises:
        ValueError: no objects, mismatched counts, a box outside the frame or empty, or a mask of
            the wrong shape / empty, naming the object's position.
    """
    h, w = hw
    n_box = 0 if boxes is None else len(boxes)
    n_mask = 0 if masks is None else len(masks)
    n = max(n_box, n_mask)
    if n == 0:
        raise ValueError("propagate: expected at least one object to follow (a box or a mask), got none")
    if boxes is not None and masks is not None and n_box != n_mask:
        raise ValueError(f"propagate: expected one box per mask, got {n_box} boxes and {n_mask} masks")
    out_boxes = np.full((n, 4), np.nan, np.float32)
    if boxes is not None:
        out_boxes[:] = np.asarray(boxes, np.float32).reshape(n, 4)
    out_masks: list[np.ndarray | None] = list(masks) if masks is not None else [None] * n
    for i in range(n):
        m = out_masks[i]
        if m is not None:
            m = np.asarray(m)
            if m.shape != (h, w) or m.dtype != bool:
                raise ValueError(f"propagate: object {i}: expected an ({h}, {w}) bool mask of the prompt frame, "
                                 f"got {m.shape} {m.dtype}")
            if not m.any():
                raise ValueError(f"propagate: object {i}: the mask is empty; give its box instead")
            out_masks[i] = m
            continue
        x0, y0, x1, y1 = out_boxes[i]
        if not np.all(np.isfinite(out_boxes[i])):
            raise ValueError(f"propagate: object {i}: expected a box or a mask, got neither")
        if not (x1 > x0 and y1 > y0) or x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            raise ValueError(f"propagate: object {i}: expected an xyxy box inside the {w}x{h} frame with "
                             f"x1 > x0 and y1 > y0, got {[float(v) for v in out_boxes[i]]}")
    return out_boxes, out_masks


def check_frame(frame: np.ndarray, hw: tuple[int, int] | None, step: int) -> np.ndarray:
    """An (H, W, 3) uint8 frame of the prompt frame's size, contiguous; ValueError otherwise."""
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"propagate: frame {step}: expected an (H, W, 3) uint8 RGB image, got {arr.shape} {arr.dtype}")
    if hw is not None and arr.shape[:2] != hw:
        raise ValueError(f"propagate: frame {step}: expected the prompt frame's size {hw[1]}x{hw[0]}, "
                         f"got {arr.shape[1]}x{arr.shape[0]}; a video's frames all have one size")
    return np.ascontiguousarray(arr)


def apply_drift_rule(
    step: int, masks: np.ndarray, scores: np.ndarray, active: np.ndarray, threshold: float, *, stop: bool = True
) -> PropagatedFrame:
    """Builds the frame's result and updates ``active`` in place (the drift rule above).

    Args:
        step: 0 for the prompt frame (never drifts).
        masks: (N, H, W) bool as predicted (objects already stopped are blanked here).
        scores: (N,) float32 in [0, 1].
        active: (N,) bool, objects followed up to this frame; objects that drift are cleared.
        threshold: drift below this score (0 disables the score test).
        stop: stop following a drifting object (the default); False only flags the frame
            (SAM2 can pick an object up again after an occlusion; benchmarks follow every frame).
    """
    masks = masks.copy()
    scores = scores.astype(np.float32, copy=True)
    stopped = ~active
    masks[stopped] = False
    scores[stopped] = np.nan
    drift = np.zeros(len(scores), bool)
    if step > 0:
        empty = ~masks.reshape(len(masks), -1).any(axis=1)
        drift = active & ((scores < threshold) | empty)
    frame = PropagatedFrame(step=step, masks=masks, scores=scores, drift=drift, active=active.copy())
    if stop:
        active &= ~drift
    return frame
