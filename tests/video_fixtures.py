"""Small synthetic videos for tests: written with PyAV, seeded into a registry as frames.

Frames are RGB uint8 arrays (H, W, 3). Shapes' boxes are xyxy, absolute pixels, (x, y) =
(column, row). Seeding stores each frame as a PNG under
``<data>/media/frames/<source_id>/<frame_idx:06d>.png`` (the layout ``launch.py video add``
uses) and one ``frames`` row per frame, without decoding the video file again.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

FRAME_DIR = "media/frames"


def write_video(path: Path, frames: Sequence[np.ndarray], *, fps: int = 10, codec: str = "libx264") -> Path:
    """Writes RGB uint8 frames (H, W, 3; H and W even) as an H.264 (or ``codec``) video file."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "ultrafast"}
        for arr in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def moving_boxes(n_frames: int, size: tuple[int, int] = (96, 128), *, step: int = 4) -> tuple[list[np.ndarray], list[list[tuple[int, np.ndarray]]]]:
    """Two coloured squares moving right and left on grey.

    Returns:
        (frames, truth): ``frames[i]`` is RGB uint8 (H, W, 3) with ``size = (H, W)``;
        ``truth[i]`` lists ``(track_id, xyxy float32)`` of the squares visible in frame ``i``.
    """
    h, w = size
    frames, truth = [], []
    side = max(8, h // 5)
    for i in range(n_frames):
        img = np.full((h, w, 3), 128, np.uint8)
        boxes = []
        for tid, (x0, y0, color, d) in enumerate(((4, 8, (220, 40, 40), 1), (w - side - 4, h - side - 8, (40, 60, 220), -1))):
            x = int(np.clip(x0 + d * step * i, 0, w - side))
            img[y0:y0 + side, x:x + side] = color
            boxes.append((tid, np.array([x, y0, x + side, y0 + side], np.float32)))
        frames.append(img)
        truth.append(boxes)
    return frames, truth


def box_mask(box: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """The (H, W) bool mask filling ``box`` (xyxy, absolute pixels, truncated to ints) of a frame of size ``hw``."""
    m = np.zeros(hw, bool)
    x0, y0, x1, y1 = np.asarray(box).astype(int)
    m[y0:y1, x0:x1] = True
    return m


def seed_video_source(registry, video_path: Path, frames: Sequence[np.ndarray], *, fps: float = 10.0,
                      frame_indices: Sequence[int] | None = None) -> tuple[str, list[str]]:
    """Registers ``video_path`` as a video source and ``frames`` as its frames (PNG files + rows).

    Returns:
        (source_id, frame_ids) with ``frame_ids[i]`` for ``frames[i]``.
    """
    h, w = frames[0].shape[:2]
    indices = list(range(len(frames))) if frame_indices is None else list(frame_indices)
    source_id = registry.register_source(video_path, source_type="video", width=w, height=h, fps=fps,
                                         frame_count=max(indices) + 1)
    frame_ids = []
    for idx, arr in zip(indices, frames, strict=True):
        rel = Path(FRAME_DIR) / source_id / f"{idx:06d}.png"
        target = registry.data_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(target)
        frame_ids.append(registry.add_frame(source_id, idx, timestamp=idx / fps, file_path=rel.as_posix()))
    return source_id, frame_ids
