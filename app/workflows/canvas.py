"""The labeling canvas (``assets/canvas.js``): what the server sends it and what it sends back.

The browser draws the image, boxes, masks and clicks itself from a *view* (a JSON dict, see
:func:`view`); a user action comes back as a list of *events* (dicts with a ``"type"``), which
:func:`refine_events` (Refine) and ``app.workflows.canvas_autolabel`` (Auto-label) apply to
the session on the server, so the server (and then the registry) holds the truth.

Coordinates: absolute pixels of the source image, points (x, y) with x = column, boxes
``xyxy``; masks (H, W) bool travel as :func:`pipeline.mask_edit.encode_mask` run lengths and
polygons as lists of [x, y] vertices. Event types:

- ``point`` {x, y, label: 1 add / 0 remove}; ``box`` {box: [x0, y0, x1, y1]};
- ``brush`` / ``erase`` {points: [[x, y], ...], radius};
- ``polygon`` {ring: index, old: [[x, y], ...], points: [[x, y], ...]} (old = the outline the
  canvas showed, new = after the edit);
- ``select`` {index}; ``delete`` {index?, clear?}; ``class`` {index: 0-based}; ``nav`` {delta: ±1};
- ``undo``; ``redo``; ``cancel`` (Esc while a Refine delete waits for its confirmation).

In Refine, ``delete`` on a stored object is two steps (:func:`refine_delete`): the first arms it,
a second within ``CONFIRM_S`` seconds deletes the object from the registry; any other event
cancels. ``delete`` with ``clear`` (Shift+Delete) only clears the session's mask.
"""
from __future__ import annotations

import base64
import functools
import itertools
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.workflows import refine as rf
from app.workflows.render import IMAGES, category_color
from pipeline import mask_edit as me

EVENT_TYPES = ("point", "box", "brush", "erase", "polygon", "select", "delete", "class", "nav", "undo", "redo",
               "cancel")
_SEQ = itertools.count(1)
CONFIRM_S = 5.0  # seconds a first Delete in Refine waits for the second one
_clock = time.monotonic


def hex_color(name: str | None) -> str:
    r, g, b = category_color(name or "object")
    return f"#{r:02x}{g:02x}{b:02x}"


MAX_SIDE = 3072  # longer side of the picture sent to the page; masks and clicks stay in full-resolution pixels


@functools.lru_cache(maxsize=8)
def _image_url(path: str, mtime_key: str) -> str:
    import cv2

    rgb = np.asarray(IMAGES.get(path))
    h, w = rgb.shape[:2]
    if max(h, w) > MAX_SIDE:  # the canvas stretches it back to (w, h): only the picture is coarser
        k = MAX_SIDE / max(h, w)
        rgb = cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:  # pragma: no cover - opencv always encodes a uint8 image
        raise RuntimeError(f"image {path}: could not encode it as JPEG for the canvas")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def image_url(path: str, key: str) -> str:
    """The image as the user sees it (8-bit RGB, as the segmenter sees it) in a JPEG data URL,
    at most ``MAX_SIDE`` pixels on its longer side."""
    return _image_url(str(path), key)


def canvas_object(index: int, label: str | None, mask: np.ndarray | None, box: Sequence[float] | None, *,
                  ident: str | None = None, polygons: bool = False, dropped: bool = False,
                  confidence: float | None = None) -> dict:
    """One object of a view: its class colour, box ``xyxy``, mask runs and (optionally) outline."""
    out: dict[str, Any] = {"index": index, "id": ident or f"#{index + 1}", "label": label or "object",
                           "color": hex_color(label), "dropped": bool(dropped)}
    if mask is not None and np.asarray(mask).any():
        out["mask"] = me.encode_mask(mask)
        tight = me.bbox_xyxy(mask)
        out["box"] = [round(float(v), 1) for v in (box if box is not None else tight)]
        if polygons:
            out["polygons"] = me.mask_to_polygons(mask)
    elif box is not None:
        out["box"] = [round(float(v), 1) for v in box]
    if confidence is not None and np.isfinite(confidence):
        out["confidence"] = round(float(confidence), 3)
    return out


