"""What the Video tab shows and does, as plain functions (no Gradio): video sources, their
frames, a frame rendered with masks, boxes and track numbers in per-track colours, the track
list, jumping to a track, finding the object under a click, and re-prompting propagation.

Conventions: images are (H, W, 3) uint8 RGB; boxes from the registry are ``bbox_xywh``
absolute pixels of the frame (x = column, y = row) and are drawn as ``xyxy``; masks are (H, W)
bool of the frame's size. Click points are (x, y) absolute pixels. A frame's *position* is its
0-based index in the source's stored frames in frame order (what the slider moves over);
``frame_idx`` is the original 0-based frame index of the video (what tracks and propagation
speak in). Tracks are numbered ``#1, #2, …`` in the order of :meth:`Registry.list_tracks`
(by first frame); the overlay and the track list use the same numbers.
"""
from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.workflows.render import IMAGES, category_color, render_overlay
from app.workflows.video import frame_image_path

UNTRACKED_COLOR = (200, 200, 200)
TRACK_HEADERS = ["#", "category", "frames", "length", "objects", "avg conf", "drift", "edited by", "track id"]


@dataclass
class VideoView:
    """A snapshot of one video source for the tab: its frames and tracks.

    Attributes:
        source: the source row (``Registry.get_source``).
        frames: stored frames in frame order (``frame_id``, ``frame_idx``, ``timestamp``, ``file_path``).
        tracks: the track rows of :func:`track_rows` (``number`` = 1-based).
        object_track: object id -> track id for every tracked object of the source.
        frame_object_ids: frame id -> ids of the objects on it (read once per load, so stepping
            through frames reads only the objects shown; reload after writing objects).
    """

    source: dict
    frames: list[dict]
    tracks: list[dict] = field(default_factory=list)
    object_track: dict[str, str] = field(default_factory=dict)
    frame_object_ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def source_id(self) -> str:
        return self.source["source_id"]

    def frame_at(self, position: int) -> dict:
        """The frame at slider ``position`` (clipped into range)."""
        return self.frames[clip_position(self, position)]

    def track(self, track_id: str) -> dict:
        for t in self.tracks:
            if t["track_id"] == track_id:
                return t
        raise ValueError(f"unknown track {track_id!r} for source {self.source_id}: reload the source "
                         "(it may have been merged or deleted)")

    def track_number(self, track_id: str) -> int | None:
        return next((t["number"] for t in self.tracks if t["track_id"] == track_id), None)


def video_sources(reg: Any) -> list[dict]:
    """Video sources (``source_type == 'video'``) in registration order."""
    return [s for s in reg.list_sources() if s.get("source_type") == "video"]


def source_choices(reg: Any) -> list[tuple[str, str]]:
    """``(label, source_id)`` pairs for a dropdown: file name, frame count and id."""
    from registry.frames import count_frames

    out = []
    for s in video_sources(reg):
        n = count_frames(reg.connection, s["source_id"])  # a count, not every frame row of every video
        out.append((f"{s.get('file_name') or s['source_id']} · {n} frames · {s['source_id']}", s["source_id"]))
    return out


def track_color(track_id: str) -> tuple[int, int, int]:
    """A stable, saturated RGB colour per track id (hashed, like categories' colours)."""
    return category_color(hashlib.sha1(track_id.encode()).hexdigest())


def track_rows(reg: Any, source_id: str) -> tuple[list[dict], dict[str, str]]:
    """The source's tracks as rows for the track list, and object id -> track id.

    Each row: ``number``, ``track_id``, ``category``, ``start``/``end`` (frame_idx), ``length``
    (frames spanned, end - start + 1), ``objects`` (count), ``avg_confidence``, ``drift``
    (objects whose ``metadata.propagation.drift`` is true), ``edited_by``, ``object_ids``.
    """
    rows, owner = [], {}
    for n, t in enumerate(reg.list_tracks(source_id), start=1):
        full = reg.get_track(t["track_id"])
        ids = [o["object_id"] for o in full["objects"]]
        drift_frames = [o["frame_idx"] for o in full["objects"]
                        if ((o.get("metadata") or {}).get("propagation") or {}).get("drift") and o["frame_idx"] is not None]
        drift = sum(1 for o in full["objects"] if ((o.get("metadata") or {}).get("propagation") or {}).get("drift"))
        for oid in ids:
            owner.setdefault(oid, t["track_id"])
        start, end = t.get("start_frame_idx"), t.get("end_frame_idx")
        rows.append({
            "number": n, "track_id": t["track_id"], "category": t.get("category"), "start": start, "end": end,
            "length": None if start is None or end is None else end - start + 1, "objects": t["object_count"],
            "avg_confidence": t.get("avg_confidence"), "drift": drift,
            "edited_by": (t.get("metadata") or {}).get("edited_by"), "object_ids": ids,
            "drift_frames": drift_frames,
        })
    return rows, owner


