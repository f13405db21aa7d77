"""Videos into the registry: a source, its chosen frames as PNG files, labels per frame.

* :func:`add_video` registers a video file as a ``sources`` row (``source_type='video'``) and
  stores the frames a sampling keeps as ``media/frames/<source_id>/<frame_idx:06d>.png`` (see
  :mod:`registry.frames`), one ``frames`` row each.
* :func:`frame_image_path` is the one place that says which image an object lies on.
* :func:`label_video_frames` auto-labels a video's frames with the labeling workflow
  (:mod:`app.workflows.labeling`), resumably.

Conventions: frames are (H, W, 3) uint8 RGB of the video's size; ``frame_idx`` is the frame's
original 0-based index, ``timestamp`` seconds from the first frame; objects on a frame carry
``frame_id`` and their boxes (``xyxy`` absolute pixels) and masks ((H, W) bool) are in that
frame's pixels.

All or nothing: the frame rows are written in ONE transaction after the whole sampling was
decoded; if decoding fails midway (a corrupt or truncated file, an interrupt) every PNG this run
wrote is removed, and a source this run created is removed with its copied media file. A source
that already existed keeps what it had. Running ``add_video`` again on the same file finds the
same source (content hash); frames already stored are neither decoded into new files nor added
twice, and a sampling that already completed returns at once (unless a frame file went
missing: the run then writes it again).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.workflows.labeling import (
    BatchReport,
    _check_classes,
    category_synonyms,
    labeler_identity,
    settings_fingerprint,
)
from app.workflows.register_detections import register_detections
from pipeline.image_io import image_sha256, load_image
from pipeline.video import FrameSampler, iter_frames, probe_video
from pipeline.video.sampling import SCENE_THRESHOLD
from registry import frames as frame_store
from registry.frames import FRAME_DIR, frame_file, frame_rel_path

__all__ = ["FRAME_DIR", "FrameBatchReport", "add_video", "frame_file", "frame_image_path", "frame_rel_path",
           "label_video_frames"]

log = logging.getLogger(__name__)

#: Source metadata key: what ``add_video`` stored (header facts, completed samplings).
VIDEO_KEY = "video"
#: Source metadata key: the frames labeled with the latest labeling settings.
FRAME_LABELING_KEY = "frame_labeling"
#: PNG compression (zlib level 0-9): 1 is the fastest; level 6 saves ~10 % bytes at ~2x the time.
PNG_COMPRESS_LEVEL = 1
#: Frames being encoded at once (threads: zlib releases the GIL); bounds the frames in memory.
MAX_WRITERS = 4


def frame_image_path(registry: Any, obj_or_frame: dict | str) -> Path:
    """The image file an object (or frame, or source) lies on, absolute.

    Args:
        registry: a ``registry.facade.Registry``.
        obj_or_frame: an object or frame dict, or an ``obj_…``/``frm_…``/``src_…`` id.

    Returns:
        The frame's PNG when the item has a ``frame_id``, else the source's file.
    """
    return registry.image_path(obj_or_frame)


def _write_png(image, target: Path) -> None:
    """Writes an (H, W, 3) uint8 RGB image as PNG: a temporary name, then an atomic rename."""
    import cv2

    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESS_LEVEL])
    if not ok:
        raise RuntimeError(f"could not encode frame {target.stem} as PNG")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.stem}-{os.getpid()}-{os.urandom(3).hex()}.png"
    try:
        tmp.write_bytes(data.tobytes())
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _expected_kept(info, every: int | None, fps: float | None, max_frames: int | None) -> int | None:
    n = info.frame_count or None
    if n is not None and every:
        n = -(-n // int(every))
    elif fps and info.duration:
        n = int(info.duration * float(fps)) + 1
    if max_frames:
        n = min(n, int(max_frames)) if n else int(max_frames)
    return n


def _undo(registry: Any, source_id: str, created: bool, written: list[Path]) -> None:
    """Removes what a failed ``add_video`` wrote (files of this run; a source it created)."""
    for path in written:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    folder = Path(registry.data_dir) / FRAME_DIR / source_id
    with contextlib.suppress(OSError):
        folder.rmdir()  # only when empty
    if created:
        src = registry.get_source(source_id)
        if frame_store.discard_source(registry.connection, source_id):
            media = Path(src["file_path"] or "")
            if media.is_file() and Path(registry.data_dir) in media.parents:
                media.unlink()
                with contextlib.suppress(OSError):
                    media.parent.rmdir()  # media/<hash[:2]>/, only when empty


def add_video(
    registry: Any,
    path: str | os.PathLike,
    *,
    every: int | None = None,
    fps: float | None = None,
    scene_change: bool = False,
    max_frames: int | None = None,
    scene_threshold: float = SCENE_THRESHOLD,
    copy: bool = True,
    project: str | None = None,
    progress: bool = False,
) -> dict:
    """Registers a video and stores the frames a sampling keeps (see the module doc).

    Args:
        registry: a ``registry.facade.Registry``.
        path: the video file.
        every: keep frames 0, N, 2N, … (exclusive with ``fps``); default every frame.
        fps: keep about F frames per second.
        scene_change: keep only frames whose grey histogram differs from the last kept one's
            by more than ``scene_threshold`` (see :mod:`pipeline.video.sampling`).
        max_frames: keep at most M frames (decoding stops there).
        scene_threshold: histogram distance in (0, 1) that counts as a new scene.
        copy: copy the video into the data folder (``media/``), as images are.
        project: project name stored with the source.
        progress: a tqdm bar on stderr.

    Returns:
        ``{"source_id", "frames" (kept by this sampling), "new_frames" (rows created now),
        "existing" (the source was registered before), "width", "height", "fps",
        "frame_count", "duration", "codec", "sampling"}``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: bad sampling options, or an unusable video (one line naming the file);
            nothing of this run stays registered.
    """
    sampler = FrameSampler(every=every, fps=fps, scene_change=bool(scene_change), max_frames=max_frames,
                           scene_threshold=scene_threshold)  # checks the options first
    info = probe_video(path)
    existing = registry.find_source_by_hash(image_sha256(path)) is not None
    source_id = registry.register_source(
        path, source_type="video", width=info.width, height=info.height, fps=info.fps,
        frame_count=info.frame_count, copy=copy, project=project,
    )
    src = registry.get_source(source_id)
    if src["source_type"] != "video":  # the same bytes were registered before as an image
        raise ValueError(f"{Path(path).name!r}: expected a video source, got the same bytes already registered "
                         f"with source_type {src['source_type']!r} ({source_id}); delete that source first")
    settings = sampler.settings()
    meta = (src.get("metadata") or {}).get(VIDEO_KEY) or {}
    done = [s for s in meta.get("samplings") or [] if s.get("settings") == settings]
    header = {"width": info.width, "height": info.height, "fps": info.fps, "duration": info.duration,
              "codec": info.codec}
    stored = registry.list_frames(source_id)
    if done and len(stored) >= int(done[0]["frames"]) and all(Path(f["file_path"]).is_file() for f in stored):
        return {"source_id": source_id, "frames": int(done[0]["frames"]), "new_frames": 0, "existing": True,
                **header, "frame_count": src["frame_count"], "sampling": settings}
    have = {int(f["frame_idx"]) for f in stored}
    data_dir = Path(registry.data_dir)
    rows: list[tuple[int, float, str]] = []
    written: list[Path] = []
    from tqdm import tqdm

    bar = tqdm(total=_expected_kept(info, every, fps, max_frames), unit="frame", desc="frames",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    workers = max(1, min(MAX_WRITERS, (os.cpu_count() or 2) - 1))
    try:
        # PNGs are encoded by a few threads while the next frames decode; at most 2 x workers
        # frames wait, so memory stays bounded. Leaving the block waits for every write.
        with ThreadPoolExecutor(workers, thread_name_prefix="frame-png") as pool:
            pending: deque = deque()
            for frame in iter_frames(path, sampler, info=info):
                rel = frame_rel_path(source_id, frame.frame_idx)
                target = data_dir / rel
                if not (frame.frame_idx in have and target.is_file()):
                    written.append(target)
                    pending.append(pool.submit(_write_png, frame.image, target))
                    while len(pending) > 2 * workers:
                        pending.popleft().result()
                rows.append((frame.frame_idx, frame.timestamp, rel))
                bar.update(1)
            while pending:
                pending.popleft().result()
        new_frames = frame_store.add_frames(registry.connection, source_id, rows)
    except BaseException:
        _undo(registry, source_id, not existing, written)
        raise
    finally:
        bar.close()
    frame_count = info.frame_count
    if not sampler.done and sampler.seen and sampler.seen != info.frame_count:
        frame_count = sampler.seen  # a complete decode counted them; headers may only estimate
        frame_store.set_frame_count(registry.connection, source_id, frame_count)
    samplings = [s for s in meta.get("samplings") or [] if s.get("settings") != settings]
    samplings.append({"settings": settings, "frames": len(rows)})
    registry.update_source_metadata(source_id, {VIDEO_KEY: {**header, "backend": info.backend,
                                                            "samplings": samplings}})
    return {"source_id": source_id, "frames": len(rows), "new_frames": new_frames, "existing": existing,
            **header, "frame_count": frame_count, "sampling": settings}


@dataclass
class FrameBatchReport(BatchReport):
    """:class:`~app.workflows.labeling.BatchReport` of a video's frames (``total`` = frames)."""

    source_id: str = ""

    def summary(self, max_reasons: int = 20) -> str:
        text = super().summary(max_reasons)
        return f"video {self.source_id}: " + text.replace(" file(s):", " frame(s):", 1)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "source_id": self.source_id}


