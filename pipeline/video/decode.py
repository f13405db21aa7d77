"""Streaming decode of a video's chosen frames: a generator, one frame in memory at a time.

PyAV (FFmpeg) decodes; OpenCV is used only when PyAV cannot open the file
(:func:`pipeline.video.probe.probe_video` picks the backend). Every frame is decoded (inter
frames need their references) but only kept frames are converted to RGB arrays; the scene
detector sees a grey thumbnail at most :data:`~pipeline.video.sampling.THUMB_WIDTH` wide.

Images are (H, W, 3) uint8 RGB, ``H`` = rows = the video's height, upright (the container's
display rotation applied, as players and OpenCV show it). ``frame_idx`` is the frame's
original 0-based position in decoding order; ``timestamp`` its presentation time in seconds
from the first frame.

A read error, a file that yields no frame, or a file that ends well before the frame count its
header announces (a truncated download) raises one ``ValueError`` naming the file and the
frame where it stopped, after the frames before it were yielded: the caller decides what to do
with those (``app.workflows.video.add_video`` removes them).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pipeline.video.probe import VideoInfo, check_file, probe_video, video_error
from pipeline.video.sampling import THUMB_WIDTH, FrameSampler

#: A full decode that ends before this share of the announced frames counts as truncated.
TRUNCATION_RATIO = 0.95


@dataclass
class VideoFrame:
    """One kept frame.

    Attributes:
        frame_idx: original 0-based index in the video.
        timestamp: presentation time in seconds (the first frame at 0).
        image: (H, W, 3) uint8 RGB.
    """

    frame_idx: int
    timestamp: float
    image: np.ndarray


def _thumb_size(width: int, height: int) -> tuple[int, int]:
    tw = min(THUMB_WIDTH, width)
    return tw, max(1, round(height * tw / width))


def _check_complete(path, decoded: int, info: VideoInfo) -> None:
    if decoded == 0:
        raise video_error(path, "no frame could be decoded (corrupt or truncated)",
                          "re-encode it or copy the video again")
    expected = info.frame_count
    if expected and decoded < expected * TRUNCATION_RATIO - 1:
        raise video_error(path, f"truncated: the stream ends after {decoded} of the {expected} frames its header announces",
                          "copy the video again (an interrupted download or copy?)")


def _iter_pyav(path, info: VideoInfo, sampler: FrameSampler) -> Iterator[VideoFrame]:
    import av

    tw, th = _thumb_size(info.width, info.height)
    idx = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame/slice threads: same frames, faster
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
        try:
            for frame in container.decode(stream):
                t = frame.time
                ts = round((float(t) - start) if t is not None else idx / info.fps, 6)
                if sampler.candidate(idx, ts):
                    thumb = (frame.reformat(width=tw, height=th, format="gray").to_ndarray()
                             if sampler.scene_change else None)
                    if sampler.accept(thumb):
                        image = frame.to_ndarray(format="rgb24")
                        if info.rotation:  # upright, as players show it (np.rot90 turns counter-clockwise)
                            image = np.ascontiguousarray(np.rot90(image, k=info.rotation // 90))
                        yield VideoFrame(idx, ts, image)
                        if sampler.done:
                            return
                idx += 1
        except av.error.FFmpegError as exc:
            raise video_error(path, f"decoding failed at frame {idx} (FFmpeg: {exc.strerror or exc})",
                              "the file is corrupt or truncated; re-encode it or copy it again") from exc
    _check_complete(path, idx, info)


def _iter_opencv(path, info: VideoInfo, sampler: FrameSampler) -> Iterator[VideoFrame]:
    import cv2

    tw, th = _thumb_size(info.width, info.height)
    cap = cv2.VideoCapture(str(path))
    idx = 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            ts = round(idx / info.fps, 6)
            if sampler.candidate(idx, ts):
                thumb = None
                if sampler.scene_change:
                    thumb = cv2.cvtColor(cv2.resize(bgr, (tw, th), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
                if sampler.accept(thumb):
                    yield VideoFrame(idx, ts, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                    if sampler.done:
                        return
            idx += 1
    finally:
        cap.release()
    _check_complete(path, idx, info)


def iter_frames(
    path: str | os.PathLike,
    sampler: FrameSampler | None = None,
    *,
    info: VideoInfo | None = None,
) -> Iterator[VideoFrame]:
    """Yields the frames ``sampler`` keeps, in order, decoding as it goes.

    Args:
        path: the video file.
        sampler: which frames to keep (default: every frame).
        info: the file's :func:`probe_video` result (probed here when None); its ``backend``
            chooses PyAV or OpenCV.

    Yields:
        :class:`VideoFrame` (one (H, W, 3) uint8 RGB image each; nothing is retained).

    Raises:
        FileNotFoundError: no such file.
        ValueError: see :mod:`pipeline.video.probe` (before the first frame), or a read error /
            truncation (after the frames before it).
    """
    p = check_file(path)
    info = probe_video(p) if info is None else info
    sampler = FrameSampler() if sampler is None else sampler
    if info.backend == "opencv":
        yield from _iter_opencv(p, info, sampler)
    else:
        yield from _iter_pyav(p, info, sampler)