def load_view(reg: Any, source_id: str) -> VideoView:
    """Frames and tracks of a video source; ValueError when it is no video or has no frames."""
    if not source_id:
        raise ValueError("no video chosen: pick a video source first (or upload one)")
    source = reg.get_source(source_id)
    if source.get("source_type") != "video":
        raise ValueError(f"source {source_id} is a {source.get('source_type')!r}, expected a video source; "
                         "pick one from the Video list")
    frames = sorted(reg.list_frames(source_id), key=lambda f: f["frame_idx"])
    if not frames:
        raise ValueError(f"video {source_id} has no stored frames: run `launch.py video add` on its file first")
    tracks, owner = track_rows(reg, source_id)
    on_frame: dict[str, list[str]] = {}
    for o in reg.list_objects(source_id=source_id, limit=None, order="created_asc"):
        if o["frame_id"] is not None:
            on_frame.setdefault(o["frame_id"], []).append(o["object_id"])
    return VideoView(source=source, frames=frames, tracks=tracks, object_track=owner, frame_object_ids=on_frame)


def track_table(view: VideoView) -> list[list]:
    """The track list as table rows (headers :data:`TRACK_HEADERS`)."""
    out = []
    for t in view.tracks:
        span = "-" if t["start"] is None else f"{t['start']}–{t['end']}"
        conf = "" if t["avg_confidence"] is None else f"{t['avg_confidence']:.2f}"
        out.append([t["number"], t["category"] or "", span, t["length"] or 0, t["objects"], conf, t["drift"],
                    t["edited_by"] or "", t["track_id"]])
    return out


def clip_position(view: VideoView, position: int | float | None) -> int:
    """``position`` rounded and clipped to ``0 .. len(frames) - 1``."""
    return int(min(max(0, round(float(position or 0))), len(view.frames) - 1))


def position_of_frame(view: VideoView, frame_idx: int) -> int:
    """The slider position of ``frame_idx`` (or of the first stored frame after it)."""
    keys = [f["frame_idx"] for f in view.frames]
    return clip_position(view, bisect.bisect_left(keys, int(frame_idx)))


def next_drift(view: VideoView, position: int) -> tuple[int, dict]:
    """The slider position of the next frame (after the one at ``position``) where a tracked
    object is flagged as drift, and that track's row; ValueError when there is none."""
    here = view.frame_at(position)["frame_idx"]
    later = sorted((k, t["number"], t) for t in view.tracks for k in t.get("drift_frames", []) if k > here)
    if not later:
        total = sum(len(t.get("drift_frames", [])) for t in view.tracks)
        raise ValueError(f"no drift flag after frame {here}" + (f" ({total} earlier: step back or start from 0)"
                                                               if total else " (no track has one)"))
    k, _, t = later[0]
    return position_of_frame(view, k), t


def jump_to_track(view: VideoView, track_id: str) -> int:
    """The slider position of the track's first frame."""
    t = view.track(track_id)
    if t["start"] is None:
        raise ValueError(f"track {track_id} has no objects on frames, so there is no first frame to show")
    return position_of_frame(view, t["start"])


def frame_objects(reg: Any, view: VideoView, position: int) -> list[dict]:
    """The objects on the frame at ``position``, each with ``track_id`` and ``track_number``
    (None when untracked), largest first (so smaller objects are drawn on top)."""
    frame = view.frame_at(position)
    objs = reg.get_objects(view.frame_object_ids.get(frame["frame_id"], []))  # deleted ones drop out
    for o in objs:
        tid = view.object_track.get(o["object_id"])
        o["track_id"], o["track_number"] = tid, (view.track_number(tid) if tid else None)
    objs.sort(key=lambda o: -(o["bbox_xywh"][2] * o["bbox_xywh"][3]))
    return objs


def frame_label(obj: dict) -> str:
    """What the overlay writes beside an object: ``#n category`` (+ ``drift`` when flagged)."""
    prefix = f"#{obj['track_number']} " if obj.get("track_number") else ""
    drift = ((obj.get("metadata") or {}).get("propagation") or {}).get("drift")
    return f"{prefix}{obj['category']}" + (" drift" if drift else "")


def render_frame(reg: Any, view: VideoView, position: int) -> tuple[np.ndarray, list[dict]]:
    """The frame at ``position`` with every object's mask, box and ``#track category`` label in
    its track's colour (untracked objects light grey).

    Returns:
        (RGB uint8 (H, W, 3) image, the frame's objects as :func:`frame_objects` returns them).
    """
    frame = view.frame_at(position)
    image = IMAGES.get(frame_path(reg, frame))
    objs = frame_objects(reg, view, position)
    if not objs:
        return np.array(image, copy=True), objs
    h, w = image.shape[:2]
    masks = np.zeros((len(objs), h, w), bool)
    for i, o in enumerate(objs):
        if o["has_mask"]:
            m = reg.get_mask(o["object_id"])
            if m is not None and m.shape == (h, w):
                masks[i] = m
    xyxy = np.array([[x, y, x + bw, y + bh] for x, y, bw, bh in (o["bbox_xywh"] for o in objs)], np.float32)
    colors = [track_color(o["track_id"]) if o["track_id"] else UNTRACKED_COLOR for o in objs]
    out = render_overlay(image, xyxy, masks, [frame_label(o) for o in objs], [o["confidence"] for o in objs],
                         colors=colors, numbers=False)
    return out, objs


