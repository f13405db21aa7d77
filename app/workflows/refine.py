"""Click-to-refine a mask: session state, one prediction per click, undo/reset, accept.

Coordinates: clicks and boxes are absolute pixels of the source image, points (x, y) with
x = column; boxes ``xyxy``; masks (H, W) bool in the same grid. Labels: 1 = positive (add),
0 = negative (remove).

The session is plain data (kept per browser session in ``gr.State``); the image itself stays in
the shared decoded-image LRU (``render.IMAGES``), so sessions stay small.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.workflows.autolabel_session import MANUAL
from app.workflows.render import IMAGES, render_overlay

MODES = ("positive", "negative", "box")


@dataclass
class RefineSession:
    """One object (or a fresh image) being refined.

    Attributes:
        image_path: the image file (inside the data folder for registered sources).
        image_key: content hash used to guard the shared predictor.
        width, height: image size in pixels.
        object_id: the object being refined, or None for a new object on ``source_id``/image.
        source_id: the registered source, when known.
        category: class name (new objects need one on accept).
        points: clicks (x, y) absolute pixels; labels: 1 / 0 per click.
        box: optional xyxy prompt; box_corner: first corner while a box is being drawn.
        mask: the current mask (H, W) bool or None; low_res: the model's previous logits (SAM2).
        quality: the segmenter's own estimate for the current mask in [0, 1] (SAM2's predicted
            IoU, GrabCut's colour separation), None for the stored mask.
        history: stack of (points, labels, box, box_corner, mask, low_res, quality) for undo;
            future: the states undone since the last edit, for redo.
        timings: seconds each prediction took, in click order.
    """

    image_path: str
    image_key: str
    width: int
    height: int
    object_id: str | None = None
    source_id: str | None = None
    category: str | None = None
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    box_corner: tuple[float, float] | None = None
    mask: np.ndarray | None = None
    initial_mask: np.ndarray | None = None
    initial_box: tuple[float, float, float, float] | None = None
    low_res: np.ndarray | None = None
    quality: float | None = None
    history: list[tuple] = field(default_factory=list)
    future: list[tuple] = field(default_factory=list)
    timings: list[float] = field(default_factory=list)

    def image(self) -> np.ndarray:
        return IMAGES.get(self.image_path)

    def render(self) -> np.ndarray:
        """The image with the current mask, box, draft corner and clicks drawn."""
        image = self.image()
        label = self.category or "object"
        box = self.box if self.box is not None else (None if self.mask is not None else self.initial_box)
        pts = list(self.points)
        plabels = list(self.labels)
        if self.box_corner is not None:
            pts.append(self.box_corner)
            plabels.append(1)
        return render_overlay(
            image,
            None if box is None else [box],
            None if self.mask is None else self.mask[None],
            [label],
            None,
            points=pts,
            point_labels=plabels,
            numbers=False,
        )

    def summary(self) -> str:
        area = int(self.mask.sum()) if self.mask is not None else 0
        last = f"{self.timings[-1] * 1000:.0f} ms" if self.timings else "-"
        who = self.object_id or "new object"
        return (f"**{who}** ({self.category or 'no class'}) · {len(self.points)} clicks · "
                f"box {'yes' if self.box else 'no'} · mask area {area} px · last update {last}")


def open_object(reg: Any, object_id: str) -> RefineSession:
    """Starts a session on a registered object (its stored mask and box)."""
    object_id = (object_id or "").strip()
    if not object_id:
        raise ValueError("object id: expected an id like obj_…, got nothing; pick one in Review or Search")
    obj = reg.get_object(object_id)
    src = reg.get_source(obj["source_id"])
    x, y, w, h = obj["bbox_xywh"]
    box = (float(x), float(y), float(x + w), float(y + h))
    mask = reg.get_mask(object_id)
    from pipeline.image_io import image_sha256

    path = reg.image_path(obj)  # the frame's PNG for an object on a video frame, else the source file
    return RefineSession(
        image_path=str(path),
        image_key=(None if obj.get("frame_id") else src.get("content_hash")) or image_sha256(path),
        width=int(src["width"]),
        height=int(src["height"]),
        object_id=object_id,
        source_id=obj["source_id"],
        category=obj["category"],
        mask=None if mask is None else np.asarray(mask, bool),
        initial_mask=None if mask is None else np.asarray(mask, bool),
        initial_box=box,
    )


def open_image(path: str | Path, *, category: str | None = None, source_id: str | None = None) -> RefineSession:
    """Starts a session on an image file, with no object yet (accept creates one)."""
    from pipeline.image_io import image_sha256

    image = IMAGES.get(path)
    return RefineSession(
        image_path=str(path),
        image_key=image_sha256(path),
        width=int(image.shape[1]),
        height=int(image.shape[0]),
        source_id=source_id,
        category=category,
    )


def _snapshot(s: RefineSession) -> tuple:
    return (list(s.points), list(s.labels), s.box, s.box_corner, s.mask, s.low_res, s.quality)


def _push(s: RefineSession) -> None:
    """Records the state before an edit (for undo); a new edit drops what could be redone."""
    s.history.append(_snapshot(s))
    s.future.clear()


def _clip(s: RefineSession, x: float, y: float) -> tuple[float, float]:
    if not (0 <= x <= s.width and 0 <= y <= s.height):
        raise ValueError(f"click: expected a point inside the {s.width}x{s.height} image, got ({x:.0f}, {y:.0f})")
    return float(min(x, s.width - 1)), float(min(y, s.height - 1))


def predict(ctx: Any, s: RefineSession, segmenter: str | None) -> float:
    """Runs the segmenter on the session's prompts; updates mask/low_res; returns seconds."""
    t0 = time.perf_counter()
    image = s.image()
    with ctx.segment(segmenter, image, s.image_key) as seg:
        if s.points:
            box = None if s.box is None else np.asarray(s.box, np.float32)
            # Seeding with the object's stored box keeps the object in place when the user only
            # clicks; grown to hold every positive click so a click outside can extend the object.
            if box is None and s.initial_box is not None:
                box = np.asarray(s.initial_box, np.float32)
                pos = np.asarray([p for p, lab in zip(s.points, s.labels, strict=True) if lab], np.float32).reshape(-1, 2)
                if len(pos):
                    box = np.concatenate([np.minimum(box[:2], pos.min(0) - 4), np.maximum(box[2:], pos.max(0) + 4)])
                    box = np.clip(box, 0, [s.width, s.height, s.width, s.height]).astype(np.float32)
            pred = seg.predict_points(
                np.asarray(s.points, np.float32), np.asarray(s.labels, np.int64),
                box=box, mask_input=s.low_res if s.low_res is not None else s.mask,
                multimask=len(s.points) == 1 and box is None,
            )
            s.mask, s.low_res = np.asarray(pred.mask, bool), pred.low_res_logits
            s.quality = float(np.clip(pred.score, 0.0, 1.0))
        elif s.box is not None:
            masks, scores = seg.predict_boxes(np.asarray([s.box], np.float32))
            s.mask, s.low_res = np.asarray(masks[0], bool), None
            s.quality = float(np.clip(np.asarray(scores, np.float64).reshape(-1)[0], 0.0, 1.0))
        else:
            s.mask, s.low_res, s.quality = s.initial_mask, None, None
    dt = time.perf_counter() - t0
    s.timings.append(dt)
    return dt


