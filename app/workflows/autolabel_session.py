"""Auto-label with a preview: label uploads, let the user drop or add objects, then save.

Images are (H, W, 3) uint8 RGB; boxes ``xyxy`` absolute pixels; masks (N, H, W) bool; all as
in ``pipeline.types.Detections``. Nothing is written to the registry before ``save``.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.workflows.batch_label import default_batch_images, label_batch
from app.workflows.render import IMAGES, render_overlay
from pipeline.types import Detections

log = logging.getLogger(__name__)


@dataclass
class ImageResult:
    """One uploaded image and its (unsaved) detections."""

    path: str
    name: str
    width: int
    height: int
    det: Detections
    saved_ids: list[str | None] = field(default_factory=list)


def parse_classes(text: str | Sequence[str] | None) -> list[str]:
    """"person, red car ,dog" -> ["person", "red car", "dog"] (order kept, duplicates dropped)."""
    items = text.split(",") if isinstance(text, str) else list(text or [])
    out: list[str] = []
    for c in items:
        c = str(c).strip()
        if c and c.lower() not in {o.lower() for o in out}:
            out.append(c)
    return out


def load_uploads(paths: Sequence[str]) -> tuple[list[ImageResult], list[str]]:
    """Decodes uploads; returns (images with empty detections, "name: reason" for bad files)."""
    from pipeline.image_io import ImageLoadError

    good, bad = [], []
    seen: set[str] = set()
    for p in paths:
        name = Path(p).name
        stem, suffix, n = Path(p).stem, Path(p).suffix, 1
        while name in seen:  # table keys are "<name>#<k>": two uploads named alike stay apart
            n += 1
            name = f"{stem} ({n}){suffix}"
        seen.add(name)
        try:
            image = IMAGES.get(p)
        except (ImageLoadError, ValueError, OSError) as exc:
            bad.append(f"{name}: {exc}")
            continue
        h, w = image.shape[:2]
        good.append(ImageResult(str(p), name, w, h, Detections.empty([], (h, w))))
    return good, bad


def label_images(labeler: Any, images: list[ImageResult], classes: list[str], *, confidence: float = 0.3,
                 progress: Callable[[int, int, str], None] | None = None,
                 batch_images: int | None = None) -> list[str]:
    """Runs the labeler on each image in place; returns "name: reason" for images that failed.

    ``batch_images`` images go through the labeler together (``app.workflows.batch_label``;
    default 8 on a GPU, 1 on a CPU); a batch that fails is labeled one by one, so each failure
    stays with its image.
    """
    if not classes:
        raise ValueError("classes: expected at least one class name (comma-separated), got nothing")
    if not 0.0 <= float(confidence) <= 1.0:
        raise ValueError(f"confidence: expected a value in [0, 1], got {confidence}")
    from pipeline.image_io import image_sha256

    step = max(1, int(batch_images or default_batch_images(labeler)))
    failed = []
    for lo in range(0, len(images), step):
        chunk = images[lo:lo + step]
        if progress:
            progress(lo, len(images), chunk[0].name)
        pixels, keys, ok = [], [], []
        for r in chunk:
            try:
                pixels.append(np.asarray(IMAGES.get(r.path)))
                keys.append(image_sha256(r.path))
                ok.append(r)
            except Exception as exc:
                log.exception("loading %s failed", r.path)
                failed.append(f"{r.name}: {exc}")
        for r, det in zip(ok, label_batch(labeler, pixels, keys, classes, confidence=float(confidence)), strict=True):
            if isinstance(det, Exception):
                if type(det).__name__ == "WeightsMissingError":
                    raise det
                log.error("labeling %s failed", r.path, exc_info=det)
                failed.append(f"{r.name}: {det}")
            else:
                r.det = det
    if progress:
        progress(len(images), len(images), "done")
    return failed


def append_object(det: Detections, xyxy: Sequence[float], mask: np.ndarray | None, class_name: str,
                  confidence: float = 1.0, image_hw: tuple[int, int] | None = None,
                  extra: dict[str, Any] | None = None) -> Detections:
    """A new Detections with one more object (class names extended when new).

    ``extra`` holds the new object's values for ``det.data`` keys (e.g. ``"embedding"``: (D,),
    ``"detection_model"``: ``"manual"``). Missing float columns get NaN and missing object
    columns None, except ``"embedding"``: without a value for the new row the column is dropped
    rather than registering a made-up vector. A scalar for a column the other rows lack starts
    that column (None for them).
    """
    extra = extra or {}
    names = list(det.class_names)
    if class_name not in names:
        names.append(class_name)
    n = len(det)
    if det.mask is not None or mask is not None:
        hw = image_hw or (mask.shape if mask is not None else det.mask.shape[1:])
        old = det.mask if det.mask is not None else np.zeros((n, *hw), bool)
        new = mask if mask is not None else np.zeros(hw, bool)
        masks = np.concatenate([old, np.asarray(new, bool)[None]], axis=0)
    else:
        masks = None
    data = {}
    for k, v in det.data.items():
        v = np.asarray(v)
        if k in extra:
            data[k] = np.concatenate([v, np.asarray(extra[k], v.dtype).reshape(1, *v.shape[1:])])
        elif k != "embedding" and v.dtype.kind == "f":
            data[k] = np.concatenate([v, np.full((1, *v.shape[1:]), np.nan, v.dtype)])
        elif v.dtype == object and v.ndim == 1:  # e.g. "detection_model", "created_by"
            data[k] = np.concatenate([v, np.asarray([None], object)])
    for k, value in extra.items():  # a column the existing rows do not have yet
        if k not in data and k != "embedding" and not isinstance(value, np.ndarray):
            data[k] = np.asarray([None] * n + [value], object)
    return Detections(
        xyxy=np.concatenate([det.xyxy, np.asarray([xyxy], np.float32)]),
        confidence=np.concatenate([det.confidence, [confidence]]),
        class_id=np.concatenate([det.class_id, [names.index(class_name)]]),
        class_names=names, mask=masks, data=data,
    )


MANUAL = "manual"  # detection_model of objects a person drew


def add_manual(ctx: Any, r: ImageResult, xyxy: Sequence[float], class_name: str, segmenter: str | None = None,
               *, user: str | None = None) -> ImageResult:
    """Adds a hand-drawn box; the segmenter turns it into a mask (embedded when possible).

    The object says it is manual (``detection_model = "manual"``, ``created_by = user``) and its
    confidence is the segmenter's own estimate of the mask (SAM2's predicted IoU, GrabCut's
    colour separation), not 1.0: a poor mask of a hand-drawn box still comes first in Review.
    """
    class_name = (class_name or "").strip()
    if not class_name:
        raise ValueError("class: expected a class name for the box, got nothing; type one")
    from pipeline.image_io import image_sha256

    image = IMAGES.get(r.path)
    with ctx.segment(segmenter, image, image_sha256(r.path)) as seg:
        masks, scores = seg.predict_boxes(np.asarray([xyxy], np.float32))
    mask = np.asarray(masks[0], bool)
    quality = float(np.clip(np.asarray(scores, np.float64).reshape(-1)[0], 0.0, 1.0)) if mask.any() else 0.0
    extra: dict[str, Any] = {"detection_model": MANUAL, "created_by": user}
    if "embedding" in r.det.data or len(r.det) == 0:
        try:
            extra["embedding"] = np.asarray(ctx.embedder().embed(np.asarray(image), np.asarray([xyxy], np.float32),
                                                                 mask[None]), np.float32)[0]
        except Exception as exc:  # no embedder weights: the object is still worth saving
            log.info("manual object not embedded: %s", exc)
    if "embedding" not in r.det.data and len(r.det) == 0 and "embedding" in extra:
        r.det.data["embedding"] = np.zeros((0, len(extra["embedding"])), np.float32)
    r.det = append_object(r.det, xyxy, mask, class_name, quality, (r.height, r.width), extra)
    return r


def rows(images: list[ImageResult]) -> list[list]:
    """Table rows: [#, image, class, confidence, area px] with # matching the overlay numbers."""
    out = []
    for r in images:
        for i in range(len(r.det)):
            out.append([f"{r.name}#{i + 1}", r.name, r.det.labels[i], round(float(r.det.confidence[i]), 3),
                        int(r.det.area[i])])
    return out


def keys(images: list[ImageResult]) -> list[str]:
    return [row[0] for row in rows(images)]


def overlay(r: ImageResult, keep: set[str] | None = None) -> np.ndarray:
    """One composited overlay of the image's objects (dropped ones are not drawn)."""
    idx = [i for i in range(len(r.det)) if keep is None or f"{r.name}#{i + 1}" in keep]
    d = r.det
    image = IMAGES.get(r.path)
    sel = d[np.asarray(idx, dtype=np.int64)] if idx else Detections.empty(d.class_names)
    out = render_overlay(image, sel.xyxy, sel.mask, sel.labels, sel.confidence.tolist(), numbers=False)
    # Number labels as the table does (original index), so a dropped object keeps its number gap.
    return out if not idx else _renumber(out, image, d, idx)


def _renumber(out: np.ndarray, image: np.ndarray, d: Detections, idx: list[int]) -> np.ndarray:
    import cv2

    h, w = out.shape[:2]
    scale = max(0.4, min(h, w) / 900)
    for i in idx:
        x0, y0, x1, y1 = (int(v) for v in d.xyxy[i])
        text = f"#{i + 1}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = min(h - base - 1, y1 - 3)
        cv2.rectangle(out, (x0 + 1, ty - th - 2), (x0 + tw + 5, ty + base), (0, 0, 0), -1)
        cv2.putText(out, text, (x0 + 3, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def save(ctx: Any, images: list[ImageResult], keep: set[str] | None, *, project: str | None = None) -> dict:
    """Registers every image and its kept objects; returns {"sources", "objects", "duplicates"}.

    Idempotent per image: a re-save registers nothing twice (sources by content hash, objects
    by the registry's IoU dedupe).
    """
    from app.workflows.register_detections import register_detections

    reg = ctx.registry
    n_obj = n_dup = n_src = 0
    for r in images:
        flags = [keep is None or f"{r.name}#{i + 1}" in keep for i in range(len(r.det))]
        sid = reg.register_source(r.path, width=r.width, height=r.height, project=project or None)
        n_src += 1
        if not any(flags):
            continue
        res = register_detections(reg, sid, r.det, project=project or None, detection_model=ctx.detection_model, keep=flags)
        r.saved_ids = list(res.object_ids)
        n_obj += sum(1 for o in res.object_ids if o)
        n_dup += len(res.duplicates)
    return {"sources": n_src, "objects": n_obj, "duplicates": n_dup}