def frame_path(reg: Any, frame: dict) -> Path:
    """The image file of a stored frame (V1's :func:`frame_image_path`, the one resolver)."""
    return Path(frame_image_path(reg, frame))


def frame_caption(view: VideoView, position: int, objects: Sequence[dict]) -> str:
    """One Markdown line about the frame shown: index, time, position, objects and tracks."""
    p = clip_position(view, position)
    f = view.frames[p]
    ts = f.get("timestamp")
    tracks = sorted({o["track_number"] for o in objects if o.get("track_number")})
    return (f"Frame **{f['frame_idx']}**" + (f" · {ts:.2f} s" if ts is not None else "")
            + f" · {p + 1} of {len(view.frames)} stored · {len(objects)} object(s)"
            + (" · tracks " + ", ".join(f"#{n}" for n in tracks) if tracks else ""))


def object_at(objects: Sequence[dict], reg: Any, x: float, y: float) -> dict | None:
    """The object under click (x, y) (absolute pixels): the smallest one whose mask (or box,
    for objects without a mask) contains the point; None when the click hits nothing."""
    hits = []
    for o in objects:
        bx, by, bw, bh = o["bbox_xywh"]
        if not (bx <= x <= bx + bw and by <= y <= by + bh):
            continue
        if o["has_mask"]:
            m = reg.get_mask(o["object_id"])
            xi, yi = int(x), int(y)
            if m is None or not (0 <= yi < m.shape[0] and 0 <= xi < m.shape[1]) or not m[yi, xi]:
                continue
            size = float(m.sum())
        else:
            size = float(bw * bh)
        hits.append((size, o))
    return min(hits, key=lambda t: t[0])[1] if hits else None


def resolve_track(view: VideoView, ref: str | int | None) -> str:
    """A track id from what a person typed or picked: ``trk_…``, ``#3`` or ``3``."""
    text = str(ref if ref is not None else "").strip()
    if not text:
        raise ValueError("no track chosen: click a row of the track list (or type a track number like #2)")
    if text.startswith("trk_"):
        return view.track(text)["track_id"]
    num = text.lstrip("#").split()[0]
    if num.isdigit():
        for t in view.tracks:
            if t["number"] == int(num):
                return t["track_id"]
    raise ValueError(f"unknown track {text!r}: expected a number from the track list (1–{len(view.tracks)}) "
                     "or a trk_… id")


def reprompt(propagate_fn: Callable[..., dict], ctx: Any, reg: Any, view: VideoView, position: int,
             object_id: str, *, max_frames: int | None = None, backward: bool = False) -> dict:
    """Re-prompts mask propagation from the frame at ``position`` with one object.

    Calls ``propagate_fn(ctx, registry, source_id, from_frame, object_ids=[object_id],
    max_frames=…, backward=…)`` (V3's :func:`app.workflows.propagate.propagate`), where
    ``from_frame`` is the original frame index.
    """
    frame = view.frame_at(position)
    return propagate_fn(ctx, reg, view.source_id, frame["frame_idx"], object_ids=[object_id],
                        max_frames=None if not max_frames else int(max_frames), backward=bool(backward))


def propagation_summary(result: dict) -> str:
    """One Markdown paragraph about a propagation run (the dict :func:`app.workflows.propagate.propagate`
    returns): segmenter, objects written on how many frames, replaced ones, drift stops, kept
    frames and the fallback warning."""
    r = result or {}
    prompts = ", ".join(f"`{p}`" for p in r.get("prompts") or []) or "the picked object"
    way = "backward" if r.get("backward") else "forward"
    text = (f"Propagated {prompts} {way} from frame {r.get('from_frame')} with **{r.get('segmenter', '?')}**: "
            f"{r.get('written', 0)} object(s) written over {r.get('frames', 0)} frame(s)")
    if r.get("replaced"):
        text += f", {r['replaced']} earlier propagated object(s) replaced"
    text += "."
    drift = r.get("drift") or []
    if drift:
        where = ", ".join(f"frame {d.get('frame_idx')} (score {float(d.get('score') or 0):.2f})" for d in drift[:5])
        text += f" Drift stopped it at {where}: re-prompt there."
    kept = r.get("kept") or []
    if kept:
        text += f" {len(kept)} frame(s) kept their reviewed or detected object."
    if r.get("warning"):
        text += f"\n\n⚠ {r['warning']}"
    return text