def label_video_frames(
    registry: Any,
    labeler: Any,
    source_id: str,
    classes: Sequence[str],
    *,
    confidence: float = 0.3,
    project: str | None = None,
    frame_indices: Sequence[int] | None = None,
    progress: bool = True,
    relabel: bool = False,
    save_every_s: float = 5.0,
) -> FrameBatchReport:
    """Auto-labels a video source's registered frames, one frame at a time, resumably.

    Each frame's PNG is loaded, labeled (``labeler.label(image, classes, *, confidence,
    synonyms, image_key)``) and its detections registered with ``frame_id`` set (the registry
    dedupes per frame). The frames done are recorded in the source's metadata
    (``frame_labeling``: the settings fingerprint and the frame indices) every ``save_every_s``
    seconds and at the end, so a later run with the same settings skips them; other settings
    start over. Failures are collected per frame and the batch goes on.

    Args:
        registry: a ``registry.facade.Registry``.
        labeler: see above (``AutoLabeler`` or a test double).
        source_id: a video source with frames (``add_video``).
        classes: class names to look for.
        confidence: detection threshold in [0, 1].
        project: project name stored with the objects.
        frame_indices: only these original frame indices (default: every registered frame).
        progress: a tqdm bar on stderr.
        relabel: label every frame again.
        save_every_s: how often the progress record is written.

    Raises:
        ValueError: not a video source, no frames, no classes, or a bad confidence.
    """
    from tqdm import tqdm

    classes = _check_classes(classes, confidence)
    src = registry.get_source(source_id)
    if src["source_type"] != "video":
        raise ValueError(f"expected a video source, got {source_id!r} of type {src['source_type']!r}; "
                         "label images with launch.py label PATHS")
    frames = registry.list_frames(source_id)
    if frame_indices is not None:
        wanted = {int(i) for i in frame_indices}
        frames = [f for f in frames if f["frame_idx"] in wanted]
    if not frames:
        raise ValueError(f"video source {source_id!r} has no frames to label; add them with "
                         "launch.py video add --data DIR FILE")
    fingerprint, settings = settings_fingerprint(classes, confidence, labeler)
    record = (src.get("metadata") or {}).get(FRAME_LABELING_KEY) or {}
    done = set(record.get("done") or []) if record.get("fingerprint") == fingerprint and not relabel else set()
    synonyms = category_synonyms(registry, classes)
    models = labeler_identity(labeler)
    model_name = models.get("detector") or models.get("labeler")
    report = FrameBatchReport(total=len(frames), source_id=source_id, source_ids=[source_id])

    def save() -> None:
        registry.update_source_metadata(source_id, {FRAME_LABELING_KEY: {
            "fingerprint": fingerprint, "settings": settings, "done": sorted(done),
            "labeled_at": datetime.now(UTC).isoformat(timespec="seconds")}})

    last_save = time.monotonic()
    bar = tqdm(frames, unit="frame", desc="labeling", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for fr in bar:
            idx = int(fr["frame_idx"])
            if idx in done:
                report.skipped += 1
                continue
            try:
                path = Path(fr["file_path"])
                image = load_image(path)
                det = labeler.label(image, list(classes), confidence=float(confidence), synonyms=synonyms or None,
                                    image_key=image_sha256(path))
                del image
                res = register_detections(registry, source_id, det, project=project, detection_model=model_name,
                                          frame_id=fr["frame_id"])
            except Exception as exc:  # skip failures; the batch goes on
                reason = str(exc) if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {exc}"
                log.debug("labeling frame %s of %s failed", idx, source_id, exc_info=True)
                report.failed.append((f"frame {idx}", reason))
                continue
            done.add(idx)
            report.labeled += 1
            report.objects += sum(1 for o in res.object_ids if o)
            report.duplicates += len(res.duplicates)
            bar.set_postfix(objects=report.objects, failed=len(report.failed), refresh=False)
            if time.monotonic() - last_save >= save_every_s:
                save()
                last_save = time.monotonic()
    finally:
        bar.close()
        if report.labeled:
            save()
    return report
