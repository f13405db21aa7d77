"""The model gateway: ``/auto_label``, ``/detect``, ``/segment``, ``/detect_and_segment``,
``/models/status`` and ``/models/unload`` (the context's providers: ``ctx.labeler()``,
``ctx.segment(...)``; the registry write goes through ``app.workflows.labeling``).

Every upload is one image (multipart field ``image``); boxes ``xyxy`` are absolute pixels of
it after EXIF orientation, points ``(x, y)`` too; masks come back as COCO RLE. Without weights
a route answers 503 with the command that gets them (see :mod:`app.api.errors`).
"""
from __future__ import annotations

import json
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Form, UploadFile

from app.api.deps import Ctx, saved_upload
from app.api.errors import ApiError
from app.api.schemas_models import AutoLabelOut, DetectOut, SegmentOut, UnloadIn, UnloadOut

router = APIRouter(tags=["models"])

CLASSES_HELP = "comma-separated class names, e.g. 'person, car, dog'"


def rle(mask: np.ndarray) -> dict:
    """(H, W) bool -> compressed COCO RLE with a str ``counts``."""
    from pycocotools import mask as mask_utils

    enc = mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    return {"size": [int(v) for v in enc["size"]], "counts": enc["counts"].decode("ascii")}


def _classes(text: str) -> list[str]:
    from app.workflows.autolabel_session import parse_classes

    names = parse_classes(text)
    if not names:
        raise ApiError(400, f"classes: expected {CLASSES_HELP}, got {text!r}")
    return names


def _json_array(text: str | None, what: str, width: int | None) -> np.ndarray | None:
    if text is None or not text.strip():
        return None
    try:
        arr = np.asarray(json.loads(text), np.float32)
    except (ValueError, TypeError) as exc:
        raise ApiError(400, f"{what}: expected a JSON array of numbers, got {text[:80]!r}") from exc
    if width is not None:
        arr = arr.reshape(-1, width) if arr.size % width == 0 and arr.ndim in (1, 2) else None
        if arr is None or not len(arr) or not np.all(np.isfinite(arr)):
            raise ApiError(400, f"{what}: expected [[{', '.join('v' * width)}], ...] with {width} finite numbers each, "
                                f"got {text[:80]!r}")
    return arr


def _detections(det: Any, object_ids: list | None = None, with_masks: bool = True) -> list[dict]:
    labels = det.labels
    out = []
    for i in range(len(det)):
        out.append({
            "label": labels[i], "bbox_xyxy": [round(float(v), 3) for v in det.xyxy[i]],
            "confidence": round(float(det.confidence[i]), 6),
            "mask": rle(det.mask[i]) if with_masks and det.mask is not None else None,
            "object_id": object_ids[i] if object_ids else None,
        })
    return out


def _size(image: np.ndarray) -> dict:
    return {"width": int(image.shape[1]), "height": int(image.shape[0])}


def _label(ctx: Any, up: Any, classes: list[str], confidence: float) -> Any:
    from app.workflows.labeling import category_synonyms
    from pipeline.image_io import image_sha256

    if not 0.0 <= confidence <= 1.0:
        raise ApiError(400, f"confidence: expected a value in [0, 1], got {confidence}")
    labeler = ctx.labeler()
    return labeler, labeler.label(up.image, classes, confidence=confidence,
                                  synonyms=category_synonyms(ctx.registry, classes) or None,
                                  image_key=image_sha256(up.path))


@router.post("/auto_label", response_model=AutoLabelOut)
def auto_label(ctx: Ctx, image: Annotated[UploadFile, File()], classes: str = Form(..., description=CLASSES_HELP),
               confidence: float = Form(0.3, description="keep objects at or above this final confidence"),
               project: str | None = Form(None, description="project id of the source and objects"),
               store: bool = Form(True, alias="register", description="store the source and objects in the registry")) -> dict:
    """Detect -> segment -> embed -> (register): the Auto-label tab's pipeline for one image."""
    from app.workflows.labeling import labeler_identity
    from app.workflows.register_detections import register_detections

    names = _classes(classes)
    with saved_upload(image, "image") as up:
        labeler, det = _label(ctx, up, names, confidence)
        ref = None
        if store:
            h, w = up.image.shape[:2]
            reg = ctx.registry
            source_id = reg.register_source(up.path, width=w, height=h, project=project or None)
            models = labeler_identity(labeler)
            res = register_detections(reg, source_id, det, project=project or None,
                                      detection_model=models.get("detector") or ctx.detection_model)
            ref = {"source_id": source_id, "object_ids": list(res.object_ids), "duplicates": len(res.duplicates)}
        size = _size(up.image)
    dets = _detections(det, ref["object_ids"] if ref else None)
    return {"image_size": size, "detections": dets, "count": len(dets),
            "masks_count": 0 if det.mask is None else int(len(det)), "registered": ref is not None, "registry": ref}


@router.post("/detect_and_segment", response_model=DetectOut)
def detect_and_segment(ctx: Ctx, image: Annotated[UploadFile, File()], classes: str = Form(..., description=CLASSES_HELP),
                       confidence: float = Form(0.3)) -> dict:
    """Boxes and masks for the classes; nothing is stored."""
    names = _classes(classes)
    with saved_upload(image, "image") as up:
        _, det = _label(ctx, up, names, confidence)
        size = _size(up.image)
    dets = _detections(det)
    return {"image_size": size, "detections": dets, "count": len(dets)}


