"""Mask propagation on a video source: prompt with frame K's objects, write one object per later
frame, link them into the prompting object's track.

Used by ``launch.py propagate`` and the Video tab's re-prompt. The propagator is SAM2.1's video
model (:class:`pipeline.segment.sam2_video.Sam2VideoPropagator`, ``detection_model =
"sam2-video"``) when its weights are on the machine, else per-frame GrabCut
(:class:`pipeline.segment.grabcut_track.GrabCutTracker`, ``"grabcut-track"``), and the result
says so (``segmenter`` and ``warning``).

What is written, per prompting object P and later frame F where P is still followed:

- one object on F: the propagated mask, its bounding box (xyxy pixels of the frame), P's
  category, ``confidence`` = the per-frame score, ``detection_model`` as above, and
  ``metadata.propagation = {"from_object": P, "from_frame": K, "score": s, "drift": bool,
  "model": checkpoint label}``;
  a drifting frame is written with ``drift: true`` when its mask is not empty (the user sees
  where to re-prompt) and propagation of P stops there;
- earlier *propagated* objects on F of P (``from_object`` P) or of P's track are replaced (so
  re-running never duplicates), unless a person reviewed them (status not ``pending``); an
  object of P's track on F that is not a pending propagated one (a detection, an approved
  mask) is kept and F is skipped for P (reported in ``kept``);
- the new objects join P's track (one is created, ``metadata.created_by = "propagation"``,
  when P has none).

Writes go in one transaction per chunk of frames (:data:`CHUNK_FRAMES`). When a frame cannot be
read the run stops with an error naming it, after writing the frames computed before it; a
write that fails leaves nothing of its chunk. Frames are read one at a time from the stored
frame images (``media/frames/...``).
"""
from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Frames whose objects are written in one transaction.
CHUNK_FRAMES = 8
#: ``detection_model`` values of propagated objects.
PROPAGATED_MODELS = ("sam2-video", "grabcut-track")

GRABCUT_WARNING = (
    "SAM2.1 video weights are not available ({reason}); propagating with per-frame GrabCut "
    "(grabcut-track: no memory across frames, follows objects on clean backgrounds only). Get the "
    "weights with `launch.py models download` (or `models import DIR` on an air-gapped machine)."
)


def resolve_propagator(ctx_or_models: Any) -> tuple[Any, str | None]:
    """The propagator to use, and a warning when it is the GrabCut fallback.

    Args:
        ctx_or_models: a propagator (anything with ``propagate``), an ``AppContext`` (its
            ``video_propagator_provider``), or a ``ModelManager`` (its ``video_propagator``).

    Returns:
        ``(propagator, warning or None)``. Missing SAM2 weights, or an image-only SAM2 folder,
        give a :class:`~pipeline.segment.grabcut_track.GrabCutTracker` and a warning.
    """
    from pipeline.segment.grabcut_track import GrabCutTracker

    if hasattr(ctx_or_models, "propagate"):
        return ctx_or_models, None
    provider = getattr(ctx_or_models, "video_propagator_provider", None)
    if provider is None and callable(getattr(ctx_or_models, "video_propagator", None)):
        provider = ctx_or_models.video_propagator
    reason = "no SAM2 video model is configured"
    if provider is not None:
        try:
            return provider(), None
        except (RuntimeError, ValueError) as exc:
            if not (_is_weights_missing(exc) or "sam2_video" in str(exc)):
                raise
            reason = str(exc).splitlines()[0].split(". ")[0].rstrip(".")  # the fix is in our warning
    grabcut = None
    seg_provider = getattr(ctx_or_models, "segmenter_provider", None) or getattr(ctx_or_models, "segmenter", None)
    if callable(seg_provider):
        try:
            grabcut = seg_provider("grabcut")  # the shared instance (its lock guards set_image)
        except (ValueError, RuntimeError):
            grabcut = None
    return GrabCutTracker(grabcut), GRABCUT_WARNING.format(reason=reason)


def _is_weights_missing(exc: BaseException) -> bool:
    return any(cls.__name__ == "WeightsMissingError" for cls in type(exc).__mro__)


