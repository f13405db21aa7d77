"""Bad video files for tests: empty, text, truncated, audio-only, unknown codec (written here)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.video_fixtures import moving_boxes, write_video


def small_video(path: Path, n: int = 30, **kw) -> Path:
    """A 128x96 H.264 (or ``codec``) video of ``n`` frames: two moving squares at 10 fps."""
    frames, _ = moving_boxes(n)
    return write_video(path, frames, **kw)


def empty_file(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def text_file(path: Path) -> Path:
    path.write_text("this is not a video\n" * 20)
    return path


def truncated_mp4(path: Path, tmp: Path) -> Path:
    """An MP4 cut in half (its index, the moov atom, is written last, so it is lost)."""
    data = small_video(tmp / "whole.mp4").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def truncated_mkv(path: Path, tmp: Path, keep: float = 0.8) -> Path:
    """A Matroska file cut at ``keep`` of its bytes: the header is intact, the frames end early."""
    data = small_video(tmp / "whole.mkv").read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def audio_only(path: Path) -> Path:
    """An AAC audio file (m4a) with no video stream, written with PyAV."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for _ in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def unknown_codec(path: Path, tmp: Path) -> Path:
    """An AVI whose video FourCC (MPEG-4's ``FMP4``) is replaced by one no decoder knows."""
    data = small_video(tmp / "mpeg4.avi", codec="mpeg4").read_bytes()
    assert b"FMP4" in data
    path.write_bytes(data.replace(b"FMP4", b"QQZ9"))
    return path


def still_image(path: Path) -> Path:
    """A still PNG/JPEG (by ``path``'s suffix): FFmpeg would read it as a one-frame video."""
    from PIL import Image

    Image.fromarray(np.full((20, 30, 3), 100, np.uint8)).save(path)
    return path
