"""The one result type for detections (after supervision's ``Detections``).

Coordinates: ``xyxy`` is (N, 4) float32 in absolute pixels of the ORIGINAL image,
``(x_min, y_min, x_max, y_max)`` with x = column, y = row; ``mask`` is (N, H, W) bool in the
same image's pixel grid (row, col), or None when no masks were computed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Detections:
    """Parallel arrays, one row per object.

    Attributes:
        xyxy: (N, 4) float32, absolute pixels, x_min <= x_max and y_min <= y_max.
        confidence: (N,) float32 in [0, 1].
        class_id: (N,) int64 indexes into ``class_names``.
        class_names: the class names the ids refer to (the requested names, in request order).
        mask: (N, H, W) bool or None.
        data: extra per-object arrays of length N (e.g. ``"embedding"``: (N, D) float32,
            ``"mask_iou"``: (N,) float32, ``"det_score"``: (N,) float32).
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    class_names: list[str] = field(default_factory=list)
    mask: np.ndarray | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        self.class_names = list(self.class_names)
        if len(self.confidence) != n:
            raise ValueError(f"confidence: expected {n} values, got {len(self.confidence)}")
        if len(self.class_id) != n:
            raise ValueError(f"class_id: expected {n} values, got {len(self.class_id)}")
        if n and not np.all(np.isfinite(self.xyxy)):
            raise ValueError("xyxy: expected finite pixel coordinates, got NaN or inf")
        if n and np.any(self.xyxy[:, 2:] < self.xyxy[:, :2]):
            raise ValueError("xyxy: expected x_min <= x_max and y_min <= y_max, got a reversed box")
        if n and (np.any(self.confidence < 0) or np.any(self.confidence > 1)):
            raise ValueError(f"confidence: expected values in [0, 1], got {self.confidence}")
        if n and (self.class_id.min() < 0 or self.class_id.max() >= len(self.class_names)):
            raise ValueError(
                f"class_id: expected ids in [0, {len(self.class_names)}), got {self.class_id}"
            )
        if self.mask is not None:
            self.mask = np.asarray(self.mask)
            if self.mask.dtype != bool:
                raise ValueError(f"mask: expected dtype bool, got {self.mask.dtype}")
            if self.mask.ndim != 3 or len(self.mask) != n:
                raise ValueError(f"mask: expected shape ({n}, H, W), got {self.mask.shape}")
        for key, value in self.data.items():
            if len(value) != n:
                raise ValueError(f"data[{key!r}]: expected {n} rows, got {len(value)}")

    def __len__(self) -> int:
        return len(self.xyxy)

    @property
    def labels(self) -> list[str]:
        """The class name of each object."""
        return [self.class_names[i] for i in self.class_id]

    @property
    def area(self) -> np.ndarray:
        """(N,) float32: mask pixel counts where masks exist, else box areas."""
        if self.mask is not None:
            return self.mask.reshape(len(self), -1).sum(axis=1).astype(np.float32)
        wh = self.xyxy[:, 2:] - self.xyxy[:, :2]
        return (wh[:, 0] * wh[:, 1]).astype(np.float32)

    def __getitem__(self, index: Any) -> Detections:
        """Select rows by a bool mask, an index array or a slice."""
        if isinstance(index, int):
            index = [index]
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            class_id=self.class_id[index],
            class_names=self.class_names,
            mask=None if self.mask is None else self.mask[index],
            data={k: np.asarray(v)[index] for k, v in self.data.items()},
        )

    @classmethod
    def empty(cls, class_names: list[str] | None = None, image_hw: tuple[int, int] | None = None) -> Detections:
        mask = None if image_hw is None else np.zeros((0, *image_hw), dtype=bool)
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0), list(class_names or []), mask)