def _frame_images(registry: Any, frames: Sequence[dict], size: tuple[int, int] | None) -> Iterator[np.ndarray]:
    """Decodes the stored frame images one at a time (never all in memory).

    Raises:
        ValueError: a frame file that is missing, unreadable or not the video's (width, height)
            ``size``, naming the frame and the file.
    """
    from app.workflows.video import frame_image_path
    from pipeline.image_io import load_image

    for frame in frames:
        path = frame_image_path(registry, frame)
        try:
            image = load_image(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"frame {frame['frame_idx']} ({path}) cannot be read: {exc}; store the video's frames "
                             "again with `launch.py video add`") from exc
        if size is not None and (image.shape[1], image.shape[0]) != size:
            raise ValueError(f"frame {frame['frame_idx']} ({path}): expected the video's {size[0]}x{size[1]} pixels, "
                             f"got {image.shape[1]}x{image.shape[0]}; store the video's frames again with "
                             "`launch.py video add`")
        yield image


def _track_owner(registry: Any, source_id: str) -> tuple[dict[str, str], dict[str, list[dict]]]:
    """object id -> track id, and track id -> its objects, for a source's tracks."""
    owner: dict[str, str] = {}
    members: dict[str, list[dict]] = {}
    for t in registry.list_tracks(source_id):
        full = registry.get_track(t["track_id"])
        members[t["track_id"]] = full["objects"]
        for o in full["objects"]:
            owner.setdefault(o["object_id"], t["track_id"])
    return owner, members


def _propagation(obj: dict) -> dict | None:
    prop = (obj.get("metadata") or {}).get("propagation")
    return prop if isinstance(prop, dict) else None


def _select_prompts(registry: Any, source_id: str, frame: dict, objects: list[dict],
                    object_ids: Sequence[str] | None) -> list[dict]:
    on_frame = [o for o in objects if o["frame_id"] == frame["frame_id"]]
    if not object_ids:
        # "every object of frame K" leaves out the ones a person rejected (false positives),
        # as the tracker does; naming a rejected object in object_ids still follows it.
        kept = [o for o in on_frame if o["validation_status"] != "rejected"]
        if on_frame and not kept:
            raise ValueError(
                f"every object on frame {frame['frame_idx']} of source {source_id} was rejected; approve one or "
                "name it explicitly (--objects / the picked object) to propagate it")
        on_frame = kept
        if not on_frame:
            raise ValueError(
                f"frame {frame['frame_idx']} of source {source_id} has no objects to propagate; label it first "
                f"(`launch.py label --source {source_id}`) or draw a box on it in the Video tab")
        return on_frame
    by_id = {o["object_id"]: o for o in objects}
    chosen = []
    for oid in dict.fromkeys(object_ids):
        o = by_id.get(oid)
        if o is None:
            raise ValueError(f"object {oid!r} is not an object of source {source_id}; list a frame's objects in the "
                             "Video tab or with the REST API")
        if o["frame_id"] != frame["frame_id"]:
            raise ValueError(f"object {oid} lies on another frame ({o['frame_id']}), expected frame "
                             f"{frame['frame_idx']} of source {source_id}; pass --from-frame of the object's frame")
        chosen.append(o)
    return chosen


