"""The GrabCut fallback follows a moving square (no weights), and its drift rule."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.mask_ops import mask_iou
from pipeline.segment.grabcut_track import GrabCutTracker
from tests.video_fixtures import box_mask, moving_boxes


@pytest.mark.parametrize("noise", [0, 20])
@pytest.mark.parametrize("track_id", [0, 1])
def test_follows_a_moving_square_from_its_box(track_id, noise):
    frames, truth = moving_boxes(12)
    rng = np.random.default_rng(track_id)
    frames = [np.clip(f + rng.normal(0, noise, f.shape), 0, 255).astype(np.uint8) for f in frames]
    hw = frames[0].shape[:2]
    start = dict(truth[0])[track_id]
    out = list(GrabCutTracker().propagate(iter(frames), [start]))
    assert len(out) == 12
    ious = [mask_iou(r.masks[0], box_mask(dict(t)[track_id], hw)) for r, t in zip(out, truth, strict=True)]
    print("IoU per frame", [round(v, 3) for v in ious])
    assert min(ious) >= 0.7
    assert not any(r.drift.any() for r in out) and all(r.active.all() for r in out)
    # the square moved 4 px a frame: the masks moved with it
    xs = [np.nonzero(r.masks[0].any(axis=0))[0].min() for r in out]
    assert abs((xs[-1] - xs[0]) - (dict(truth[-1])[track_id][0] - start[0])) <= 2


def test_a_mask_prompt_is_used_as_given_and_both_squares_follow():
    frames, truth = moving_boxes(6)
    hw = frames[0].shape[:2]
    masks = [box_mask(b, hw) for _, b in truth[0]]
    out = list(GrabCutTracker().propagate(iter(frames), None, masks))
    assert np.array_equal(out[0].masks, np.stack(masks))
    for r, t in zip(out, truth, strict=True):
        for k, (_, box) in enumerate(t):
            assert mask_iou(r.masks[k], box_mask(box, hw)) >= 0.7


def test_a_vanished_object_drifts_and_stops():
    frames, truth = moving_boxes(6)
    box = dict(truth[0])[0]
    # from frame 3 on the red square is painted over with background grey
    for f in frames[3:]:
        f[(f == (220, 40, 40)).all(axis=-1)] = 128
    out = list(GrabCutTracker().propagate(iter(frames), [box]))
    assert [bool(r.drift[0]) for r in out] == [False, False, False, True]
    assert len(out) == 4  # nothing else to follow: frames 4 and 5 are not read
