"""Tracking workflow: a video source's per-frame objects -> tracks in the registry.

Reads the source's frames and objects (with their stored embeddings) from the registry, links
them with :func:`pipeline.track.track`, and replaces the tracks the tracker made before
(``metadata.created_by == "tracker"`` and no ``metadata.edited_by``) in ONE transaction: a
person-edited or person-made track is never touched, and its objects are left out of
association. Rejected objects and interpolated objects are left out too.

With ``interpolate``, each new track's gaps (frames of the source between two of its
detections where it has none) get an interpolated object: box linear in xyxy between the
neighbouring detections (:func:`pipeline.track.interpolate_boxes`), ``detection_model =
"interpolated"``, ``metadata.interpolated = true``, no mask, no confidence.

Boxes are xyxy, absolute pixels of the frame (x = column, y = row); frames are the video's
original 0-based frame indices.
"""
from __future__ import annotations

import bisect
import json
import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.track import FrameDetections, Track, TrackerConfig, interpolate_boxes, track
from registry.export_output import check_out_dir, publish_dir, remove_stale_parts, safe_stem
from registry.facade import ObjectIn, Registry
from registry.formats.mot import MotBox, write_sequence
from registry.frames import frame_ids_by_index
from registry.ids import utc_now
from registry.tracks import (
    delete_tracker_tracks,
    track_members,
    tracker_tracks,
    tracking_inputs,
    update_track_metadata,
)

INTERPOLATED = "interpolated"
#: How often the tracker runs again when the source changes while it tracks.
ATTEMPTS = 3


def track_source(
    registry: Registry,
    source_id: str,
    *,
    iou_weight: float = 0.5,
    max_gap: int = 10,
    min_length: int = 2,
    interpolate: bool = False,
    min_iou: float = 0.1,
    min_cosine: float = 0.5,
    embedding_version: str | None = None,
) -> dict[str, Any]:
    """Tracks one video source's objects and stores the tracks (see the module docstring).

    Args:
        registry: the open registry.
        source_id: the video source (``source_type='video'``).
        iou_weight, max_gap, min_length, min_iou, min_cosine: see :class:`pipeline.track.TrackerConfig`
            (``max_gap`` counts the source's frames a track may miss in a row).
        interpolate: fill each new track's gaps with interpolated objects.
        embedding_version: which stored embeddings to compare; None = the version most of the
            source's objects have (no embeddings: IoU only).

    Returns:
        ``{"source_id", "tracks", "objects_linked", "interpolated", "replaced_tracks",
        "unchanged_tracks", "kept_tracks", "objects_considered", "embedding_version", "params",
        "attempts"}``. ``replaced_tracks``: earlier tracker tracks deleted; ``unchanged_tracks``:
        tracks found again exactly, which keep their ids; ``kept_tracks``: edited or not
        tracker-made tracks left alone; ``interpolated``: objects newly interpolated.

    Raises:
        ValueError: unknown or non-video source, or bad parameters (nothing written).
        RuntimeError: the source kept changing while it was tracked (nothing written).
    """
    cfg = TrackerConfig(iou_weight=iou_weight, max_gap=max_gap, min_length=min_length, min_iou=min_iou,
                        min_cosine=min_cosine)
    source = registry.get_source(source_id)
    if source["source_type"] != "video":
        raise ValueError(f"source {source_id}: expected a video source, got source_type {source['source_type']!r}; "
                         "tracks link objects across a video's frames (add one with `launch.py video add`)")
    attempts = 0
    while attempts < ATTEMPTS:
        attempts += 1
        # Tracking runs outside the write transaction (other writers go on meanwhile); the
        # inputs are checked again inside it, and a change (a person edited or deleted an
        # object or track in the meantime) means tracking again on the new state.
        data = tracking_inputs(registry.connection, source_id, version=embedding_version)
        free = [o for o in data["objects"] if o["kept_track"] is None and not o["interpolated"]
                and o["detection_model"] != INTERPOLATED and o["validation_status"] != "rejected"]
        kept = {o["kept_track"] for o in data["objects"] if o["kept_track"] is not None}
        tracks = track(_frames(data["frames"], free, data["embeddings"]), cfg)
        by_id = {o["object_id"]: o for o in free}
        params = {**cfg.as_dict(), "interpolate": bool(interpolate), "embedding_version": data["version"]}
        meta = {"created_by": "tracker", "params": params, "tracked_at": utc_now(), "frames_seen": len(data["frames"])}
        frame_ids = dict((idx, fid) for fid, idx in data["frames"])
        n_interp = 0
        with registry.transaction():
            now = tracking_inputs(registry.connection, source_id, version=data["version"], embeddings=False)
            if _fingerprint(now) != _fingerprint(data):
                continue
            # A track found again exactly (same detections, same interpolation setting, and for
            # interpolation the same stored frames) keeps its id, its interpolated objects and
            # its place; only its metadata is brought up to date.
            same = {old["detections"]: tid for tid, old in tracker_tracks(registry.connection, source_id).items()
                    if bool(old["metadata"].get("params", {}).get("interpolate")) == bool(interpolate)
                    and (not interpolate or old["metadata"].get("frames_seen") == len(data["frames"]))}
            unchanged = {t.track_id: same[frozenset(t.keys)] for t in tracks if frozenset(t.keys) in same}
            replaced = delete_tracker_tracks(registry.connection, source_id, keep=list(unchanged.values()))
            for t in tracks:
                if t.track_id in unchanged:
                    update_track_metadata(registry.connection, unchanged[t.track_id], meta)
                    continue
                members = list(t.keys)
                if interpolate:
                    new = _interpolated_objects(t, by_id, frame_ids, (source["width"], source["height"]))
                    if new:
                        members += registry.register_objects(source_id, new, dedupe=False).registered
                        n_interp += len(new)
                registry.create_track(members, metadata=meta)
            break
    else:  # every attempt saw a change
        raise RuntimeError(f"source {source_id} changed while it was being tracked, {ATTEMPTS} times in a row; "
                           "nothing was written: run the tracker again when the edits pause")
    return {
        "source_id": source_id,
        "tracks": len(tracks),
        "objects_linked": sum(len(t.keys) for t in tracks),
        "interpolated": n_interp,
        "replaced_tracks": replaced["tracks"],
        "unchanged_tracks": len(unchanged),
        "kept_tracks": len(kept),
        "objects_considered": len(free),
        "embedding_version": data["version"],
        "params": params,
        "attempts": attempts,
    }