def propagate(
    ctx_or_models: Any,
    registry: Any,
    source_id: str,
    from_frame: int,
    object_ids: Sequence[str] | None = None,
    max_frames: int | None = None,
    backward: bool = False,
    *,
    drift_threshold: float | None = None,
    progress: bool = False,
) -> dict:
    """Propagates the masks of frame ``from_frame``'s objects through the later (or, with
    ``backward``, earlier) stored frames of a video source. See the module docstring.

    Args:
        ctx_or_models: see :func:`resolve_propagator`.
        registry: the ``registry.facade.Registry``.
        source_id: a video source with stored frames.
        from_frame: K, the original 0-based frame index of the prompt frame.
        object_ids: the prompting objects (all on frame K); None = every object on frame K that
            is not rejected.
        max_frames: stored frames to follow after K (None: to the end of the video).
        backward: follow frames K-1, K-2, ... instead.
        drift_threshold: the score below which an object drifts (default: the propagator's).
        progress: a tqdm bar over frames (stderr).

    Returns:
        ``{"source_id", "from_frame", "backward", "segmenter", "warning", "prompts": [P, ...],
        "frames": frames followed, "written", "replaced", "object_ids": [new ids],
        "tracks": {P: track id}, "drift": [{"object_id": P, "frame_idx", "score"}],
        "kept": [{"object_id": P, "frame_idx", "kept_object"}]}``.

    Raises:
        ValueError: not a video source, no such stored frame, no objects to prompt with, or an
            object not on frame K (nothing is written).
    """
    source = registry.get_source(source_id)
    if source.get("source_type") != "video":
        raise ValueError(f"source {source_id} is a {source.get('source_type')!r}, expected a video source; "
                         "propagation follows objects through a video's frames")
    frames = registry.list_frames(source_id)
    by_idx = {int(f["frame_idx"]): f for f in frames}
    k = int(from_frame)
    if k not in by_idx:
        span = f"{frames[0]['frame_idx']}..{frames[-1]['frame_idx']} ({len(frames)} stored)" if frames else "none"
        raise ValueError(f"source {source_id} has no stored frame {k}; its stored frames are {span}; "
                         "pass one of those as --from-frame")
    if max_frames is not None and int(max_frames) < 1:
        raise ValueError(f"max_frames: expected >= 1 (or None for all), got {max_frames}")
    if drift_threshold is not None and not 0.0 <= float(drift_threshold) <= 1.0:  # NaN fails too
        raise ValueError(f"drift_threshold: expected a score in [0, 1] (0 = never drift on the score), got "
                         f"{drift_threshold}; leave it out for the propagator's default")
    objects = registry.list_objects(source_id=source_id, limit=None, order="created_asc")
    prompts = _select_prompts(registry, source_id, by_idx[k], objects, object_ids)
    later = sorted((f for f in frames if (f["frame_idx"] < k if backward else f["frame_idx"] > k)),
                   key=lambda f: f["frame_idx"], reverse=backward)
    if max_frames is not None:
        later = later[: int(max_frames)]
    propagator, warning = resolve_propagator(ctx_or_models)
    result: dict[str, Any] = {
        "source_id": source_id, "from_frame": k, "backward": bool(backward), "segmenter": propagator.name,
        "warning": warning, "prompts": [p["object_id"] for p in prompts], "frames": 0, "written": 0,
        "replaced": 0, "object_ids": [], "tracks": {}, "drift": [], "kept": [],
    }
    if warning:
        log.debug(warning)  # callers show it (the CLI prints it on stderr, the Video tab in its status)
    if not later:
        return result
    owner, members = _track_owner(registry, source_id)
    for p in prompts:
        if p["object_id"] in owner:
            result["tracks"][p["object_id"]] = owner[p["object_id"]]
    on_frame: dict[str, list[dict]] = defaultdict(list)
    for o in objects:
        on_frame[o["frame_id"]].append(o)
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (p["bbox_xywh"] for p in prompts)], np.float32)
    masks = [registry.get_mask(p["object_id"]) if p["has_mask"] else None for p in prompts]
    size = (int(source["width"]), int(source["height"])) if source.get("width") and source.get("height") else None
    for p, m in zip(prompts, masks, strict=True):
        if m is not None and size is not None and m.shape != (size[1], size[0]):
            raise ValueError(f"object {p['object_id']}: its mask is {m.shape[1]}x{m.shape[0]}, expected the video's "
                             f"{size[0]}x{size[1]}; redraw it in the Video tab")
    threshold = propagator.default_drift_threshold if drift_threshold is None else float(drift_threshold)
    writer = _ChunkWriter(registry, source_id, k, prompts, propagator.name, result, owner, members, on_frame,
                          version=getattr(propagator, "version", propagator.name))
    stream = propagator.propagate(_frame_images(registry, [by_idx[k], *later], size), boxes, masks,
                                  drift_threshold=threshold)
    bar = None
    if progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=len(later), unit="frame", desc="propagating", file=sys.stderr, dynamic_ncols=True)
    # A shared SAM2 propagator runs one propagation at a time (GrabCut locks each cut itself).
    with getattr(propagator, "lock", None) or contextlib.nullcontext():
        try:
            for step_result in stream:
                if step_result.step == 0:
                    continue  # the prompt frame: its objects are the prompts themselves
                writer.add(later[step_result.step - 1], step_result)
                result["frames"] += 1
                if bar is not None:
                    bar.update(1)
                if len(writer.pending) >= CHUNK_FRAMES:
                    writer.flush()
        except Exception:
            # A frame that cannot be read (or a model error) ends the run: the frames computed
            # before it are still written, then the error is raised.
            with contextlib.suppress(Exception):
                writer.flush()
            raise
        finally:
            if bar is not None:
                bar.close()
        writer.flush()
    return result


