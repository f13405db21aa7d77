"""The auto-labeler: detect -> segment -> drop duplicates -> embed, for one image or a batch.

Stages (each timed into ``AutoLabeler.last_timings``, seconds):

1. ``detect``: the detector's boxes for the requested classes (``detector.detect``), each with
   its own derived score ``det_score`` in [0, 1] (Florence-2: from the generated tokens'
   probabilities, see ``pipeline.detect.florence``).
2. ``segment_encode`` / ``segment_decode``: the segmenter's image embedding is computed once
   (``set_image``; an LRU hit when the image was seen before), then all boxes are decoded in
   one batched call (``predict_boxes``), giving a mask and ``mask_iou`` per box (SAM2: its
   predicted mask IoU; GrabCut: its colour-separability score, also in [0, 1]).
3. ``dedupe``: the final confidence (below) is thresholded, then, within each class, a mask
   whose IoU with a more confident mask of the same class exceeds ``dedupe_iou`` is dropped, as
   are empty masks (``pipeline.mask_ops.dedupe_masks``).
4. ``embed``: one embedding per kept object on its masked crop (``embedder.embed``).

**Confidence** = sqrt(det_score * mask_iou), the geometric mean: high only when the detector is
sure of *what* and *where* and the segmenter is sure of the *shape*; either one near zero pulls
it to zero (an arithmetic mean would let a confident box hide a failed mask). Because
sqrt(d * m) <= sqrt(d) when m <= 1, a detection with d < threshold**2 can never reach the
threshold, so the detector is asked for ``confidence=threshold**2`` first (exact, not a
heuristic) and only those boxes are segmented.

Output: ``Detections`` with ``xyxy`` the detector's boxes (absolute pixels of the original
image, x = column, y = row), ``mask`` (N, H, W) bool on the original pixel grid,
``confidence`` as above, and ``data``: ``"det_score"`` (N,) float32, ``"mask_iou"`` (N,)
float32, ``"embedding"`` (N, D) float32 L2-normalised (only with an embedder), plus any per-object
arrays the detector put in its own ``data``.
"""
from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.mask_ops import dedupe_masks
from pipeline.segment.base import check_each, check_image
from pipeline.types import Detections

TIMING_KEYS = ("load", "detect", "segment_encode", "segment_decode", "dedupe", "embed", "total")

#: Images per ``label_many`` call on a GPU (``launch.py label``'s default there; SAM2's cache on a
#: GPU holds at least this many, so one batch is one encoder forward).
GPU_BATCH_IMAGES = 8


def combine_confidence(det_score: np.ndarray, mask_iou: np.ndarray) -> np.ndarray:
    """The final confidence: geometric mean of the detector's and the segmenter's scores.

    Args:
        det_score: (N,) in [0, 1].
        mask_iou: (N,) in [0, 1].

    Returns:
        (N,) float32 in [0, 1].
    """
    d = np.clip(np.asarray(det_score, dtype=np.float64), 0.0, 1.0)
    m = np.clip(np.asarray(mask_iou, dtype=np.float64), 0.0, 1.0)
    return np.sqrt(d * m).astype(np.float32)




def model_label(model: Any) -> str | None:
    """A model's version label for the registry (``version``, else ``name``, else its class)."""
    if model is None:
        return None
    return getattr(model, "version", None) or getattr(model, "name", None) or type(model).__name__

def label_inputs(
    image: np.ndarray | str | Path | bytes, classes: list[str], confidence: float, image_key: str | None
) -> tuple[np.ndarray, list[str], str | None]:
    """Checks a labeler's arguments and loads the image: ``(RGB uint8 (H, W, 3), classes, key)``.

    Class names are stripped (empty ones dropped); a path's ``image_key`` defaults to the file's
    sha256 (the SAM2 cache key). Shared by every labeler (:class:`AutoLabeler`, a trained run).

    Raises:
        ValueError: no classes, a confidence outside [0, 1], or an unusable image.
    """
    classes = [str(c).strip() for c in classes if str(c).strip()]
    if not classes:
        raise ValueError("classes: expected at least one class name, got none")
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence: expected a value in [0, 1], got {confidence}")
    if not isinstance(image, np.ndarray):
        from pipeline.image_io import image_sha256, load_image

        if image_key is None and isinstance(image, (str, Path)):
            image_key = image_sha256(image)
        image = load_image(image)
    return check_image(image), classes, image_key

def set_image(segmenter: Any, image: np.ndarray, image_key: str | None) -> None:
    """``segmenter.set_image(image, key=image_key)`` for segmenters that cache by key (SAM2);
    plain ``set_image(image)`` for those that do not (GrabCut) or when there is no key."""
    if image_key is not None and "key" in inspect.signature(segmenter.set_image).parameters:
        segmenter.set_image(image, key=image_key)
    else:
        segmenter.set_image(image)