def view(*, canvas: str, image_path: str | None, image_key: str | None, width: int, height: int,
         objects: list[dict], classes: Sequence[str], current_class: str | None = None,
         selected: int | None = None, points: Sequence[Sequence[float]] = (), labels: Sequence[int] = (),
         prompt_box: Sequence[float] | None = None, index: int = 0, count: int = 1, note: str = "",
         send_image: bool = True) -> dict:
    """The dict the canvas draws (sent as JSON through a hidden textbox; see docs/canvas.md).

    ``seq`` grows with every view so the page sees each answer, even one equal to the last.
    ``image`` (a data URL) is only included when ``send_image``; the page keeps the last one per
    ``image_key``.
    """
    classes = list(dict.fromkeys(c for c in classes if c))
    out = {
        "canvas": canvas, "seq": next(_SEQ), "image_key": image_key, "width": int(width), "height": int(height),
        "objects": objects, "selected": selected,
        "classes": [{"name": c, "color": hex_color(c), "key": i + 1 if i < 9 else None} for i, c in enumerate(classes)],
        "current_class": current_class, "points": [[float(x), float(y)] for x, y in points],
        "labels": [int(v) for v in labels], "prompt_box": None if prompt_box is None else [float(v) for v in prompt_box],
        "index": int(index), "count": int(count), "note": note,
    }
    if image_path and send_image:
        out["image"] = image_url(image_path, image_key or image_path)
    return out


def empty_view(canvas: str, note: str = "") -> dict:
    return view(canvas=canvas, image_path=None, image_key=None, width=0, height=0, objects=[], classes=[],
                count=0, note=note)


def dumps(v: dict) -> str:
    return json.dumps(v, separators=(",", ":"))


def parse_events(text: str | list | None) -> list[dict]:
    """The events the canvas sent (a JSON list of dicts); ValueError naming a bad one."""
    if not text:
        return []
    events = json.loads(text) if isinstance(text, str) else text
    if isinstance(events, dict):
        events = [events]
    if not isinstance(events, list):
        raise ValueError(f"canvas events: expected a JSON list of events, got {type(events).__name__}")
    for ev in events:
        if not isinstance(ev, dict) or ev.get("type") not in EVENT_TYPES:
            raise ValueError(f"canvas event: expected a dict whose type is one of {EVENT_TYPES}, got {ev!r}")
    return events


