"""SAM2.1 video propagation on a tiny random ``Sam2VideoModel``.

Random weights give arbitrary masks, so these tests check what does not depend on the weights:
shapes and counts, that the prompt frame's boxes/masks reach the session, that the session's
stored state stays bounded while transformers' default session grows with every frame (and
that dropping it changes no mask), and the drift rule on scripted object scores.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.segment.sam2_video import Sam2VideoPropagator, session_state
from tests.pipeline.segment_video.tiny_video_model import (
    TINY_VIDEO_INPUT,
    build_tiny_sam2_video,
    script_object_scores,
)
from tests.video_fixtures import box_mask, moving_boxes


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    return build_tiny_sam2_video(tmp_path_factory.mktemp("sam2video") / "facebook--sam2.1-hiera-tiny")


def _propagator(folder, **kw) -> Sam2VideoPropagator:
    return Sam2VideoPropagator.from_pretrained(folder, device="cpu", dtype=torch.float32, **kw)


def _always_present(model):
    return script_object_scores(model, lambda call, n: [8.0] * n)


def test_yields_one_result_per_frame_with_masks_scores_and_shapes(video_folder):
    frames, truth = moving_boxes(5)
    prop = _propagator(video_folder)
    _always_present(prop.model)
    boxes = np.stack([b for _, b in truth[0]])
    out = list(prop.propagate(iter(frames), boxes, drift_threshold=0.0))
    assert [r.step for r in out] == [0, 1, 2, 3, 4]
    for r in out:
        assert r.masks.shape == (2, 96, 128) and r.masks.dtype == bool
        assert r.scores.shape == (2,) and np.all((r.scores >= 0) & (r.scores <= 1))
        assert r.active.all() and not r.drift.any()
    # sigmoid(8) is the scripted object score: the score is the logit's probability
    np.testing.assert_allclose(out[3].scores, 1 / (1 + np.exp(-8.0)), rtol=1e-5)
    assert any(r.masks.any() for r in out[1:])


def test_prompt_boxes_reach_the_session_scaled_to_the_model_input(video_folder):
    frames, _ = moving_boxes(2)
    prop = _propagator(video_folder)
    box = np.array([[10.0, 20.0, 50.0, 60.0]], np.float32)
    list(prop.propagate(iter(frames), box, drift_threshold=0.0))
    coords = prop.last_session.point_inputs_per_obj[0][0]["point_coords"].reshape(-1, 2).numpy()
    labels = prop.last_session.point_inputs_per_obj[0][0]["point_labels"].reshape(-1).tolist()
    s = TINY_VIDEO_INPUT
    np.testing.assert_allclose(coords, [[10 * s / 128, 20 * s / 96], [50 * s / 128, 60 * s / 96]], atol=1e-3)
    assert labels == [2, 3]  # SAM2's box-corner labels


def test_mask_prompt_is_the_prompt_frame_result(video_folder):
    frames, truth = moving_boxes(3)
    x0, y0, x1, y1 = truth[0][0][1].astype(int)
    mask = np.zeros((96, 128), bool)
    mask[y0:y1, x0:x1] = True
    prop = _propagator(video_folder)
    out = list(prop.propagate(iter(frames), None, [mask], drift_threshold=0.0))
    first = out[0].masks[0]
    iou = (first & mask).sum() / (first | mask).sum()
    assert iou > 0.9, iou  # SAM2 takes a mask prompt as the prompt frame's output
    assert out[0].scores[0] > 0.99


def test_one_object_by_mask_and_one_by_box_in_one_session(video_folder):
    frames, truth = moving_boxes(3)
    x0, y0, x1, y1 = truth[0][0][1].astype(int)
    mask = np.zeros((96, 128), bool)
    mask[y0:y1, x0:x1] = True
    prop = _propagator(video_folder)
    _always_present(prop.model)
    boxes = np.array([[np.nan] * 4, truth[0][1][1]], np.float32)
    out = list(prop.propagate(iter(frames), boxes, [mask, None], drift_threshold=0.0))
    session = prop.last_session
    assert 0 in session.mask_inputs_per_obj[0] and 0 in session.point_inputs_per_obj[1]
    assert 0 not in session.point_inputs_per_obj[0] and 0 not in session.mask_inputs_per_obj[1]
    assert all(0 in session.output_dict_per_obj[i]["cond_frame_outputs"] for i in (0, 1))
    assert [r.masks.shape for r in out] == [(2, 96, 128)] * 3
    first = out[0].masks[0]
    assert (first & mask).sum() / (first | mask).sum() > 0.9  # object 0 kept its mask prompt


def test_frames_are_read_lazily_and_max_frames_stops_reading(video_folder):
    frames, truth = moving_boxes(8)
    read = []

    def stream():
        for i, f in enumerate(frames):
            read.append(i)
            yield f

    prop = _propagator(video_folder)
    _always_present(prop.model)
    out = list(prop.propagate(stream(), [truth[0][0][1]], drift_threshold=0.0, max_frames=3))
    assert len(out) == 4 and read == [0, 1, 2, 3]  # the prompt frame + 3, never all 8


def test_session_state_stays_bounded_while_the_default_session_grows(tmp_path):
    # short memory windows (3 masks, 4 pointers) fill after 4 frames: a short clip shows the bound
    folder = build_tiny_sam2_video(tmp_path / "short-memory", num_maskmem=3, max_object_pointers=4)
    frames, truth = moving_boxes(12)
    peaks, masks = {}, {}
    for keep in (False, True):
        prop = _propagator(folder, keep_history=keep)
        _always_present(prop.model)
        res = []
        for r in prop.propagate(iter(frames), [truth[0][0][1]], drift_threshold=0.0):
            res.append(r.masks)
            if r.step in (5, 11):  # the state after 6 and after 12 frames
                peaks[keep, r.step + 1] = session_state(prop.last_session)
        masks[keep] = np.stack(res)
    short, long_ = peaks[False, 6], peaks[False, 12]
    full_short, full_long = peaks[True, 6], peaks[True, 12]
    print("bounded", short, long_, "default", full_short, full_long)
    # bounded: the same state after 6 and 12 frames (windows full after 5)
    assert long_["bytes"] == short["bytes"] and long_["frames"] == 0
    assert long_["outputs"] <= 1 + prop.pointer_window + 1
    # the default session keeps every frame and every output
    assert full_long["frames"] == 12 and full_long["outputs"] == 12
    per_frame = (full_long["bytes"] - full_short["bytes"]) / 6  # grows by this much with every frame
    assert per_frame > 0.25 * long_["bytes"] and full_long["bytes"] > 3 * long_["bytes"]
    # and dropping the state changes no mask
    assert np.array_equal(masks[False], masks[True])


def test_low_score_flags_drift_and_stops_that_object(video_folder):
    frames, truth = moving_boxes(6)
    prop = _propagator(video_folder)
    # one object (one decoder call per frame): present on frames 0-2, lost from frame 3 on
    calls = script_object_scores(prop.model, lambda call, n: [6.0 if call < 3 else -6.0] * n)
    out = list(prop.propagate(iter(frames), [truth[0][0][1]], drift_threshold=0.5))
    assert [r.step for r in out] == [0, 1, 2, 3]  # stopped after the drift frame: frames 4, 5 never run
    assert [bool(r.drift[0]) for r in out] == [False, False, False, True]
    assert out[3].scores[0] < 0.01 and out[3].active[0]  # followed up to its drift frame
    assert len(calls) == 4

    # stop_on_drift=False: every frame is followed, each lost frame flagged
    prop = _propagator(video_folder)
    script_object_scores(prop.model, lambda call, n: [6.0 if call < 3 else -6.0] * n)
    out = list(prop.propagate(iter(frames), [truth[0][0][1]], drift_threshold=0.5, stop_on_drift=False))
    assert [bool(r.drift[0]) for r in out] == [False, False, False, True, True, True]
    assert out[5].active[0]


def test_one_drifting_object_does_not_stop_the_other(video_folder):
    frames, truth = moving_boxes(5)
    prop = _propagator(video_folder)
    # calls alternate object 0, object 1 per frame; object 1 is lost on frame 2
    script_object_scores(prop.model, lambda call, n: [-6.0 if (call % 2 == 1 and call >= 4) else 6.0] * n)
    out = list(prop.propagate(iter(frames), np.stack([b for _, b in truth[0]]), drift_threshold=0.5))
    assert len(out) == 5
    assert out[2].drift.tolist() == [False, True]
    assert out[3].active.tolist() == [True, False] and not out[3].masks[1].any()
    assert np.isnan(out[4].scores[1]) and out[4].scores[0] > 0.99


def test_bad_prompts_and_frames_name_the_problem(video_folder):
    frames, _ = moving_boxes(2)
    prop = _propagator(video_folder)
    with pytest.raises(ValueError, match="at least one object"):
        list(prop.propagate(iter(frames), np.zeros((0, 4))))
    with pytest.raises(ValueError, match=r"object 0: expected an xyxy box inside the 128x96 frame"):
        list(prop.propagate(iter(frames), [[200, 10, 220, 30]]))
    with pytest.raises(ValueError, match=r"frame 1: expected the prompt frame's size 128x96, got 64x48"):
        list(prop.propagate(iter([frames[0], frames[1][:48, :64]]), [[4, 8, 30, 30]], drift_threshold=0.0))


def test_an_image_only_sam2_folder_is_refused(tmp_path):
    from tests.pipeline.tiny_models_sam2_dino import build_tiny_sam2

    folder = build_tiny_sam2(tmp_path / "img")
    with pytest.raises(ValueError, match="expected a 'sam2_video' checkpoint"):
        Sam2VideoPropagator.from_pretrained(folder, device="cpu")


@pytest.mark.weights
def test_released_sam2_follows_the_moving_squares():
    """With the released SAM2.1-hiera-tiny weights (``$AGL_WEIGHTS`` / ``data/models`` / the HF
    cache; never downloaded here), both squares are followed at IoU >= 0.7 on every frame."""
    from pipeline.mask_ops import mask_iou
    from pipeline.models.loader import locate_weights
    from pipeline.models.specs import get_spec

    found = locate_weights(get_spec("segmenter", "cpu"))
    if found is None:
        pytest.skip("SAM2.1-hiera-tiny weights are not on this machine (launch.py models download)")
    frames, truth = moving_boxes(8)
    prop = Sam2VideoPropagator.from_pretrained(found.path)
    out = list(prop.propagate(iter(frames), np.stack([b for _, b in truth[0]])))
    assert len(out) == 8 and not any(r.drift.any() for r in out)
    for r, t in zip(out, truth, strict=True):
        for k, (_, box) in enumerate(t):
            m = box_mask(box, (96, 128))
            assert mask_iou(r.masks[k], m) >= 0.7