def click(ctx: Any, s: RefineSession, x: float, y: float, mode: str, segmenter: str | None = None) -> RefineSession:
    """Applies one click: a positive/negative point, or a box corner (two clicks = a box).

    A completed box replaces the prompt: earlier clicks and the previous mask are dropped (undo
    brings them back), later clicks refine the box's mask.

    Args:
        x, y: absolute pixels (x = column), as ``gr.SelectData.index`` gives them.
        mode: "positive", "negative" or "box".
    """
    if mode not in MODES:
        raise ValueError(f"click mode: expected one of {MODES}, got {mode!r}")
    x, y = _clip(s, x, y)
    _push(s)
    if mode == "box":
        if s.box_corner is None:
            s.box_corner = (x, y)
            return s  # wait for the second corner; nothing to predict yet
        (ax, ay), s.box_corner = s.box_corner, None
        x0, x1 = sorted((ax, x))
        y0, y1 = sorted((ay, y))
        if x1 - x0 < 2 or y1 - y0 < 2:
            s.history.pop()
            raise ValueError("box: expected two different corners at least 2 px apart; click the opposite corner")
        # A new box is a new prompt: the clicks and mask made before it described the old
        # outline, and feeding them with the box would pull the mask back towards it.
        s.box = (x0, y0, x1, y1)
        s.points, s.labels, s.low_res, s.mask = [], [], None, None
    else:
        s.points.append((x, y))
        s.labels.append(1 if mode == "positive" else 0)
    try:
        predict(ctx, s, segmenter)
    except Exception:
        undo_state(s)  # a failed prediction must not leave a click the mask does not reflect
        s.future.clear()
        raise
    return s


