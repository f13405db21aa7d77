"""A trained YOLO model as a detector: the auto-labeler's ``detect`` and batch prediction.

Coordinates: ``xyxy`` absolute pixels of the original image (x = column, y = row); masks
(N, H, W) bool on the original pixel grid (ultralytics ``retina_masks=True``); scores are the
model's own class confidences in [0, 1].

Class names: the model knows its training classes (``model.names``). ``detect`` answers only
the requested classes, matched case-insensitively against the model's names and the given
synonyms; requested classes the model never learned simply get no boxes.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.types import Detections

BATCH = 16  # images per ultralytics predict call (one forward pass each)


class YoloDetector:
    """Wraps ``ultralytics.YOLO`` weights (``best.pt`` of a run).

    Args:
        weights: a ``.pt`` checkpoint (detect or segment).
        version: the name stored as ``detection_model`` (``"run:<run_id>"``).
        device: ``"cpu"``, ``"cuda"`` or a CUDA index; None = CPU.
        imgsz: inference size (square pixels; the run's training size is a good choice).

    Thread-safe: predictions run one at a time (ultralytics' predictor keeps state).
    """

    def __init__(self, weights: str | Path, *, version: str | None = None, device: str | None = None,
                 imgsz: int = 640) -> None:
        weights = Path(weights)
        if not weights.is_file():
            raise ValueError(f"detector weights: expected a .pt file, got {weights} (no such file); "
                             "train a run first (launch.py train) or point at its weights/best.pt")
        self.weights = weights
        self.version = version or f"yolo:{weights.name}"
        self.device = "0" if device == "cuda" else (device or "cpu")
        self.imgsz = int(imgsz)
        self._model: Any = None
        self.lock = threading.RLock()

    @property
    def model(self) -> Any:
        """The loaded ``ultralytics.YOLO`` (loaded on first use)."""
        if self._model is None:
            from ultralytics import YOLO

            self._model = YOLO(str(self.weights))
        return self._model

    @property
    def task(self) -> str:
        return str(self.model.task)

    @property
    def names(self) -> list[str]:
        """The model's class names in class-index order."""
        names = self.model.names
        return [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)

    def predict(self, images: Sequence[np.ndarray | str | Path], *, conf: float = 0.25,
                masks: bool = True) -> Iterator[Detections]:
        """One ``Detections`` per image, in order, over the model's own classes.

        Args:
            images: (H, W, 3) uint8 RGB arrays or image paths.
            conf: lowest score kept, in [0, 1].
            masks: compute masks (segmentation models only).

        Yields:
            ``Detections`` with ``class_names`` = the model's names, ``mask`` for segmentation
            models (else None), ``data["det_score"]`` = the scores.
        """
        if not 0.0 <= conf <= 1.0:
            raise ValueError(f"conf: expected a value in [0, 1], got {conf}")
        names = self.names
        images = list(images)
        for start in range(0, len(images), BATCH):
            # ultralytics reads numpy arrays as BGR (OpenCV order); paths are read by it.
            sources = [np.ascontiguousarray(im[..., ::-1]) if isinstance(im, np.ndarray) else str(im)
                       for im in images[start:start + BATCH]]
            with self.lock:
                results = self.model.predict(sources, conf=conf, imgsz=self.imgsz, device=self.device,
                                             retina_masks=True, verbose=False)
            for result in results:
                yield _to_detections(result, names, with_masks=masks and self.task == "segment")

    def detect(self, image: np.ndarray, classes: Sequence[str], *, synonyms: dict[str, list[str]] | None = None,
               confidence: float = 0.0) -> Detections:
        """The auto-labeler's detector protocol: boxes of the requested ``classes`` only.

        Args:
            image: (H, W, 3) uint8 RGB.
            classes: requested names; result ``class_names`` are exactly these.
            synonyms: requested name -> other names that also match a model class.
            confidence: lowest score kept.
        """
        det = next(self.predict([image], conf=confidence, masks=True))
        return select_classes(det, classes, synonyms)


def select_classes(det: Detections, classes: Sequence[str], synonyms: dict[str, list[str]] | None = None) -> Detections:
    """Keeps the boxes whose model class matches a requested class (case-insensitive, synonyms
    too) and renumbers them against ``classes``.

    Args:
        det: detections over the model's own class names.
        classes: the requested names (the result's ``class_names``).
        synonyms: requested name -> other names.
    """
    wanted: dict[str, int] = {}
    for i, name in enumerate(classes):
        for alias in [name, *((synonyms or {}).get(name) or [])]:
            wanted.setdefault(str(alias).strip().casefold(), i)
    mapped = np.array([wanted.get(det.class_names[c].casefold(), -1) for c in det.class_id], dtype=np.int64)
    keep = mapped >= 0
    return Detections(
        xyxy=det.xyxy[keep], confidence=det.confidence[keep], class_id=mapped[keep], class_names=list(classes),
        mask=None if det.mask is None else det.mask[keep],
        data={k: np.asarray(v)[keep] for k, v in det.data.items()},
    )


def _to_detections(result: Any, names: list[str], *, with_masks: bool) -> Detections:
    h, w = (int(v) for v in result.orig_shape)
    boxes = result.boxes
    xyxy = boxes.xyxy.cpu().numpy().astype(np.float32) if boxes is not None else np.zeros((0, 4), np.float32)
    score = boxes.conf.cpu().numpy().astype(np.float32) if boxes is not None else np.zeros(0, np.float32)
    cls = boxes.cls.cpu().numpy().astype(np.int64) if boxes is not None else np.zeros(0, np.int64)
    xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, w)
    xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, h)
    mask = None
    if with_masks:
        if result.masks is not None and len(xyxy):
            mask = result.masks.data.cpu().numpy() > 0.5
            if mask.shape[1:] != (h, w):  # retina masks are at the original size; be safe
                import cv2

                mask = np.stack([cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
                                 for m in mask])
        else:
            mask = np.zeros((len(xyxy), h, w), dtype=bool)
    return Detections(xyxy=xyxy, confidence=score.clip(0, 1), class_id=cls, class_names=names, mask=mask,
                      data={"det_score": score.clip(0, 1)})
