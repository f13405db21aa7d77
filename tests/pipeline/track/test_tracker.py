"""pipeline.track: association cost, gating, lost-track buffer, categories, births/deaths, interpolation."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.track import (
    FrameDetections,
    TrackerConfig,
    association_cost,
    interpolate_boxes,
    solve_assignment,
    track,
)


def box(x: float, y: float, s: float = 10.0) -> list[float]:
    return [x, y, x + s, y + s]


def frames_of(rows: dict[int, list[tuple]], n: int) -> list[FrameDetections]:
    """``rows[f]`` = [(key, xyxy, class, embedding or None)]; frames 0..n-1 (empty ones too)."""
    out = []
    for f in range(n):
        items = rows.get(f, [])
        embs = None
        if any(it[3] is not None for it in items):
            embs = np.array([it[3] if it[3] is not None else [np.nan] * 3 for it in items], float)
        out.append(FrameDetections(f, np.array([it[1] for it in items], float).reshape(-1, 4),
                                   [it[2] for it in items], embs, [it[0] for it in items]))
    return out


def by_key(tracks) -> dict:
    """Which track each detection key went to."""
    return {k: t.track_id for t in tracks for k in t.keys}


def test_cost_is_weighted_iou_and_cosine_or_iou_alone():
    a, b = np.array([box(0, 0)]), np.array([box(5, 0), box(50, 50)])
    cost, iou, cos = association_cost(a, b, None, None, iou_weight=0.5)
    assert iou[0, 0] == pytest.approx(50 / 150) and cost[0, 0] == pytest.approx(1 - 50 / 150)
    assert cost[0, 1] == 1.0 and np.isnan(cos).all()
    ea, eb = np.array([[1.0, 0, 0]]), np.array([[1.0, 1.0, 0], [np.nan] * 3])
    cost, _, cos = association_cost(a, b, ea, eb, iou_weight=0.25)
    assert cos[0, 0] == pytest.approx(np.sqrt(0.5))
    assert cost[0, 0] == pytest.approx(0.25 * (1 - 1 / 3) + 0.75 * (1 - np.sqrt(0.5)))
    assert cost[0, 1] == 1.0  # no embedding on that detection: IoU alone


def test_assignment_is_optimal_not_greedy_and_respects_gates():
    # Greedy would take (0, 0) at 0.1 and be left with (1, 1) at 0.9 (total 1.0); optimal is 0.4.
    cost = np.array([[0.1, 0.2], [0.2, 0.9]])
    assert solve_assignment(cost, np.ones((2, 2), bool)) == [(0, 1), (1, 0)]
    allowed = np.array([[True, False], [False, False]])
    assert solve_assignment(cost, allowed) == [(0, 0)]


def test_crossing_objects_keep_their_ids_by_motion_and_appearance():
    red, blue = [1.0, 0, 0], [0, 0, 1.0]
    rows = {}
    for f in range(20):  # red goes right, blue goes left, same category, they cross at f ~ 10
        rows[f] = [(f"r{f}", box(10 + 4 * f, 20), "cat", red), (f"b{f}", box(90 - 4 * f, 22), "cat", blue)]
    tracks = track(frames_of(rows, 20), TrackerConfig(min_length=1))
    assert len(tracks) == 2
    ids = by_key(tracks)
    assert len({ids[f"r{f}"] for f in range(20)}) == 1 and len({ids[f"b{f}"] for f in range(20)}) == 1
    assert ids["r0"] != ids["b0"]
    # Without embeddings, constant-velocity prediction alone carries them through the crossing.
    rows_plain = {f: [(k, b, c, None) for k, b, c, _ in items] for f, items in rows.items()}
    ids = by_key(track(frames_of(rows_plain, 20), TrackerConfig(min_length=1)))
    assert len({ids[f"r{f}"] for f in range(20)}) == 1 and len({ids[f"b{f}"] for f in range(20)}) == 1


def test_occlusion_within_max_gap_keeps_the_track_beyond_it_starts_a_new_one():
    rows = {f: [(f"a{f}", box(10 + 3 * f, 10), "cat", None)] for f in range(20) if not 6 <= f < 11}  # hidden 5 frames
    tracks = track(frames_of(rows, 20), TrackerConfig(max_gap=5, min_length=1))
    assert len(tracks) == 1 and tracks[0].frames == [f for f in range(20) if not 6 <= f < 11]
    tracks = track(frames_of(rows, 20), TrackerConfig(max_gap=4, min_length=1))
    assert [t.frames[0] for t in tracks] == [0, 11]  # lost too long: death, then a birth


def test_categories_never_mix_even_on_a_perfect_overlap():
    rows = {f: [(f"c{f}", box(10 + 2 * f, 10), "cat" if f < 5 else "dog", None)] for f in range(10)}
    tracks = track(frames_of(rows, 10), TrackerConfig(min_length=1))
    assert [(t.class_id, len(t.frames)) for t in tracks] == [("cat", 5), ("dog", 5)]


def test_appearance_gate_refuses_a_look_alike_box_of_another_colour():
    rows = {f: [(f"a{f}", box(10, 10), "cat", [1.0, 0, 0] if f < 3 else [-1.0, 0.1, 0])] for f in range(6)}
    tracks = track(frames_of(rows, 6), TrackerConfig(min_length=1, min_cosine=0.5))
    assert [t.frames for t in tracks] == [[0, 1, 2], [3, 4, 5]]


def test_min_length_drops_short_tracks_and_ids_follow_first_frame():
    rows = {f: [(f"a{f}", box(10 + f, 10), "cat", None)] for f in range(2, 8)}
    rows[4] = rows[4] + [("fp", box(70, 70), "cat", None)]  # a one-frame false positive
    tracks = track(frames_of(rows, 8), TrackerConfig(min_length=2))
    assert [(t.track_id, t.keys[0], len(t.keys)) for t in tracks] == [(1, "a2", 6)]
    assert np.allclose(tracks[0].boxes[0], box(12, 10))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="max_gap"):
        TrackerConfig(max_gap=-1)
    with pytest.raises(ValueError, match="iou_weight"):
        TrackerConfig(iou_weight=1.5)
    with pytest.raises(ValueError, match="frame 3: expected finite xyxy"):
        FrameDetections(3, [[5, 5, 1, 1]], ["cat"])
    with pytest.raises(ValueError, match="increasing frame_idx"):
        track([FrameDetections(2, np.zeros((0, 4)), []), FrameDetections(1, np.zeros((0, 4)), [])])


def test_interpolation_is_exactly_linear_in_xyxy_on_the_given_frames():
    gaps, boxes = interpolate_boxes([10, 4, 0], [[40, 30, 50, 70], [10, 0, 20, 10], [0, 0, 10, 10]], range(0, 12, 2))
    assert gaps == [2, 6, 8]
    assert boxes.tolist() == [[5, 0, 15, 10], [20, 10, 30, 30], [30, 20, 40, 50]]
    assert interpolate_boxes([3], [[0, 0, 1, 1]], range(10))[0] == []
    with pytest.raises(ValueError, match="distinct keyframes"):
        interpolate_boxes([1, 1], [[0, 0, 1, 1]] * 2, range(3))


def test_a_lost_track_is_found_again_where_it_turned_back():
    """Hidden for 4 frames, the object reverses: it reappears near where it was last seen, not
    where constant velocity predicts; the search region spans both."""
    xs = {f: 10 + 4 * f for f in range(6)} | {f: 10 + 4 * (15 - f) for f in range(10, 16)}
    rows = {f: [(f"a{f}", box(x, 10), "cat", None)] for f, x in xs.items()}
    tracks = track(frames_of(rows, 16), TrackerConfig(max_gap=5, min_length=1))
    assert len(tracks) == 1 and tracks[0].frames == sorted(xs)


def test_a_detection_without_embedding_beside_ones_with_embeddings_links_on_iou():
    """A NaN embedding row means "no embedding": that detection is matched on IoU alone, even
    when other detections of its frame have embeddings (it must not read as cosine 0)."""
    from pipeline.track import FrameDetections, TrackerConfig, track
    from pipeline.track.association import cosine_matrix

    a, b = np.eye(4)[0], np.eye(4)[2]
    frames = []
    for f in range(4):
        xa, xb = 10 + 4 * f, 200 - 4 * f
        emb = np.stack([a, b]).astype(float)
        if f == 2:
            emb[0] = np.nan  # the embed pass missed square A on frame 2
        frames.append(FrameDetections(f, [[xa, 10, xa + 30, 40], [xb, 10, xb + 30, 40]], ["sq", "sq"], emb,
                                      keys=[f"A{f}", f"B{f}"]))
    tracks = track(frames, TrackerConfig(iou_weight=0.5, min_cosine=0.5, max_gap=0))
    assert sorted(t.keys for t in tracks) == [[f"A{f}" for f in range(4)], [f"B{f}" for f in range(4)]]
    cos = cosine_matrix(np.array([a, [np.nan] * 4]), np.array([b, a]))
    assert np.isnan(cos[1]).all() and cos[0].tolist() == [0.0, 1.0]