@router.post("/detect", response_model=DetectOut)
def detect(ctx: Ctx, image: Annotated[UploadFile, File()], classes: str = Form(..., description=CLASSES_HELP),
           confidence: float = Form(0.3, description="minimum detector score")) -> dict:
    """Boxes only (the detector alone when the labeler exposes it; masks are never returned)."""
    from app.workflows.labeling import category_synonyms

    names = _classes(classes)
    if not 0.0 <= confidence <= 1.0:
        raise ApiError(400, f"confidence: expected a value in [0, 1], got {confidence}")
    with saved_upload(image, "image") as up:
        labeler = ctx.labeler()
        detector = getattr(labeler, "detector", None)
        synonyms = category_synonyms(ctx.registry, names) or None
        if detector is not None:
            det = detector.detect(up.image, names, synonyms=synonyms, confidence=confidence)
        else:
            det = labeler.label(up.image, names, confidence=confidence, synonyms=synonyms)
        size = _size(up.image)
    dets = _detections(det, with_masks=False)
    return {"image_size": size, "detections": dets, "count": len(dets)}


@router.post("/segment", response_model=SegmentOut)
def segment(ctx: Ctx, image: Annotated[UploadFile, File()],
            boxes: str | None = Form(None, description="JSON [[x0, y0, x1, y1], ...]: one mask per box"),
            points: str | None = Form(None, description="JSON [[x, y], ...]: one mask for all clicks"),
            labels: str | None = Form(None, description="JSON [1, 0, ...] per point: 1 object, 0 background "
                                                        "(default all 1)"),
            box: str | None = Form(None, description="JSON [x0, y0, x1, y1] bounding the clicked object"),
            segmenter: str | None = Form(None, description="sam2 | grabcut (default: the server's)")) -> dict:
    """Masks for boxes, or one mask for positive/negative points (optionally within a box)."""
    from pipeline.image_io import image_sha256
    from pipeline.mask_ops import mask_to_xyxy

    xyxy = _json_array(boxes, "boxes", 4)
    pts = _json_array(points, "points", 2)
    if (xyxy is None) == (pts is None):
        raise ApiError(400, "send either boxes ([[x0, y0, x1, y1], ...]) or points ([[x, y], ...]), not "
                            + ("both" if xyxy is not None else "neither"))
    lab = _json_array(labels, "labels", None)
    if pts is not None:
        lab = np.ones(len(pts), np.int64) if lab is None else lab.reshape(-1).astype(np.int64)
        if len(lab) != len(pts) or not set(lab.tolist()) <= {0, 1}:
            raise ApiError(400, f"labels: expected one 0/1 per point ({len(pts)}), got {labels!r}")
    clip_box = _json_array(box, "box", 4)
    name = (segmenter or ctx.segmenter_names[0]).lower()
    with saved_upload(image, "image") as up:
        h, w = up.image.shape[:2]
        for what, arr in (("boxes", xyxy), ("points", pts), ("box", clip_box)):
            if arr is not None and (arr.min() < 0 or arr[:, 0::2].max() > w or arr[:, 1::2].max() > h):
                raise ApiError(400, f"{what}: expected coordinates inside the {w}x{h} image, got {arr.tolist()}")
        with ctx.segment(name, up.image, image_sha256(up.path)) as seg:
            if xyxy is not None:
                masks, scores = seg.predict_boxes(xyxy)
                pairs = [(np.asarray(m, bool), float(s)) for m, s in zip(masks, scores, strict=True)]
            else:
                pred = seg.predict_points(pts, lab, box=None if clip_box is None else clip_box[0])
                pairs = [(np.asarray(pred.mask, bool), float(pred.score))]
        size = _size(up.image)
    out = []
    for m, s in pairs:
        area = int(m.sum())
        out.append({"mask": rle(m), "score": round(s, 6), "area": area,
                    "bbox_xyxy": [float(v) for v in mask_to_xyxy(m[None])[0]] if area else None})
    return {"image_size": size, "segmenter": name, "masks": out}


@router.get("/models/status")
def models_status(ctx: Ctx) -> dict:
    """Per model role: name, loaded, weights present, path, device (never loads anything)."""
    return {"models": ctx.model_status(), "segmenters": list(ctx.segmenter_names),
            "detection_model": ctx.detection_model}


@router.post("/models/unload", response_model=UnloadOut)
def models_unload(ctx: Ctx, body: UnloadIn | None = None) -> dict:
    """Frees a model's memory (or all); the next request loads it again."""
    if ctx.unload_provider is None:
        raise ApiError(501, "this server's models are not managed by a ModelManager; nothing to unload")
    role = (body or UnloadIn()).role
    before = ctx.model_status()
    ctx.unload_provider(role)
    unloaded = [r for r, s in before.items() if isinstance(s, dict) and s.get("loaded") and (role is None or r == role)]
    return {"unloaded": unloaded, "status": ctx.model_status()}
