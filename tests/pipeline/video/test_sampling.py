"""FrameSampler and the grey-histogram distance (pure; no decoding)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.video import FrameSampler, grey_histogram, histogram_distance


def test_histogram_distance_bounds_and_moving_objects():
    black = np.zeros((16, 16), np.uint8)
    white = np.full((16, 16), 255, np.uint8)
    assert histogram_distance(grey_histogram(black), grey_histogram(black)) == 0.0
    assert histogram_distance(grey_histogram(black), grey_histogram(white)) == pytest.approx(1.0)
    a = np.full((16, 16), 100, np.uint8)
    b = a.copy()
    a[2:6, 2:6] = 200
    b[9:13, 9:13] = 200  # the same square elsewhere: same histogram
    assert histogram_distance(grey_histogram(a), grey_histogram(b)) == 0.0
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 255
    assert grey_histogram(rgb).argmax() == int(0.299 * 255) * 64 // 256


def test_fps_clock_with_uneven_timestamps():
    s = FrameSampler(fps=2)
    ts = [0.0, 0.2, 0.45, 0.51, 0.9, 1.0, 2.7, 2.8]
    assert [t for i, t in enumerate(ts) if s.candidate(i, t) and s.accept()] == [0.0, 0.51, 1.0, 2.7]


def test_max_frames_sets_done():
    s = FrameSampler(every=2, max_frames=2)
    kept = [i for i in range(10) if s.candidate(i, i / 10) and s.accept()]
    assert kept == [0, 2] and s.done and not s.candidate(4, 0.4)
    assert s.seen == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"every": 2, "fps": 1.0}, "either every"),
        ({"every": 0}, "every: expected an integer >= 1"),
        ({"fps": -1.0}, "fps: expected frames per second > 0"),
        ({"max_frames": 0}, "max_frames: expected an integer >= 1"),
        ({"scene_threshold": 1.5}, r"scene_threshold: expected a value in \(0, 1\)"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FrameSampler(**kwargs)


def test_scene_change_needs_a_thumbnail():
    s = FrameSampler(scene_change=True)
    assert s.candidate(0, 0.0)
    with pytest.raises(ValueError, match="grey thumbnail"):
        s.accept(None)