class _ChunkWriter:
    """Collects per-frame results and writes them, one transaction per chunk of frames."""

    def __init__(self, registry: Any, source_id: str, k: int, prompts: list[dict], model: str, result: dict,
                 owner: dict[str, str], members: dict[str, list[dict]], on_frame: dict[str, list[dict]], *,
                 version: str) -> None:
        self.registry, self.source_id, self.k, self.prompts, self.model = registry, source_id, k, prompts, model
        self.result, self.owner, self.members, self.on_frame = result, owner, members, on_frame
        self.pending: list[tuple[dict, Any]] = []
        self.version = version  # the checkpoint label, stored for provenance

    def add(self, frame: dict, step_result: Any) -> None:
        self.pending.append((frame, step_result))

    def _plan(self, frame: dict, prompt: dict) -> tuple[list[str], dict | None]:
        """(objects to replace, object to keep or None) for ``prompt`` on ``frame``."""
        pid = prompt["object_id"]
        track = self.result["tracks"].get(pid)
        in_track = {o["object_id"] for o in self.members.get(track, [])} if track else set()
        replace, keep = [], None
        for o in self.on_frame.get(frame["frame_id"], []):
            prop = _propagation(o)
            ours = (prop is not None and prop.get("from_object") == pid) or (prop is not None and o["object_id"] in in_track)
            if ours and o["validation_status"] == "pending":
                replace.append(o["object_id"])
            elif o["object_id"] in in_track or ours:
                keep = o
        return replace, keep

    def flush(self) -> None:
        from pipeline.mask_ops import mask_to_xyxy
        from registry.records import ObjectIn

        if not self.pending:
            return
        reg, res = self.registry, self.result
        to_delete: list[str] = []
        new: list[tuple[str, ObjectIn]] = []
        for frame, r in self.pending:
            for i, prompt in enumerate(self.prompts):
                if not r.active[i]:
                    continue
                pid = prompt["object_id"]
                score = float(r.scores[i])
                if r.drift[i]:
                    res["drift"].append({"object_id": pid, "frame_idx": frame["frame_idx"], "score": score})
                if not r.masks[i].any():
                    continue
                replace, keep = self._plan(frame, prompt)
                if keep is not None:
                    res["kept"].append({"object_id": pid, "frame_idx": frame["frame_idx"],
                                        "kept_object": keep["object_id"]})
                    continue
                to_delete += replace
                meta = {"propagation": {"from_object": pid, "from_frame": self.k, "score": score,
                                        "drift": bool(r.drift[i]), "model": self.version}}
                new.append((pid, ObjectIn(
                    category=prompt["category"], xyxy=tuple(float(v) for v in mask_to_xyxy(r.masks[i])[0]),
                    mask=r.masks[i], confidence=float(np.clip(score, 0.0, 1.0)), detection_model=self.model,
                    frame_id=frame["frame_id"], metadata=meta)))
        with reg.transaction():
            for oid in dict.fromkeys(to_delete):
                reg.delete_object(oid)
            ids = reg.register_objects(self.source_id, [o for _, o in new], dedupe=False).object_ids if new else []
            by_prompt: dict[str, list[str]] = defaultdict(list)
            for (pid, _), oid in zip(new, ids, strict=True):
                by_prompt[pid].append(oid)
            for pid, oids in by_prompt.items():
                track = res["tracks"].get(pid)
                if track is None:
                    track = reg.create_track([pid], metadata={
                        "created_by": "propagation", "propagation": {"from_object": pid, "from_frame": self.k}})
                    res["tracks"][pid] = track
                reg.add_objects_to_track(track, oids)
        res["replaced"] += len(set(to_delete))
        res["written"] += len(ids)
        res["object_ids"] += ids
        self.pending = []
