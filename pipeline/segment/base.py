"""The segmenter interface, shaped like SAM2's image predictor.

Set an image once (``set_image``), then ask for masks per prompt: a batch of boxes
(``predict_boxes``) or positive / negative clicks, optionally with a box and the previous mask
(``predict_points``). Implementations: :class:`pipeline.segment.grabcut.GrabCutSegmenter`
(OpenCV, no weights) and ``pipeline.segment.sam2.Sam2Segmenter`` (SAM2.1).

Conventions: images are (H, W, 3) uint8 RGB indexed [row, col]; boxes are xyxy absolute pixels
(x = column, y = row); points are (x, y) absolute pixels; masks are (H, W) bool in the image's
pixel grid; labels are 1 = positive (object), 0 = negative (not object).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

NOT_SET_MESSAGE = "call set_image(...) first"


@dataclass
class PointPrediction:
    """The refined mask for one click prompt.

    Attributes:
        mask: (H, W) bool in the image's pixel grid.
        score: predicted quality in [0, 1] (SAM2: predicted IoU; GrabCut: see its docs).
        low_res_logits: model-specific low-resolution logits to pass back as ``mask_input`` on
            the next click (SAM2: (256, 256) float32), or None when the segmenter keeps none
            (then pass the previous ``mask`` itself).
    """

    mask: np.ndarray
    score: float
    low_res_logits: np.ndarray | None = None


@runtime_checkable
class Segmenter(Protocol):
    """Predictor-shaped segmenter: one image at a time, many prompts per image."""

    def set_image(self, image: np.ndarray) -> None:
        """Takes an (H, W, 3) uint8 RGB image and prepares it (e.g. computes its embedding)."""

    @property
    def is_image_set(self) -> bool:
        """True once ``set_image`` has been called (and not reset)."""

    def reset_image(self) -> None:
        """Forgets the current image."""

    def predict_boxes(self, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Masks for a batch of boxes.

        Args:
            xyxy: (N, 4) float, absolute pixels of the image given to ``set_image``.

        Returns:
            (masks (N, H, W) bool, scores (N,) float32 in [0, 1]).

        Raises:
            RuntimeError: no image set ("call set_image(...) first").
        """

    def predict_points(
        self,
        points: np.ndarray,
        labels: np.ndarray,
        *,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> PointPrediction:
        """One refined mask from clicks.

        Args:
            points: (K, 2) float (x, y) absolute pixels.
            labels: (K,) int, 1 = positive, 0 = negative.
            box: optional xyxy absolute pixels bounding the object.
            mask_input: optional previous mask: this segmenter's ``low_res_logits``, or an
                (H, W) bool mask.
            multimask: let the model propose several masks and return the best one.

        Raises:
            RuntimeError: no image set ("call set_image(...) first").
        """


def check_image(image: np.ndarray) -> np.ndarray:
    """Validates an (H, W, 3) uint8 image and returns it as a contiguous array."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(
            f"set_image: expected an (H, W, 3) uint8 RGB image, got shape {arr.shape} dtype {arr.dtype}; "
            "load files with pipeline.image_io.load_image"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"set_image: expected a non-empty image, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def check_each(items: Sequence[Any], check: Callable[[Any], Any]) -> list[Any]:
    """``[check(x) for x in items]``; in a batch of several, a ValueError names the item's index
    (``"image 2: ..."``), so the caller of a batched call knows which input was bad."""
    if len(items) == 1:
        return [check(items[0])]
    out = []
    for i, item in enumerate(items):
        try:
            out.append(check(item))
        except ValueError as exc:
            raise ValueError(f"image {i}: {exc}") from None
    return out


def check_points(points: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validates click prompts: (K, 2) float (x, y) and (K,) int labels in {0, 1}."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 2) if np.size(points) else np.zeros((0, 2), np.float32)
    lab = np.asarray(labels).reshape(-1).astype(np.int64) if np.size(labels) else np.zeros(0, np.int64)
    if len(pts) != len(lab):
        raise ValueError(f"predict_points: expected one label per point, got {len(pts)} points and {len(lab)} labels")
    if len(lab) and not np.isin(lab, (0, 1)).all():
        raise ValueError(f"predict_points: expected labels 1 (positive) or 0 (negative), got {sorted(set(lab.tolist()))}")
    return pts, lab