def undo_state(s: RefineSession) -> bool:
    """Restores the state before the last click; False when there is nothing to undo."""
    if not s.history:
        return False
    s.future.append(_snapshot(s))
    s.points, s.labels, s.box, s.box_corner, s.mask, s.low_res, s.quality = s.history.pop()
    return True


def redo_state(s: RefineSession) -> bool:
    """Re-applies the last undone edit; False when there is nothing to redo."""
    if not s.future:
        return False
    s.history.append(_snapshot(s))
    s.points, s.labels, s.box, s.box_corner, s.mask, s.low_res, s.quality = s.future.pop()
    return True


def reset(s: RefineSession) -> RefineSession:
    """Drops every click and box and restores the stored mask."""
    s.points, s.labels, s.box, s.box_corner = [], [], None, None
    s.mask, s.low_res, s.quality, s.history, s.future = s.initial_mask, None, None, [], []
    return s


def accept(reg: Any, s: RefineSession, *, category: str | None = None, project: str | None = None,
           validated_by: str | None = None) -> str:
    """Writes the mask (and its bounding box) to the registry; returns the object id.

    For a session with no object yet, registers the source (if needed) and a new object with
    ``category`` (required), ``detection_model = "manual"`` and as confidence the segmenter's
    own estimate of the mask (so Review still brings a poor hand-made mask first). The refined
    object keeps its validation state.
    """
    if s.mask is None or not s.mask.any():
        raise ValueError("mask: expected a non-empty mask, got none; click on the object first")
    ys, xs = np.nonzero(s.mask)
    xyxy = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    category = (category or "").strip() or s.category
    if s.object_id:
        reg.update_object(s.object_id, mask=s.mask, xyxy=xyxy, category=category or None)
    else:
        if not category:
            raise ValueError("class: expected a class name for the new object, got nothing; type one")
        from registry.facade import ObjectIn

        if s.source_id is None:
            s.source_id = reg.register_source(s.image_path, width=s.width, height=s.height, project=project)
        res = reg.register_objects(
            s.source_id,
            [ObjectIn(category=category, xyxy=xyxy, mask=s.mask, confidence=s.quality,
                      detection_model=MANUAL, validated_by=validated_by,
                      metadata={"created_by": validated_by} if validated_by else None)],
            project=project, dedupe=False,
        )
        s.object_id = res.object_ids[0]
    s.category = category
    s.initial_mask, s.initial_box = s.mask, xyxy
    s.points, s.labels, s.box, s.history, s.future, s.low_res = [], [], None, [], [], None
    return s.object_id  # type: ignore[return-value]


def refine_once(ctx: Any, object_id: str, points: list[list[float]], labels: list[int],
                box: list[float] | None = None, segmenter: str | None = None, accept_mask: bool = False) -> dict:
    """Stateless refine for the API: prompts in, mask summary out (optionally written).

    Returns:
        {"object_id", "area", "bbox_xyxy", "seconds", "accepted"}.
    """
    s = open_object(ctx.registry, object_id)
    if labels and len(labels) != len(points):
        raise ValueError(f"labels: expected {len(points)} values (one per point), got {len(labels)}")
    s.points = [(float(p[0]), float(p[1])) for p in points]
    s.labels = [int(v) for v in (labels or [1] * len(points))]
    s.box = tuple(float(v) for v in box) if box else None  # type: ignore[assignment]
    if not s.points and s.box is None:
        raise ValueError("prompts: expected at least one point or a box, got neither")
    dt = predict(ctx, s, segmenter)
    ys, xs = np.nonzero(s.mask) if s.mask is not None else (np.zeros(0), np.zeros(0))
    bbox = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)] if len(xs) else None
    if accept_mask:
        accept(ctx.registry, s)
    return {"object_id": object_id, "area": int(len(xs)), "bbox_xyxy": bbox, "seconds": round(dt, 4),
            "accepted": bool(accept_mask)}
