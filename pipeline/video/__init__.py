"""Video decoding and frame sampling (pure: no registry, no UI).

* :mod:`pipeline.video.probe`: header facts (size, fps, frame count, duration, codec) and the
  clear errors for files that are not usable videos.
* :mod:`pipeline.video.sampling`: which frames to keep (every N, F per second, scene changes
  by grey-histogram difference, at most M).
* :mod:`pipeline.video.decode`: the streaming generator of kept frames (PyAV, OpenCV fallback).
"""
from __future__ import annotations

from pipeline.video.decode import VideoFrame, iter_frames
from pipeline.video.probe import VideoInfo, probe_video
from pipeline.video.sampling import (
           SCENE_THRESHOLD,
           FrameSampler,
           grey_histogram,
           histogram_distance,
)

__all__ = ["FrameSampler", "SCENE_THRESHOLD", "VideoFrame", "VideoInfo", "grey_histogram", "histogram_distance",
           "iter_frames", "probe_video"]
