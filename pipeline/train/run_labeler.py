"""A trained run as the auto-labeler: YOLO boxes with their real scores, masks from the model
(segmentation runs) or from a segmenter (detection runs), embeddings from an optional embedder.

Same protocol as :class:`pipeline.autolabel.AutoLabeler` (``label(image, classes, *,
confidence, synonyms, image_key)`` and ``model_names``), so every labeling path (CLI, Auto-label
tab) takes it unchanged. ``confidence`` of each object is the YOLO score itself (the model was
trained to calibrate it; no geometric mean with a mask score); ``data["mask_iou"]`` holds the
segmenter's own score for detection runs (1.0 for masks the model predicted).

Output: ``Detections`` with ``xyxy`` absolute pixels of the original image (x = column,
y = row), ``mask`` (N, H, W) bool on the original pixel grid, ``data["det_score"]``,
``data["mask_iou"]``, ``data["detection_model"]`` (N,) object (``"run:<run_id>"``), and
``data["embedding"]`` (N, D) float32 with an embedder.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.autolabel import label_inputs, model_label, set_image
from pipeline.train.yolo_detector import YoloDetector
from pipeline.types import Detections


class RunLabeler:
    """Labels images with a trained run's weights.

    Args:
        detector: the run's :class:`YoloDetector` (``version`` = ``"run:<run_id>"``).
        segmenter: used for detection runs (masks from boxes); may be None for segmentation runs.
        embedder: optional; ``embed(image, xyxy, masks) -> (N, D)`` with ``dim``/``version``.
    """

    def __init__(self, detector: YoloDetector, segmenter: Any | None = None, embedder: Any | None = None) -> None:
        if detector.task != "segment" and segmenter is None:
            raise ValueError(f"{detector.version}: a detection model needs a segmenter for masks "
                             "(grabcut or sam2), got none")
        self.detector = detector
        self.segmenter = segmenter
        self.embedder = embedder
        self.last_timings: dict[str, float] = {}

    @property
    def model_names(self) -> dict[str, str | None]:
        """``detector`` = ``"run:<run_id>"`` (stored as the objects' ``detection_model``)."""
        seg = None if self.detector.task == "segment" else self.segmenter
        return {"detector": self.detector.version, "segmenter": model_label(seg), "embedder": model_label(self.embedder)}

    def label(self, image: np.ndarray | str | Path | bytes, classes: list[str], *, confidence: float = 0.3,
              synonyms: dict[str, list[str]] | None = None, image_key: str | None = None) -> Detections:
        """Boxes (and masks, embeddings) of ``classes`` in one image; see the module doc.

        Raises:
            ValueError: no classes, a confidence outside [0, 1], or an unusable image.
        """
        t0 = time.perf_counter()
        image, classes, image_key = label_inputs(image, classes, confidence, image_key)
        det = self.detector.detect(image, classes, synonyms=synonyms, confidence=confidence)
        t_detect = time.perf_counter()
        mask_iou = np.ones(len(det), np.float32)
        masks = det.mask
        if len(det) and self.detector.task != "segment":
            lock = getattr(self.segmenter, "lock", None)
            with lock if lock is not None else contextlib.nullcontext():
                set_image(self.segmenter, image, image_key)
                masks, mask_iou = self.segmenter.predict_boxes(det.xyxy)
            mask_iou = np.asarray(mask_iou, np.float32)
        if masks is None:
            masks = np.zeros((len(det), *image.shape[:2]), dtype=bool)
        # per-row provenance: every save path (CLI, Auto-label tab) stores it as detection_model
        data = {"det_score": det.confidence.copy(), "mask_iou": mask_iou,
                "detection_model": np.array([self.detector.version] * len(det), dtype=object)}
        if self.embedder is not None:
            data["embedding"] = (np.asarray(self.embedder.embed(image, det.xyxy, masks), np.float32) if len(det)
                                 else np.zeros((0, int(self.embedder.dim)), np.float32))
        self.last_timings = {"detect": t_detect - t0, "total": time.perf_counter() - t0}
        return Detections(xyxy=det.xyxy, confidence=det.confidence, class_id=det.class_id,
                          class_names=det.class_names, mask=np.asarray(masks, dtype=bool), data=data)
