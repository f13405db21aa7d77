"""The plain records callers hand the registry and get back: :class:`ObjectIn`, :class:`RegisterResult`.

Coordinate conventions: ``xyxy`` boxes are absolute pixels of the source image (x = column,
y = row, ``x0 <= x1 <= width``); masks are ``(H, W)`` bool arrays of the source image's size
(``H`` = height); embeddings are ``(embedding_dim,)`` float32 vectors.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ObjectIn:
    """One object to register.

    Attributes:
        category: category name or synonym (case-insensitive); created on demand.
        xyxy: box ``(x0, y0, x1, y1)``, absolute pixels of the source image.
        mask: ``(H, W)`` bool mask of the whole source image, or None.
        mask_rle: the mask already as compressed COCO RLE ``{"size": [H, W], "counts": str}``
            (instead of ``mask``; importers and bulk loaders use it to skip re-encoding).
        confidence: detection confidence in [0, 1], or None.
        embedding: ``(embedding_dim,)`` float32 vector, or None.
    """

    category: str
    xyxy: tuple[float, float, float, float]
    mask: np.ndarray | None = None
    confidence: float | None = None
    embedding: np.ndarray | None = None
    detection_model: str | None = None
    classification_model: str | None = None
    classification_confidence: float | None = None
    frame_id: str | None = None
    quality_score: float | None = None
    is_occluded: bool = False
    is_truncated: bool = False
    is_difficult: bool = False
    validation_status: str = "pending"
    validated_by: str | None = None
    metadata: dict | None = None
    mask_rle: dict | None = None


@dataclass
class RegisterResult:
    """Outcome of :meth:`Registry.register_objects`.

    Attributes:
        object_ids: aligned with the input; None where the object was skipped as a duplicate.
        duplicates: ``(input index, id of the object it duplicates)``.
    """

    object_ids: list[str | None] = field(default_factory=list)
    duplicates: list[tuple[int, str]] = field(default_factory=list)

    @property
    def registered(self) -> list[str]:
        """The ids of the objects actually written."""
        return [i for i in self.object_ids if i is not None]

