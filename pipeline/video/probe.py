"""What a video file holds, read from its container header (no frame is decoded).

The one place that turns "this file is not a usable video" into a clear ``ValueError`` naming
the file: zero-length, not a media file at all, audio only, a codec this FFmpeg build cannot
decode. Truncation that the header does not reveal is caught while decoding
(:func:`pipeline.video.decode.iter_frames`).

Sizes are the picture as players show it: ``width`` = columns, ``height`` = rows after the
container's display rotation (phone videos store portrait frames as landscape pictures plus a
90-degree display matrix; the decoder rotates them, see ``VideoInfo.rotation``).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class VideoInfo:
    """Header facts of a video file.

    Attributes:
        width: picture columns in pixels.
        height: picture rows in pixels.
        fps: average frame rate (frames per second), > 0.
        frame_count: frames the container announces, or ``round(duration * fps)`` when it does
            not say (Matroska, WebM); 0 when neither is known.
        duration: seconds (0.0 when unknown).
        codec: the decoder's name (``"h264"``, ``"mpeg4"``, …).
        backend: ``"pyav"`` or ``"opencv"`` (the fallback, when PyAV cannot open the file).
        rotation: degrees (0, 90, 180, 270) the decoded pictures are turned counter-clockwise
            to show upright (the display matrix; OpenCV applies it itself, so 0 there).
    """

    width: int
    height: int
    fps: float
    frame_count: int
    duration: float
    codec: str
    backend: str = "pyav"
    rotation: int = 0

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON-ready)."""
        return asdict(self)


def video_error(path: str | os.PathLike, what: str, fix: str = "") -> ValueError:
    """One ValueError line naming the file: ``cannot read video 'x.mp4': <what>; <fix>``."""
    name = Path(path).name
    return ValueError(f"cannot read video {name!r}: {what}" + (f"; {fix}" if fix else ""))


_REENCODE = "re-encode it (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4) or pick another file"


def check_file(path: str | os.PathLike) -> Path:
    """The path, after checking it names a non-empty regular file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, or a zero-length file.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"expected a video file, got {str(p)!r} (no such file)")
    if not p.is_file():
        raise video_error(p, "expected a file, got a folder", "name a video file")
    if p.stat().st_size == 0:
        raise video_error(p, "the file is empty (0 bytes)", "copy the video again; the transfer may have failed")
    return p


def _fps_of(stream) -> float:
    for rate in (stream.average_rate, stream.base_rate, stream.guessed_rate):
        if rate is not None and float(rate) > 0 and math.isfinite(float(rate)):
            return float(rate)
    return 0.0


def probe_pyav(path: Path) -> VideoInfo:
    """Probes with PyAV.

    Raises:
        ValueError: not a media file, no video stream (audio only), no decoder for the codec,
            no frame rate or size.
        av.error.FFmpegError: other FFmpeg failures (the caller may try OpenCV).
    """
    import av

    try:
        container = av.open(str(path))
    except av.error.InvalidDataError as exc:
        raise video_error(path, "not a video, or a corrupt/truncated one (FFmpeg: invalid data)", _REENCODE) from exc
    with container:
        fmt = str(getattr(container.format, "name", "") or "")
        if fmt.endswith("_pipe") or fmt == "image2":  # FFmpeg reads a still image as a 1-frame "video"
            raise video_error(path, f"a still image ({fmt.removesuffix('_pipe')}), not a video",
                              "label or import images with launch.py label / import instead")
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise video_error(path, f"no video stream (streams: {', '.join(kinds)}; an audio-only file?)",
                              "pick a file with a picture track")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None:
            raise video_error(path, "unknown video codec (this FFmpeg build has no decoder for it)", _REENCODE)
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        fps = _fps_of(stream)
        if width <= 0 or height <= 0:
            raise video_error(path, f"expected a picture size > 0, got {width}x{height}", _REENCODE)
        if fps <= 0:
            raise video_error(path, "the container states no frame rate", _REENCODE)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000  # AV_TIME_BASE
        else:
            duration = 0.0
        frame_count = int(stream.frames or 0) or int(round(duration * fps))
        rotation = _first_frame_rotation(path, container, stream)
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(width=width, height=height, fps=fps, frame_count=frame_count,
                         duration=round(duration, 6), codec=str(ctx.name), backend="pyav", rotation=rotation)


def _first_frame_rotation(path: Path, container, stream) -> int:
    """The display rotation of the first frame (a multiple of 90 degrees, else 0).

    Raises:
        ValueError: not even one frame decodes (a corrupt or truncated file).
    """
    import av

    try:
        frame = next(container.decode(stream), None)
    except av.error.FFmpegError as exc:
        raise video_error(path, f"the first frame does not decode (FFmpeg: {exc.strerror or exc})", _REENCODE) from exc
    if frame is None:
        raise video_error(path, "no frame could be decoded (corrupt or truncated)", _REENCODE)
    rot = int(round(float(getattr(frame, "rotation", 0) or 0))) % 360
    return rot if rot in (0, 90, 180, 270) else 0


def probe_opencv(path: Path) -> VideoInfo:
    """Probes with OpenCV (the fallback when PyAV cannot open the file).

    Raises:
        ValueError: OpenCV cannot open it or read a first frame.
    """
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        if not ok or frame is None:
            raise video_error(path, "neither PyAV nor OpenCV can decode it", _REENCODE)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if fps <= 0 or not math.isfinite(fps):
            raise video_error(path, "the container states no frame rate", _REENCODE)
        count = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC) or 0)
        codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ") or "unknown"
        h, w = frame.shape[:2]
        return VideoInfo(width=int(w), height=int(h), fps=fps, frame_count=count,
                         duration=round(count / fps, 6), codec=codec, backend="opencv")
    finally:
        cap.release()


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Width, height, fps, frame count, duration and codec of a video file.

    PyAV first; OpenCV only when PyAV fails for a reason other than the clear ones (empty
    file, not a video, audio only, unknown codec), which are raised as they are.

    Raises:
        FileNotFoundError: no such file.
        ValueError: one line naming the file, what is wrong and what to do.
    """
    import av

    p = check_file(path)
    try:
        return probe_pyav(p)
    except ValueError:
        raise
    except av.error.FFmpegError as exc:
        try:
            return probe_opencv(p)
        except ValueError as cv_exc:
            raise video_error(p, f"FFmpeg: {exc.strerror or exc}; OpenCV cannot decode it either",
                              _REENCODE) from cv_exc
