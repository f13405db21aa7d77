"""Labeling several images with one labeler call where it can batch (``label_many``), and one
by one where it cannot or where the batch fails, so that each error stays with its image.

Shared by ``launch.py label`` (``app.workflows.labeling.label_paths``) and the Auto-label tab
(``app.workflows.autolabel_session.label_images``).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.types import Detections

log = logging.getLogger(__name__)


def default_batch_images(labeler: Any) -> int:
    """Images per ``label_many`` call: ``pipeline.autolabel.GPU_BATCH_IMAGES`` when the labeler's
    detector runs on a GPU, else 1 (on a CPU the encoders are compute-bound: batching gains
    nothing, and one image at a time keeps progress and memory per image)."""
    from pipeline.autolabel import GPU_BATCH_IMAGES

    device = getattr(getattr(labeler, "detector", None), "device", None)
    return GPU_BATCH_IMAGES if getattr(device, "type", str(device)) == "cuda" else 1


def label_batch(labeler: Any, images: Sequence[np.ndarray], keys: Sequence[str | None], classes: Sequence[str], *,
                confidence: float, synonyms: dict[str, list[str]] | None = None) -> list[Detections | Exception]:
    """Each image's ``Detections``, or the exception its labeling raised.

    Several images and a labeler with ``label_many``: one call for all; when it raises, the
    images are labeled one by one (the bad one then fails alone, with its own error).
    """
    kwargs = {"confidence": float(confidence), "synonyms": synonyms or None}
    if len(images) > 1 and hasattr(labeler, "label_many"):
        try:
            return list(labeler.label_many(list(images), list(classes), image_keys=list(keys), **kwargs))
        except Exception:
            log.debug("label_many failed; labeling its %d images one by one", len(images), exc_info=True)
    out: list[Detections | Exception] = []
    for image, key in zip(images, keys, strict=True):
        try:
            out.append(labeler.label(image, list(classes), image_key=key, **kwargs))
        except Exception as exc:
            out.append(exc)
    return out
