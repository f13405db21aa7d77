"""The Video tab's workflow functions (app.workflows.video_review) on a seeded video: track
rows, per-track colours in the rendered frame, jumps, the object under a click, re-prompting."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.workflows import video_review as vr
from registry.facade import ObjectIn, Registry
from tests.video_fixtures import moving_boxes, seed_video_source, write_video

N = 6
SIZE = (120, 160)  # (H, W): squares of 24 px, so a label never covers their lower part


def box_mask(box) -> np.ndarray:
    x0, y0, x1, y1 = (int(v) for v in box)
    m = np.zeros(SIZE, bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture
def reg(data_dir: Path):
    r = Registry(data_dir, embedding_dim=8, embedding_version="test-v1", index="exact")
    yield r
    r.close()


def seed(reg: Registry, tmp_path: Path, frame_indices=None) -> dict:
    """Red and blue squares on every stored frame (box masks); red = one tracker track, blue =
    one track whose frame-3 object is flagged as drift; confidences 0.8 (red) and 0.6 (blue)."""
    frames, truth = moving_boxes(N, size=SIZE)
    video = write_video(tmp_path / "clip.mp4", frames)
    sid, fids = seed_video_source(reg, video, frames, frame_indices=frame_indices)
    objs = []
    for i, (fid, boxes) in enumerate(zip(fids, truth, strict=True)):
        for tid, box in boxes:
            meta = {"propagation": {"from_object": "obj_x", "from_frame": 0, "score": 0.2, "drift": True}} \
                if tid == 1 and i == 3 else None
            objs.append(ObjectIn(category="square" if tid == 0 else "disc", xyxy=tuple(map(float, box)),
                                 mask=box_mask(box), confidence=0.8 if tid == 0 else 0.6, frame_id=fid,
                                 metadata=meta))
    ids = reg.register_objects(sid, objs, dedupe=False).object_ids
    red = reg.create_track(ids[0::2], metadata={"created_by": "tracker"})
    blue = reg.create_track(ids[1::2])
    return {"source": sid, "frames": fids, "truth": truth, "red_ids": ids[0::2], "blue_ids": ids[1::2],
            "red": red, "blue": blue}


def test_track_rows_list_category_span_length_confidence_and_drift(reg, tmp_path):
    s = seed(reg, tmp_path)
    view = vr.load_view(reg, s["source"])
    assert [f["frame_idx"] for f in view.frames] == list(range(N))
    by_id = {t["track_id"]: t for t in view.tracks}
    red, blue = by_id[s["red"]], by_id[s["blue"]]
    assert (red["category"], red["start"], red["end"], red["length"], red["objects"]) == ("square", 0, 5, 6, 6)
    assert red["avg_confidence"] == pytest.approx(0.8) and red["drift"] == 0
    assert (blue["category"], blue["drift"], blue["avg_confidence"]) == ("disc", 1, pytest.approx(0.6))
    assert sorted(t["number"] for t in view.tracks) == [1, 2]
    assert view.object_track[s["blue_ids"][3]] == s["blue"]
    rows = vr.track_table(view)
    assert [r[-1] for r in rows] == [t["track_id"] for t in view.tracks]
    row = next(r for r in rows if r[-1] == s["red"])
    assert row[1:8] == ["square", "0–5", 6, 6, "0.80", 0, ""]


def test_render_frame_paints_each_track_in_its_own_colour(reg, tmp_path):
    s = seed(reg, tmp_path)
    view = vr.load_view(reg, s["source"])
    image, objs = vr.render_frame(reg, view, 2)
    plain = np.asarray(vr.IMAGES.get(vr.frame_path(reg, view.frames[2])))
    assert image.shape == plain.shape == (*SIZE, 3)
    assert {o["track_id"] for o in objs} == {s["red"], s["blue"]}
    assert {o["track_number"] for o in objs} == {1, 2}
    for tid, (_, box) in zip((s["red"], s["blue"]), s["truth"][2], strict=True):
        x0, y0, x1, y1 = (int(v) for v in box)
        cy, cx = y1 - 3, x0 + 3  # inside the mask, below the label, off the outline
        want = plain[cy, cx] * 0.55 + np.array(vr.track_color(tid)) * 0.45
        assert np.abs(image[cy, cx].astype(float) - want).max() <= 2, tid
    assert vr.track_color(s["red"]) != vr.track_color(s["blue"])
    assert vr.frame_label({**objs[0], "track_number": 7}).startswith("#7 ")
    drift = vr.frame_objects(reg, view, 3)
    assert [vr.frame_label(o) for o in drift if o["object_id"] == s["blue_ids"][3]] == ["#2 disc drift"]
    assert vr.next_drift(view, 0) == (3, next(t for t in view.tracks if t["track_id"] == s["blue"]))
    with pytest.raises(ValueError, match="no drift flag after frame 3 \\(1 earlier"):
        vr.next_drift(view, 3)
    cap = vr.frame_caption(view, 2, objs)
    assert "Frame **2**" in cap and "2 object(s)" in cap and "#1, #2" in cap


def test_jump_to_track_on_sampled_frames_uses_positions(reg, tmp_path):
    s = seed(reg, tmp_path, frame_indices=[0, 3, 6, 9, 12, 15])
    reg.split_track(s["red"], 9, edited_by="ana")
    view = vr.load_view(reg, s["source"])
    late = next(t for t in view.tracks if t["start"] == 9)
    assert vr.jump_to_track(view, late["track_id"]) == 3
    assert vr.position_of_frame(view, 10) == 4 and vr.position_of_frame(view, 99) == 5
    assert vr.clip_position(view, -3) == 0 and vr.clip_position(view, 7.6) == 5
    assert vr.resolve_track(view, f"#{late['number']}") == late["track_id"]
    assert vr.resolve_track(view, str(late["number"])) == late["track_id"]
    assert vr.resolve_track(view, late["track_id"]) == late["track_id"]
    with pytest.raises(ValueError, match="expected a number from the track list"):
        vr.resolve_track(view, "#9")
    with pytest.raises(ValueError, match="no track chosen"):
        vr.resolve_track(view, " ")


def test_object_at_picks_the_object_under_the_click(reg, tmp_path):
    s = seed(reg, tmp_path)
    view = vr.load_view(reg, s["source"])
    objs = vr.frame_objects(reg, view, 1)
    (_, red_box), (_, blue_box) = s["truth"][1]
    hit = vr.object_at(objs, reg, float(red_box[0] + 2), float(red_box[1] + 3))
    assert hit is not None and hit["object_id"] == s["red_ids"][1]
    hit = vr.object_at(objs, reg, float(blue_box[2] - 1), float(blue_box[3] - 1))
    assert hit is not None and hit["object_id"] == s["blue_ids"][1]
    assert vr.object_at(objs, reg, 1.0, float(SIZE[0] - 1)) is None


def test_reprompt_calls_propagate_with_the_frame_index_and_object(reg, tmp_path):
    s = seed(reg, tmp_path, frame_indices=[0, 2, 4, 6, 8, 10])
    view = vr.load_view(reg, s["source"])
    calls = []

    def fake(ctx, registry, source_id, from_frame, object_ids=None, max_frames=None, backward=False):
        calls.append((ctx, registry, source_id, from_frame, object_ids, max_frames, backward))
        return {"frames": 3}

    out = vr.reprompt(fake, "CTX", reg, view, 2, s["red_ids"][2], max_frames=4)
    assert out == {"frames": 3}
    assert calls == [("CTX", reg, s["source"], 4, [s["red_ids"][2]], 4, False)]


def test_load_view_refuses_images_and_videos_without_frames(reg, tmp_path):
    from PIL import Image

    img = tmp_path / "still.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    image_sid = reg.register_source(img)
    with pytest.raises(ValueError, match="expected a video source"):
        vr.load_view(reg, image_sid)
    frames, _ = moving_boxes(2, size=SIZE)
    empty = reg.register_source(write_video(tmp_path / "empty.mp4", frames), source_type="video", width=160, height=120)
    with pytest.raises(ValueError, match="no stored frames.*video add"):
        vr.load_view(reg, empty)
    with pytest.raises(ValueError, match="pick a video source"):
        vr.load_view(reg, "")
    assert [c[1] for c in vr.source_choices(reg)] == [empty]
    assert " · 0 frames · " in vr.source_choices(reg)[0][0]


def test_propagation_summary_names_segmenter_counts_drift_and_warning():
    text = vr.propagation_summary({
        "source_id": "src_a", "from_frame": 4, "backward": True, "segmenter": "grabcut-track",
        "warning": "SAM2.1 video weights are not available", "prompts": ["obj_a"], "frames": 3, "written": 2,
        "replaced": 1, "object_ids": ["obj_b", "obj_c"], "tracks": {"obj_a": "trk_a"},
        "drift": [{"object_id": "obj_a", "frame_idx": 1, "score": 0.12}], "kept": [{"object_id": "obj_a"}]})
    assert text.startswith("Propagated `obj_a` backward from frame 4 with **grabcut-track**: "
                           "2 object(s) written over 3 frame(s), 1 earlier propagated object(s) replaced.")
    assert "Drift stopped it at frame 1 (score 0.12): re-prompt there." in text
    assert "1 frame(s) kept" in text and text.endswith("⚠ SAM2.1 video weights are not available")


def test_reprompt_through_the_tab_wiring_runs_real_propagation(tmp_path):
    """The tab's ``propagate_impl`` is V3's propagate; without SAM2 video weights it falls back to
    GrabCut, follows the red square over 3 frames and links the masks into its track."""
    from app.ui.tab_video import propagate_impl
    from tests.app.fakes import make_context

    ctx = make_context(tmp_path / "data")
    reg = ctx.registry
    try:
        frames, truth = moving_boxes(N, size=SIZE)
        sid, fids = seed_video_source(reg, write_video(tmp_path / "clip.mp4", frames), frames)
        objs = [ObjectIn(category="square", xyxy=tuple(map(float, truth[i][0][1])), mask=box_mask(truth[i][0][1]),
                         confidence=0.9, frame_id=fids[i]) for i in (0, 1)]
        red = reg.register_objects(sid, objs, dedupe=False).object_ids
        tid = reg.create_track(red)
        view = vr.load_view(reg, sid)
        out = vr.reprompt(propagate_impl(), ctx, reg, view, 1, red[1], max_frames=3)
        assert out["segmenter"] == "grabcut-track" and out["warning"]
        assert out["written"] == 3 and out["tracks"] == {red[1]: tid}
        view = vr.load_view(reg, sid)
        t = view.track(tid)
        assert (t["start"], t["end"], t["objects"]) == (0, 4, 5)
        for k in (2, 3, 4):
            (o,) = vr.frame_objects(reg, view, k)
            assert o["detection_model"] == "grabcut-track" and o["track_id"] == tid
            assert o["metadata"]["propagation"]["from_object"] == red[1]
            x, y, w, h = o["bbox_xywh"]
            tx0, ty0, tx1, ty1 = truth[k][0][1]
            inter = max(0, min(x + w, tx1) - max(x, tx0)) * max(0, min(y + h, ty1) - max(y, ty0))
            assert inter / (w * h + (tx1 - tx0) * (ty1 - ty0) - inter) > 0.8, (k, o["bbox_xywh"])
        assert "grabcut-track" in vr.propagation_summary(out)
    finally:
        reg.close()


def test_track_edit_endpoint_through_gradio_client(tmp_path):
    """``/track_edit`` (the tab's named endpoint): split then relabel over gradio_client; a bad
    action comes back as an error naming the expected values."""
    from gradio_client import Client

    from tests.app.fakes import launch_test_app, make_context

    ctx = make_context(tmp_path / "data")
    web, url = launch_test_app(ctx)
    try:
        s = seed(ctx.registry, tmp_path)
        client = Client(url, verbose=False)
        out = client.predict(s["red"], "split", "", 3, "", False, False, "bot", api_name="/track_edit")
        assert out["moved"] == 3 and out["track_id"] == s["red"]
        out = client.predict(out["new_track_id"], "relabel", "", -1, "crate", False, False, "bot",
                             api_name="/track_edit")
        assert out == {"track_id": out["track_id"], "category": "crate", "objects": 3, "queued": False}
        t = ctx.registry.get_track(out["track_id"])
        assert [o["frame_idx"] for o in t["objects"]] == [3, 4, 5] and t["metadata"]["edited_by"] == "bot"
        with pytest.raises(Exception, match="expected one of merge, split"):
            client.predict(s["red"], "explode", api_name="/track_edit")
    finally:
        web.close()
        ctx.registry.close()