class AutoLabeler:
    """Boxes, masks and embeddings for named classes in one image.

    Args:
        detector: has ``detect(image, classes, *, synonyms=None, confidence=0.0) -> Detections``.
        segmenter: a ``pipeline.segment.base.Segmenter`` (SAM2 or GrabCut). When it has a
            ``lock`` attribute (Sam2Segmenter does) it is held from ``set_image`` to the last
            mask, so a UI user clicking on another image at the same time cannot interleave.
        embedder: optional; has ``embed(image, xyxy, masks) -> (N, D)``, ``dim`` and ``version``.
        dedupe_iou: two masks of the same class with IoU above this are one object.

    Attributes:
        last_timings: seconds per stage of the last ``label`` call (keys ``TIMING_KEYS``).
        last_counts: objects after each stage of the last call (``detected``, ``kept``).
    """

    def __init__(self, detector: Any, segmenter: Any, embedder: Any | None = None, dedupe_iou: float = 0.8) -> None:
        if not 0.0 < dedupe_iou <= 1.0:
            raise ValueError(f"dedupe_iou: expected a value in (0, 1], got {dedupe_iou}")
        self.detector = detector
        self.segmenter = segmenter
        self.embedder = embedder
        self.dedupe_iou = float(dedupe_iou)
        self.last_timings: dict[str, float] = {}
        self.last_counts: dict[str, int] = {}

    @property
    def model_names(self) -> dict[str, str | None]:
        """Version labels of the models in use (for the registry's detection_model etc.)."""

        return {"detector": model_label(self.detector), "segmenter": model_label(self.segmenter),
                "embedder": model_label(self.embedder)}

    def _empty(self, classes: list[str], hw: tuple[int, int]) -> Detections:
        det = Detections.empty(classes, image_hw=hw)
        det.data = {"det_score": np.zeros(0, np.float32), "mask_iou": np.zeros(0, np.float32)}
        if self.embedder is not None:
            det.data["embedding"] = np.zeros((0, int(self.embedder.dim)), np.float32)
        return det

    def label(
        self,
        image: np.ndarray | str | Path | bytes,
        classes: list[str],
        *,
        confidence: float = 0.3,
        synonyms: dict[str, list[str]] | None = None,
        image_key: str | None = None,
    ) -> Detections:
        """Label one image.

        Args:
            image: (H, W, 3) uint8 RGB, or a path / encoded bytes (loaded with
                ``pipeline.image_io.load_image``: EXIF orientation, mode conversion, bomb limit).
            classes: class names to find, e.g. ``["person", "car"]``; the result's
                ``class_names`` are exactly these.
            confidence: keep objects whose final confidence (see module doc) is >= this.
            synonyms: class name -> other names the detector may also be prompted with.
            image_key: the key the segmenter caches this image's embedding under. Every caller
                passes the image file's sha256 (the registry's ``content_hash``), so a click in
                Refine after auto-labeling reuses the embedding instead of encoding again. None:
                a path's sha256, else the segmenter's own pixel hash.

        Returns:
            Detections with masks and ``data`` as described in the module docstring.

        Raises:
            ValueError: no classes, a confidence outside [0, 1], or an unusable image
                (``pipeline.image_io.ImageLoadError`` is a ValueError).
        """
        t_start = time.perf_counter()
        timings = dict.fromkeys(TIMING_KEYS, 0.0)
        image, classes, image_key = label_inputs(image, classes, confidence, image_key)
        timings["load"] = time.perf_counter() - t_start

        t = time.perf_counter()
        det = self.detector.detect(image, classes, synonyms=synonyms, confidence=confidence**2)
        timings["detect"] = time.perf_counter() - t
        counts = {"detected": 0, "kept": 0}
        result = self._segment_and_embed(image, image_key, det, classes, confidence, timings, counts)
        return self._finish(result, timings, counts, t_start)

    def label_many(
        self,
        images: Sequence[np.ndarray | str | Path | bytes],
        classes: list[str],
        *,
        confidence: float = 0.3,
        synonyms: dict[str, list[str]] | None = None,
        image_keys: Sequence[str | None] | None = None,
    ) -> list[Detections]:
        """:meth:`label` for several images, batched where the models allow it: the detector's
        ``detect_many`` (Florence-2: one ``generate`` per prompt for all the images) and the
        segmenter's ``cache_images`` (SAM2: one encoder forward per ``cache_size`` images); each
        image's masks, dedupe and embeddings then as in :meth:`label`. Models without those
        methods run image by image. The results equal :meth:`label`'s, one per image, in order
        (``tests/pipeline/test_autolabel_batch.py``); ``last_timings`` / ``last_counts`` are
        the batch's totals.

        Raises:
            ValueError: as :meth:`label`, the bad image named by its index.
        """
        t_start = time.perf_counter()
        timings = dict.fromkeys(TIMING_KEYS, 0.0)
        keys = list(image_keys) if image_keys is not None else [None] * len(images)
        if len(keys) != len(images):
            raise ValueError(f"image_keys: expected one per image ({len(images)}), got {len(keys)}")
        loaded = check_each(list(zip(images, keys, strict=True)),
                            lambda pair: label_inputs(pair[0], classes, confidence, pair[1]))
        if not loaded:
            return []
        classes = loaded[0][1]
        pixels = [im for im, _, _ in loaded]
        timings["load"] = time.perf_counter() - t_start

        t = time.perf_counter()
        if hasattr(self.detector, "detect_many"):
            dets = self.detector.detect_many(pixels, classes, synonyms=synonyms, confidence=confidence**2)
        else:
            dets = [self.detector.detect(im, classes, synonyms=synonyms, confidence=confidence**2) for im in pixels]
        timings["detect"] = time.perf_counter() - t
        counts = {"detected": 0, "kept": 0}
        results: list[Detections] = []
        lock = getattr(self.segmenter, "lock", None)
        step = max(1, int(getattr(self.segmenter, "cache_size", 1)))
        for lo in range(0, len(loaded), step):
            chunk = range(lo, min(lo + step, len(loaded)))
            with lock if lock is not None else contextlib.nullcontext():
                found = [i for i in chunk if len(dets[i])]
                if len(found) > 1 and hasattr(self.segmenter, "cache_images"):
                    t = time.perf_counter()
                    self.segmenter.cache_images([pixels[i] for i in found], [loaded[i][2] for i in found])
                    timings["segment_encode"] += time.perf_counter() - t
                for i in chunk:
                    results.append(self._segment_and_embed(pixels[i], loaded[i][2], dets[i], classes, confidence,
                                                           timings, counts))
        timings["total"] = time.perf_counter() - t_start
        self.last_timings, self.last_counts = timings, counts
        return results

    def _segment_and_embed(self, image: np.ndarray, image_key: str | None, det: Detections, classes: list[str],
                           confidence: float, timings: dict[str, float], counts: dict[str, int]) -> Detections:
        """Masks, confidence, dedupe and embeddings of one image's detections; adds to
        ``timings`` and ``counts``."""
        hw = (image.shape[0], image.shape[1])
        det_score = np.asarray(det.confidence, dtype=np.float32)
        counts["detected"] += len(det)
        if len(det) == 0:
            return self._empty(classes, hw)

        lock = getattr(self.segmenter, "lock", None)
        with lock if lock is not None else contextlib.nullcontext():
            t = time.perf_counter()
            set_image(self.segmenter, image, image_key)
            timings["segment_encode"] += time.perf_counter() - t
            t = time.perf_counter()
            masks, mask_iou = self.segmenter.predict_boxes(det.xyxy)
            timings["segment_decode"] += time.perf_counter() - t
        mask_iou = np.asarray(mask_iou, dtype=np.float32)

        t = time.perf_counter()
        final = combine_confidence(det_score, mask_iou)
        keep = final >= confidence
        idx = np.flatnonzero(keep)
        if len(idx):
            sub_keep = dedupe_masks(masks[idx], final[idx], det.class_id[idx], iou_threshold=self.dedupe_iou)
            idx = idx[sub_keep]
        timings["dedupe"] += time.perf_counter() - t
        counts["kept"] += len(idx)
        if len(idx) == 0:
            return self._empty(det.class_names or classes, hw)

        data = {k: np.asarray(v)[idx] for k, v in det.data.items()}
        data["det_score"] = det_score[idx]
        data["mask_iou"] = mask_iou[idx]
        if self.embedder is not None:
            t = time.perf_counter()
            data["embedding"] = np.asarray(self.embedder.embed(image, det.xyxy[idx], masks[idx]), dtype=np.float32)
            timings["embed"] += time.perf_counter() - t
        return Detections(
            xyxy=det.xyxy[idx],
            confidence=final[idx],
            class_id=det.class_id[idx],
            class_names=det.class_names,
            mask=masks[idx],
            data=data,
        )

    def _finish(self, det: Detections, timings: dict[str, float], counts: dict[str, int], t_start: float) -> Detections:
        timings["total"] = time.perf_counter() - t_start
        self.last_timings = timings
        self.last_counts = counts
        return det