def fill_track_gaps(registry: Registry, track_id: str, *, edited_by: str | None = None) -> dict[str, Any]:
    """Interpolates one track's gaps (CVAT-style keyframes: the track's objects are the keys).

    Every frame of the source strictly between two of the track's objects where the track has
    none gets an interpolated object (box linear in xyxy, ``detection_model = "interpolated"``,
    ``metadata.interpolated = true``, no mask), added to the track, in one transaction. With
    ``edited_by`` (a person asked for it) the track is stamped ``metadata.edited_by/edited_at``,
    so re-running the tracker keeps it.

    Returns:
        ``{"track_id", "interpolated": n, "object_ids": [...]}``.
    """
    t = registry.get_track(track_id)
    framed = [o for o in t["objects"] if o["frame_idx"] is not None]
    if not framed:
        raise ValueError(f"track {track_id} has no objects on video frames; nothing to interpolate")
    source = registry.get_source(t["source_id"])
    frame_ids = frame_ids_by_index(registry.connection, t["source_id"])  # not every object and vector
    keys = [o["object_id"] for o in framed]
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (o["bbox_xywh"] for o in framed)], float)
    pseudo = Track(0, framed[0]["category_id"], [o["frame_idx"] for o in framed], keys, boxes)
    new = _interpolated_objects(pseudo, {k: {"category": framed[0]["category"]} for k in keys}, frame_ids,
                                (source["width"], source["height"]))
    with registry.transaction():
        ids = registry.register_objects(t["source_id"], new, dedupe=False).registered if new else []
        if ids:
            registry.add_objects_to_track(track_id, ids)
        if edited_by:
            update_track_metadata(registry.connection, track_id,
                                  {"edited_by": edited_by, "edited_at": utc_now(), "last_edit": "interpolate"})
    return {"track_id": track_id, "interpolated": len(ids), "object_ids": ids}


def _fingerprint(data: dict) -> tuple:
    """What the tracker's result depends on, besides embeddings: frames, objects, memberships."""
    return (tuple(data["frames"]), tuple(
        (o["object_id"], o["frame_id"], o["category_id"], tuple(o["xyxy"]), o["validation_status"], o["kept_track"],
         o["interpolated"], o["detection_model"]) for o in data["objects"]))