def _xy(ev: dict) -> tuple[float, float]:
    try:
        return float(ev["x"]), float(ev["y"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"canvas {ev.get('type')} event: expected numeric x and y, got {ev!r}") from exc


def _box(ev: dict, width: int, height: int) -> tuple[float, float, float, float]:
    b = ev.get("box")
    if not isinstance(b, list | tuple) or len(b) != 4:
        raise ValueError(f"canvas box event: expected box [x0, y0, x1, y1], got {b!r}")
    x0, x1 = sorted((float(b[0]), float(b[2])))
    y0, y1 = sorted((float(b[1]), float(b[3])))
    x0, y0 = max(0.0, x0), max(0.0, y0)
    x1, y1 = min(float(width), x1), min(float(height), y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError(f"box: expected a box at least 2 px wide and tall inside the image, got {list(b)}; drag further")
    return x0, y0, x1, y1


def edit_mask(mask: np.ndarray | None, ev: dict, height: int, width: int) -> np.ndarray:
    """Applies a ``brush`` / ``erase`` / ``polygon`` event to a mask; returns the new mask."""
    base = np.zeros((height, width), bool) if mask is None else np.asarray(mask, bool)
    t = ev["type"]
    if t in ("brush", "erase"):
        return me.paint_stroke(base, ev.get("points") or [], float(ev.get("radius") or 0), erase=t == "erase")
    if t == "polygon":
        old = ev.get("old")
        if not old:
            rings = me.mask_to_polygons(base)
            i = int(ev.get("ring", 0))
            if not 0 <= i < len(rings):
                raise ValueError(f"polygon: expected ring 0..{len(rings) - 1} of the mask, got {i}")
            old = rings[i]
        return me.replace_polygon(base, old, ev.get("points") or [])
    raise ValueError(f"canvas event {t!r} is not a mask edit")


# --- Refine -------------------------------------------------------------------------------

def refine_classes(reg: Any, s: rf.RefineSession | None) -> list[str]:
    """The legend of the Refine canvas: the registry's classes (plus the session's own)."""
    names = [c["name"] for c in reg.list_categories()]
    if s is not None and s.category and s.category not in names:
        names.insert(0, s.category)
    return names


def refine_siblings(reg: Any, s: rf.RefineSession) -> list[str]:
    """The ids of the objects on the session's image (same source and frame), oldest first:
    what ←/→ step through in Refine."""
    if not s.object_id or not s.source_id:
        return []
    frame = reg.get_object(s.object_id).get("frame_id")
    ids = [o["object_id"] for o in reg.list_objects(source_id=s.source_id, order="created_asc", limit=1000)
           if o.get("frame_id") == frame]
    return ids if s.object_id in ids else [s.object_id]


def refine_view(s: rf.RefineSession | None, classes: Sequence[str], note: str = "",
                siblings: Sequence[str] | None = None) -> dict:
    """The Refine canvas view: one object (the session's mask), its clicks and box prompt;
    "n of N" counts the objects on its image (``siblings``)."""
    if s is None:
        return empty_view("refine", note)
    sent = getattr(s, "canvas_image", None)
    box = s.box if s.box is not None else (None if s.mask is not None else s.initial_box)
    obj = canvas_object(0, s.category, s.mask, box, ident=s.object_id or "new", polygons=True)
    pts, labs = list(s.points), list(s.labels)
    if s.box_corner is not None:  # the first corner of a two-click box
        pts, labs = [*pts, s.box_corner], [*labs, 1]
    sib = list(siblings or [])
    at = sib.index(s.object_id) if s.object_id in sib else 0
    v = view(canvas="refine", image_path=s.image_path, image_key=s.image_key, width=s.width, height=s.height,
             objects=[obj], classes=classes, current_class=s.category, selected=0, points=pts, labels=labs,
             prompt_box=s.box, note=note, send_image=sent != s.image_key, index=at, count=max(1, len(sib)))
    v["pos_label"] = f"object {at + 1} of {len(sib)} on this image" if sib else "new object"
    v["confirm_delete"] = armed_delete(s)
    s.canvas_image = s.image_key  # type: ignore[attr-defined]
    return v


def refine_nav(reg: Any, s: rf.RefineSession, delta: int) -> rf.RefineSession:
    """The session of the previous / next object on the same image (``delta`` = -1 / +1).

    Refuses while the current object has edits not yet accepted (they would be lost).
    """
    sib = refine_siblings(reg, s)
    if s.object_id not in sib:
        raise ValueError("←/→: expected an object opened from the registry, got a new image; accept it first")
    j = min(max(sib.index(s.object_id) + int(delta), 0), len(sib) - 1)
    if sib[j] == s.object_id:
        return s
    if s.history:
        raise ValueError(f"←/→: {s.object_id} has {len(s.history)} edit(s) not accepted; Accept or Reset first")
    nxt = rf.open_object(reg, sib[j])
    if nxt.image_key == getattr(s, "canvas_image", None):
        nxt.canvas_image = s.canvas_image  # type: ignore[attr-defined]  # the page has the image
    return nxt


def refine_events(ctx: Any, s: rf.RefineSession, events: list[dict], segmenter: str | None,
                  classes: Sequence[str]) -> str:
    """Applies the canvas events to a Refine session in order; returns a note for the status.

    Clicks and boxes run the segmenter (``app.workflows.refine``); brush, eraser and polygon
    edits change the session's mask directly (Accept writes it to the registry). Each edit is
    one undo step.
    """
    note = ""
    for ev in events:
        t = ev["type"]
        was = disarm_delete(s)
        if t == "cancel":
            note = f"Delete cancelled: {was} stays." if was else note
        elif t == "point":
            x, y = _xy(ev)
            rf.click(ctx, s, x, y, "positive" if int(ev.get("label", 1)) else "negative", segmenter)
        elif t == "box":
            set_box(ctx, s, _box(ev, s.width, s.height), segmenter)
        elif t in ("brush", "erase", "polygon"):
            new = edit_mask(s.mask, ev, s.height, s.width)
            rf._push(s)
            s.mask, s.low_res = new, None
            note = f"{'Painted' if t == 'brush' else 'Erased' if t == 'erase' else 'Reshaped'} the mask by hand."
        elif t == "delete":
            if s.mask is not None or s.points or s.box is not None:
                rf._push(s)
                s.mask, s.low_res, s.points, s.labels, s.box, s.box_corner = None, None, [], [], None, None
            note = "Mask cleared (Ctrl+Z brings it back); click or draw a box to start again."
        elif t == "undo":
            note = "" if rf.undo_state(s) else "Nothing to undo."
        elif t == "redo":
            note = "" if rf.redo_state(s) else "Nothing to redo."
        elif t == "class":
            i = int(ev.get("index", -1))
            if not 0 <= i < len(classes):
                raise ValueError(f"class key {i + 1}: expected 1..{len(classes)} (the legend), got {i + 1}")
            s.category = classes[i]
            note = f"Class: **{s.category}** (Accept saves it)."
    return note


def set_box(ctx: Any, s: rf.RefineSession, box: tuple[float, float, float, float], segmenter: str | None) -> None:
    """A dragged box replaces the prompt (clicks and mask before it are one undo step away)."""
    rf._push(s)
    s.box, s.box_corner = box, None
    s.points, s.labels, s.low_res, s.mask = [], [], None, None
    try:
        rf.predict(ctx, s, segmenter)
    except Exception:
        rf.undo_state(s)
        s.future.clear()
        raise


# --- Refine: Delete removes the object, after a confirmation --------------------------------

def armed_delete(s: rf.RefineSession | None) -> str | None:
    """The object id a first Delete armed (and still waiting, ``CONFIRM_S``), else None."""
    armed = getattr(s, "delete_armed", None)
    if not armed or armed[0] != s.object_id or _clock() - armed[1] > CONFIRM_S:
        return None
    return armed[0]


def disarm_delete(s: rf.RefineSession | None) -> str | None:
    """Cancels a pending Delete; returns the id it was armed for (None if nothing was)."""
    was = armed_delete(s)
    if s is not None:
        s.delete_armed = None  # type: ignore[attr-defined]
    return was


def refine_delete(reg: Any, s: rf.RefineSession) -> tuple[rf.RefineSession | None, str]:
    """Delete (key or *Delete object* button) in Refine: (the session to show next, a note).

    The first call arms the delete and asks for a confirmation; a second one within
    ``CONFIRM_S`` seconds deletes the object from the registry (``Registry.delete_object``:
    its mask, embedding and links go, its vector leaves the index through the outbox) and opens
    the next object on the same image (the previous one after the last; None when it was the
    only one). A session on a new image (nothing stored) has its mask cleared instead.
    """
    if not s.object_id:
        refine_events(None, s, [{"type": "delete", "clear": True}], None, [])
        return s, "Nothing stored to delete yet: mask cleared (Ctrl+Z brings it back)."
    if armed_delete(s) != s.object_id:
        s.delete_armed = (s.object_id, _clock())  # type: ignore[attr-defined]
        return s, (f"Press Delete again (or click Delete object) to delete **{s.object_id}** from the registry; "
                   "Esc or any other action cancels.")
    oid = s.object_id
    sib = refine_siblings(reg, s)
    at = sib.index(oid) if oid in sib else 0
    rest = [o for o in sib if o != oid]
    reg.delete_object(oid)
    s.delete_armed = None  # type: ignore[attr-defined]
    if not rest:
        return None, f"Deleted **{oid}**. No other objects on this image: open one by id, or upload an image."
    nxt = rf.open_object(reg, rest[min(at, len(rest) - 1)])
    if nxt.image_key == getattr(s, "canvas_image", None):
        nxt.canvas_image = s.canvas_image  # type: ignore[attr-defined]  # the page has the image
    return nxt, f"Deleted **{oid}**. Opened **{nxt.object_id}** (the next object on this image)."
