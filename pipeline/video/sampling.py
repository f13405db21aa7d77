"""Which decoded frames to keep: every N-th, F per second, scene changes, at most M.

Pure logic, no decoding: :class:`FrameSampler` is asked about each decoded frame in order
(its original 0-based index and its timestamp in seconds) and answers keep or skip.

Scene-change sampling compares 64-bin grey-level histograms of small thumbnails (the decoder
scales each frame to at most 64 pixels wide, grey): the distance is the total variation
``0.5 * sum(|h1 - h2|)`` of the normalised histograms, in [0, 1] (0 = same histogram, 1 = no
grey level in common). A frame is kept when its distance to the *last kept* frame exceeds the
threshold, so both hard cuts and slow drifts (a long pan) produce new frames, and a static
shot produces one. A histogram ignores where things are, so objects moving over the same
background do not count as a change. (PySceneDetect is not used; this is its
``HistogramDetector`` idea in a few lines of numpy.)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Bins of the grey histogram.
HIST_BINS = 64
#: Widest thumbnail (pixels) the histogram is computed on.
THUMB_WIDTH = 64
#: Default scene-change threshold on the histogram distance (in [0, 1]).
SCENE_THRESHOLD = 0.3


def grey_histogram(thumb: np.ndarray, bins: int = HIST_BINS) -> np.ndarray:
    """The normalised grey-level histogram of a thumbnail.

    Args:
        thumb: (H, W) uint8 grey, or (H, W, 3) uint8 RGB (converted with the BT.601 weights).
        bins: number of bins over 0..255.

    Returns:
        (bins,) float64 summing to 1.
    """
    a = np.asarray(thumb)
    if a.ndim == 3:
        a = a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"expected a (H, W) grey or (H, W, 3) RGB thumbnail, got shape {a.shape}")
    hist, _ = np.histogram(a, bins=bins, range=(0, 256))
    return hist.astype(np.float64) / float(a.size)


def histogram_distance(h1: np.ndarray, h2: np.ndarray) -> float:
    """Total variation distance of two normalised histograms, in [0, 1]."""
    return float(0.5 * np.abs(np.asarray(h1, np.float64) - np.asarray(h2, np.float64)).sum())


def check_sampling(every: int | None, fps: float | None, max_frames: int | None,
                   scene_threshold: float = SCENE_THRESHOLD) -> None:
    """Raises a ValueError naming the option when the sampling settings are invalid."""
    if every is not None and fps is not None:
        raise ValueError(f"expected either every (N) or fps (F), got both: every={every}, fps={fps}")
    if every is not None and (isinstance(every, bool) or int(every) != every or int(every) < 1):
        raise ValueError(f"every: expected an integer >= 1 (keep every N-th frame), got {every!r}")
    if fps is not None and (not np.isfinite(float(fps)) or float(fps) <= 0):
        raise ValueError(f"fps: expected frames per second > 0, got {fps!r}")
    if max_frames is not None and (int(max_frames) != max_frames or int(max_frames) < 1):
        raise ValueError(f"max_frames: expected an integer >= 1, got {max_frames!r}")
    if not 0.0 < float(scene_threshold) < 1.0:
        raise ValueError(f"scene_threshold: expected a value in (0, 1), got {scene_threshold!r}")


@dataclass
class FrameSampler:
    """Decides, frame by frame in decoding order, which frames to keep.

    Args:
        every: keep frames 0, N, 2N, … (by original index). None = every frame.
        fps: keep about F frames per second: the first frame at or after each multiple of
            ``1/F`` seconds (timestamps relative to the first frame). Exclusive with ``every``.
        scene_change: among the frames ``every``/``fps`` select, keep only those whose grey
            histogram differs from the last kept frame's by more than ``scene_threshold`` (the
            first is always kept).
        max_frames: stop after keeping this many (``done`` becomes True).
        scene_threshold: see :func:`histogram_distance`.

    Attributes:
        kept: frames kept so far.
        seen: frames looked at so far (after a complete decode: the video's frame count).
    """

    every: int | None = None
    fps: float | None = None
    scene_change: bool = False
    max_frames: int | None = None
    scene_threshold: float = SCENE_THRESHOLD
    kept: int = 0
    seen: int = 0
    _next_t: float = field(default=0.0, repr=False)
    _t0: float | None = field(default=None, repr=False)
    _last_hist: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_sampling(self.every, self.fps, self.max_frames, self.scene_threshold)

    @property
    def done(self) -> bool:
        """True once ``max_frames`` frames were kept: the decoder may stop."""
        return self.max_frames is not None and self.kept >= self.max_frames

    def candidate(self, frame_idx: int, timestamp: float) -> bool:
        """Whether ``every``/``fps`` select this frame (no state changes but the fps clock).

        Args:
            frame_idx: original 0-based index of the frame in the video.
            timestamp: its presentation time in seconds.
        """
        if self.done:
            return False
        self.seen = max(self.seen, int(frame_idx) + 1)
        if self.every is not None:
            return frame_idx % int(self.every) == 0
        if self.fps is not None:
            if self._t0 is None:
                self._t0 = float(timestamp)
            t = float(timestamp) - self._t0
            step = 1.0 / float(self.fps)
            if t + 1e-6 < self._next_t:
                return False
            # the next sample time lies after this frame (several steps if frames are sparse)
            self._next_t = (np.floor((t + 1e-6) / step) + 1) * step
            return True
        return True

    def accept(self, thumb: np.ndarray | None = None) -> bool:
        """Final say on a candidate frame; counts it as kept when True.

        Args:
            thumb: the frame's (H, W) uint8 grey thumbnail; required with ``scene_change``.
        """
        if self.scene_change:
            if thumb is None:
                raise ValueError("scene_change: expected a grey thumbnail of the frame, got None")
            hist = grey_histogram(thumb)
            if self._last_hist is not None and histogram_distance(hist, self._last_hist) <= self.scene_threshold:
                return False
            self._last_hist = hist
        self.kept += 1
        return True

    def settings(self) -> dict:
        """The settings as a plain dict (stored with the frames they produced)."""
        return {"every": self.every, "fps": self.fps, "scene_change": bool(self.scene_change),
                "max_frames": self.max_frames,
                "scene_threshold": self.scene_threshold if self.scene_change else None}