def _frames(frames: list[tuple[str, int]], objects: list[dict], embeddings: dict[str, np.ndarray]) -> list[FrameDetections]:
    """One FrameDetections per frame of the source (empty frames too: they count as misses)."""
    per_frame: dict[int, list[dict]] = defaultdict(list)
    for o in objects:
        per_frame[o["frame_idx"]].append(o)
    dim = next((len(v) for v in embeddings.values()), 0)
    out = []
    for _, idx in frames:
        objs = per_frame.get(idx, [])
        embs = None
        if dim and any(o["object_id"] in embeddings for o in objs):
            embs = np.full((len(objs), dim), np.nan)
            for k, o in enumerate(objs):
                if o["object_id"] in embeddings:
                    embs[k] = embeddings[o["object_id"]]
        out.append(FrameDetections(idx, np.array([o["xyxy"] for o in objs], float).reshape(-1, 4),
                                   [o["category_id"] for o in objs], embs, [o["object_id"] for o in objs]))
    return out


def _interpolated_objects(t, by_id: dict[str, dict], frame_ids: dict[int, str],
                          size: tuple[int | None, int | None]) -> list[ObjectIn]:
    """Interpolated objects on the source's frames inside the track's gaps (``size`` = (width, height))."""
    gaps, boxes = interpolate_boxes(t.frames, t.boxes, frame_ids.keys())
    if size[0] and size[1]:  # interpolation stays inside its keyframes' boxes; clip rounding only
        boxes = np.clip(boxes, 0, [size[0], size[1], size[0], size[1]])
    if not gaps:
        return []
    category = by_id[t.keys[0]]["category"]
    out = []
    for f, b in zip(gaps, boxes, strict=True):
        prev = bisect.bisect_left(t.frames, f) - 1  # the keyframe before f (t.frames increase)
        out.append(ObjectIn(
            category, tuple(float(v) for v in b), frame_id=frame_ids[f], detection_model=INTERPOLATED,
            metadata={"interpolated": True, "between": [t.keys[prev], t.keys[prev + 1]]},
        ))
    return out


def export_mot(registry: Registry, source_id: str, out_dir, *, overwrite: bool = False) -> dict[str, Any]:
    """Writes the source's tracks as a MOTChallenge sequence under ``out_dir``.

    Objects a person rejected are left out. Layout: ``<out>/<seq>/gt/gt.txt``, ``<out>/<seq>/seqinfo.ini`` (see
    :mod:`registry.formats.mot`) and ``<out>/manifest.json`` (source, track numbers -> track
    ids, class numbers -> names). ``<seq>`` is the video's safe file stem (else the source id).
    Track numbers are 1.. in :meth:`Registry.list_tracks` order (by first frame); class numbers
    1.. over the sorted category names of the exported tracks. Written into a temporary folder
    and renamed when complete; an existing non-empty ``out_dir`` needs ``overwrite`` and must
    be an earlier export.

    Returns:
        ``{"out_dir", "sequence", "tracks", "boxes", "classes"}``.
    """
    source = registry.get_source(source_id)
    if source["source_type"] != "video":
        raise ValueError(f"source {source_id}: expected a video source for MOT export, got {source['source_type']!r}")
    tracks = registry.list_tracks(source_id)
    if not tracks:
        raise ValueError(f"source {source_id} has no tracks; run `launch.py track --source {source_id}` first")
    # a box a reviewer rejected is no ground truth (dataset exports leave rejected objects out too)
    members = [m for m in track_members(registry.connection, source_id) if m["validation_status"] != "rejected"]
    if not members:
        raise ValueError(f"the tracks of source {source_id} hold no objects on frames (rejected ones aside); nothing to export")
    number = {t["track_id"]: k for k, t in enumerate(tracks, 1)}
    names = sorted({m["category"] for m in members})
    cls = {n: k for k, n in enumerate(names, 1)}
    boxes = [MotBox(m["frame_idx"], number[m["track_id"]], m["bbox_xywh"], cls[m["category"]], m["is_occluded"])
             for m in members]
    seq = safe_stem(source.get("file_name")) or source_id
    out = Path(out_dir).expanduser().resolve()
    check_out_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(out)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.part-{os.getpid()}-", dir=out.parent))
    try:
        frame_count = source.get("frame_count") or (max(m["frame_idx"] for m in members) + 1)
        write_sequence(work, seq, boxes, frame_rate=source.get("fps") or 1.0, seq_length=frame_count,
                       width=source["width"], height=source["height"])
        manifest = {"format": "mot", "source_id": source_id, "sequence": seq,
                    "tracks": {str(k): tid for tid, k in number.items()},
                    "classes": {str(k): n for n, k in cls.items()}}
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
        publish_dir(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {"out_dir": str(out), "sequence": seq, "tracks": len(tracks), "boxes": len(boxes),
            "classes": {str(k): n for n, k in cls.items()}}
