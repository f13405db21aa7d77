"""The Auto-label canvas: a view of the current upload's (unsaved) detections, and the events
the canvas sends applied to the session (see ``app.workflows.canvas`` for the wire format).

Session: the tab's state dict (``images``: list of ``autolabel_session.ImageResult``,
``current``: index shown) gains ``selected`` (object index on the current image or None) and
``history`` / ``future`` (undo / redo stacks of ``(image index, Detections)``). Table keys are
``"<image name>#<k>"`` with k = index + 1 (``autolabel_session.keys``). Boxes ``xyxy`` and
clicks (x, y) are absolute pixels of the image; masks (H, W) bool.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from app.workflows import autolabel_session as al
from app.workflows import canvas as cw
from pipeline import mask_edit as me
from pipeline.types import Detections


def legend(st: dict, classes_text: str | None, manual_class: str | None = None) -> list[str]:
    """Classes the number keys pick: the typed classes, then those on the current image."""
    names = al.parse_classes(classes_text)
    images = st.get("images") or []
    if images:
        names += list(images[min(st.get("current", 0), len(images) - 1)].det.class_names)
    if (manual_class or "").strip():
        names.append(manual_class.strip())
    return al.parse_classes(names)


def autolabel_view(st: dict, keep: set[str] | None, classes: Sequence[str], current_class: str | None = None,
                   note: str = "") -> dict:
    """The canvas view of the current image: every object (dropped ones marked), selection,
    legend, "n of N"."""
    images = st.get("images") or []
    if not images:
        return cw.empty_view("autolabel", note or "Upload images to label them here.")
    i = min(st.get("current", 0), len(images) - 1)
    r = images[i]
    d = r.det
    sel = st.get("selected")
    objs = []
    for k in range(len(d)):
        key = f"{r.name}#{k + 1}"
        mask = None if d.mask is None else d.mask[k]
        objs.append(cw.canvas_object(k, d.labels[k], mask, d.xyxy[k], ident=key, polygons=k == sel,
                                     dropped=keep is not None and key not in keep,
                                     confidence=float(d.confidence[k])))
    from pipeline.image_io import image_sha256

    key = image_sha256(r.path)
    sent = st.setdefault("canvas_sent", [])
    v = cw.view(canvas="autolabel", image_path=r.path, image_key=key, width=r.width, height=r.height,
                objects=objs, classes=classes, current_class=current_class, selected=sel, index=i,
                count=len(images), note=note, send_image=key not in sent)
    if key not in sent:
        sent.append(key)
    return v


def _push(st: dict) -> None:
    i = st.get("current", 0)
    st.setdefault("history", []).append((i, st["images"][i].det))
    st["future"] = []


def _swap(st: dict, src: str, dst: str) -> bool:
    stack = st.get(src) or []
    if not stack:
        return False
    i, det = stack.pop()
    st.setdefault(dst, []).append((i, st["images"][i].det))
    st["images"][i].det = det
    sel = st.get("selected")
    if st.get("current") != i or sel is None or sel >= len(det):  # the selection stays where it still means the same
        st["selected"] = None
    st["current"] = i
    return True


def with_mask(d: Detections, i: int, mask: np.ndarray, image_hw: tuple[int, int]) -> Detections:
    """A copy of ``d`` whose object ``i`` has ``mask`` (and the mask's tight box)."""
    box = me.bbox_xyxy(mask)
    if box is None:
        raise ValueError(f"object #{i + 1}: the edit would leave an empty mask; press Delete to remove the object instead")
    masks = np.zeros((len(d), *image_hw), bool) if d.mask is None else d.mask.copy()
    masks[i] = mask
    xyxy = d.xyxy.copy()
    xyxy[i] = box
    return Detections(xyxy=xyxy, confidence=d.confidence.copy(), class_id=d.class_id.copy(),
                      class_names=list(d.class_names), mask=masks, data=dict(d.data))


def relabel(d: Detections, i: int, name: str) -> Detections:
    names = list(d.class_names)
    if name not in names:
        names.append(name)
    cid = d.class_id.copy()
    cid[i] = names.index(name)
    return Detections(xyxy=d.xyxy, confidence=d.confidence, class_id=cid, class_names=names, mask=d.mask,
                      data=d.data)


def object_at(d: Detections, x: float, y: float) -> int | None:
    """The object under (x, y): the smallest whose mask (else box) holds the point."""
    hits = []
    for k in range(len(d)):
        x0, y0, x1, y1 = (float(v) for v in d.xyxy[k])
        if not (x0 <= x <= x1 and y0 <= y <= y1):
            continue
        m = None if d.mask is None else d.mask[k]
        inside = m is None or bool(m[min(int(y), m.shape[0] - 1), min(int(x), m.shape[1] - 1)])
        hits.append((not inside, (x1 - x0) * (y1 - y0), k))
    return min(hits)[2] if hits else None


def _target(st: dict, ev: dict, what: str) -> int:
    i = ev.get("index")
    i = st.get("selected") if i is None else i
    n = len(st["images"][st["current"]].det)
    if i is None or not 0 <= int(i) < n:
        raise ValueError(f"{what}: expected a selected object (click one first), got {'none' if i is None else f'#{int(i) + 1}'}")
    return int(i)


def _dropped(st: dict, keep: Sequence[str] | None) -> set[tuple[str, int]]:
    if keep is None:
        return set()
    keep = set(keep)
    return {(r.name, k) for r in st["images"] for k in range(len(r.det)) if f"{r.name}#{k + 1}" not in keep}


def autolabel_events(ctx: Any, st: dict, events: list[dict], keep: Sequence[str] | None, classes: Sequence[str],
                     class_name: str | None, segmenter: str | None, user: str | None = None) -> tuple[str, list[str], str | None]:
    """Applies the canvas events to the Auto-label session in order.

    A dragged box adds a hand-made object of ``class_name`` (the segmenter draws its mask, as
    the old two-click flow did); a click selects the object under it; brush / eraser / polygon
    edit the selected object's mask; Delete removes it; a number key sets the class of the next
    box and of the selected object; ``nav`` moves between the uploaded images.

    Returns:
        (note for the status line, the Keep list afterwards, the class for the next box).
    """
    if not st.get("images"):
        raise ValueError("canvas: expected uploaded images, got none; upload images first")
    dropped = _dropped(st, keep)
    note = ""
    for ev in events:
        t, r = ev["type"], st["images"][st["current"]]
        if t == "box":
            if not (class_name or "").strip():
                raise ValueError("Type the class of the box in *Class of the next box* (or press its number key) "
                                 "first, then drag the box again.")
            box = cw._box(ev, r.width, r.height)
            _push(st)
            al.add_manual(ctx, r, box, class_name, segmenter, user=user)
            st["selected"] = len(r.det) - 1
            note = f"Added a **{class_name.strip()}** box ({len(r.det)} objects on this image)."
        elif t == "point":
            x, y = cw._xy(ev)
            st["selected"] = object_at(r.det, x, y) if int(ev.get("label", 1)) else None
            note = "" if st["selected"] is None else f"Selected **#{st['selected'] + 1}** ({r.det.labels[st['selected']]})."
        elif t == "select":
            st["selected"] = _target(st, ev, "select")
        elif t in ("brush", "erase", "polygon"):
            if ev.get("index") is None and st.get("selected") is None and ev.get("points"):
                st["selected"] = object_at(r.det, *(float(v) for v in ev["points"][0]))  # the stroke starts on it
            i = _target(st, ev, t)
            mask = cw.edit_mask(None if r.det.mask is None else r.det.mask[i], ev, r.height, r.width)
            _push(st)
            r.det = with_mask(r.det, i, mask, (r.height, r.width))
            note = f"Edited the mask of **#{i + 1}** by hand."
        elif t == "delete":
            i = _target(st, ev, "delete")
            _push(st)
            r.det = r.det[np.asarray([k for k in range(len(r.det)) if k != i], np.int64)]
            dropped = {(n, k - (n == r.name and k > i)) for n, k in dropped if not (n == r.name and k == i)}
            st["selected"] = None
            note = f"Deleted object #{i + 1} (Ctrl+Z brings it back)."
        elif t == "class":
            i = int(ev.get("index", -1))
            if not 0 <= i < len(classes):
                raise ValueError(f"class key {i + 1}: expected 1..{len(classes)} (the legend), got {i + 1}")
            class_name = classes[i]
            sel = st.get("selected")
            if sel is not None and 0 <= sel < len(r.det):
                _push(st)
                r.det = relabel(r.det, sel, class_name)
                note = f"Object #{sel + 1} is now **{class_name}**; new boxes too."
            else:
                note = f"New boxes: **{class_name}**."
        elif t == "nav":
            st["current"] = int(np.clip(st["current"] + int(ev.get("delta", 1)), 0, len(st["images"]) - 1))
            st["selected"] = None
        elif t in ("undo", "redo"):
            ok = _swap(st, "history", "future") if t == "undo" else _swap(st, "future", "history")
            note = "" if ok else f"Nothing to {t}."
    keys = al.keys(st["images"])
    dropped_keys = {f"{n}#{k + 1}" for n, k in dropped}
    return note, [k for k in keys if k not in dropped_keys], class_name
