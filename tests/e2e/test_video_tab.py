"""The Video tab in Chromium: pick a seeded video, step frames (slider, ←/→, Shift+→, play),
jump via the track list, merge / split / relabel / approve / delete tracks (asserted in the
registry), and click an object to re-prompt propagation (a recording double of V3's
``propagate``; the real one is wired by ``tab_video.propagate_impl``).

Each test seeds its own video source (distinct bytes), so any one passes alone.
"""
from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from playwright.sync_api import expect

from registry.facade import ObjectIn
from tests.e2e.ui_helpers import choose, click_image_at, open_tab, shot
from tests.video_fixtures import moving_boxes, seed_video_source, write_video

pytestmark = pytest.mark.e2e

N = 16
SIZE = (240, 320)  # (H, W)
_videos = itertools.count()
WAIT = 60_000  # ms: the server shares a busy machine; every wait is on a condition


def box_mask(box) -> np.ndarray:
    x0, y0, x1, y1 = (int(v) for v in box)
    m = np.zeros(SIZE, bool)
    m[y0:y1, x0:x1] = True
    return m


def seed_video(server) -> dict:
    """A new 16-frame video: red squares in track A (frames 0-7) and B (8-15), blue discs in C
    (its frame-12 object flagged as propagation drift)."""
    reg = server["ctx"].registry
    k = next(_videos)
    frames, truth = moving_boxes(N, size=SIZE)
    frames[0][0, 0] = (k * 7) % 256  # distinct bytes per test: a new source each time
    path = write_video(server["root"] / f"videos/clip_{k}.mp4", frames)
    sid, fids = seed_video_source(reg, path, frames)
    objs = []
    for i, (fid, boxes) in enumerate(zip(fids, truth, strict=True)):
        for tid, box in boxes:
            drift = {"propagation": {"from_object": "obj_x", "from_frame": 0, "score": 0.1, "drift": True}}
            objs.append(ObjectIn(category="square" if tid == 0 else "disc", xyxy=tuple(map(float, box)),
                                 mask=box_mask(box), confidence=0.9 - 0.02 * i, frame_id=fid,
                                 metadata=drift if (tid, i) == (1, 12) else None))
    ids = reg.register_objects(sid, objs, dedupe=False).object_ids
    red, blue = ids[0::2], ids[1::2]
    a = reg.create_track(red[:8], metadata={"created_by": "tracker"})
    b = reg.create_track(red[8:], metadata={"created_by": "tracker"})
    c = reg.create_track(blue, metadata={"created_by": "tracker"})
    return {"source": sid, "a": a, "b": b, "c": c, "red": red, "blue": blue, "truth": truth}


def pick_video(page, server, s) -> None:
    open_tab(page, "Video")
    page.locator("#video-reload").click()
    expect(page.locator("#video-status")).to_contain_text("reloaded", timeout=WAIT)
    choose(page, "#video-source", s["source"])
    expect(page.locator("#video-status")).to_contain_text(f"16 frame(s) · 3 track(s) of {s['source']}", timeout=WAIT)
    expect(page.locator("#video-caption")).to_contain_text("Frame 0 ", timeout=WAIT)


def caption_frame(page, k: int) -> None:
    expect(page.locator("#video-caption")).to_contain_text(f"Frame {k} ", timeout=WAIT)


def set_slider(page, k: int) -> None:
    box = page.locator("#video-slider input[type=number]")
    box.fill(str(k))
    box.press("Enter")
    caption_frame(page, k)


def click_row(page, track_id: str) -> None:
    page.locator('#video-tracks [data-testid^="cell-"]').filter(has_text=track_id).first.click()
    expect(page.locator("#video-track textarea, #video-track input").first).to_have_value(track_id, timeout=WAIT)


def test_video_tab_steps_frames_and_jumps_to_tracks(page, server, artifacts_dir):
    s = seed_video(server)
    pick_video(page, server, s)
    expect(page.locator("#video-tracks")).to_contain_text(s["c"], timeout=WAIT)
    rng = page.locator("#video-slider input[type=range]").bounding_box()  # drag the slider to its end
    y = rng["y"] + rng["height"] / 2
    page.mouse.move(rng["x"] + 4, y)
    page.mouse.down()
    page.mouse.move(rng["x"] + rng["width"] * 0.6, y, steps=4)
    page.mouse.move(rng["x"] + rng["width"] + 20, y, steps=4)
    page.mouse.up()
    caption_frame(page, 15)
    set_slider(page, 3)
    page.locator("#video-shortcuts").click()  # focus off the slider's number box
    page.keyboard.press("ArrowRight")
    caption_frame(page, 4)
    page.keyboard.press("Shift+ArrowRight")
    caption_frame(page, 14)
    page.keyboard.press("ArrowLeft")
    caption_frame(page, 13)
    page.keyboard.press("Shift+ArrowLeft")
    caption_frame(page, 3)
    page.locator("#video-next").click()
    caption_frame(page, 4)
    expect(page.locator("#video-slider input[type=number]")).to_have_value("4", timeout=WAIT)
    click_row(page, s["b"])
    caption_frame(page, 8)
    expect(page.locator("#video-status")).to_contain_text("frames 8–15", timeout=WAIT)
    page.keyboard.press("ArrowRight")  # the focus is in the track list: the key still steps frames
    caption_frame(page, 9)
    expect(page.locator("#video-slider input[type=number]")).to_have_value("9", timeout=WAIT)
    page.keyboard.press("ArrowLeft")
    caption_frame(page, 8)
    page.locator("#video-next-drift").click()
    caption_frame(page, 12)
    expect(page.locator("#video-status")).to_contain_text("Drift on frame 12 in track #2", timeout=WAIT)
    expect(page.locator("#video-track textarea, #video-track input").first).to_have_value(s["c"], timeout=WAIT)
    click_row(page, s["b"])
    caption_frame(page, 8)
    shot(page, artifacts_dir, "video_jump")
    page.locator("#video-play").click()
    expect(page.locator("#video-play")).to_contain_text("Pause", timeout=WAIT)
    caption_frame(page, 15)  # played to the end, then stops by itself
    expect(page.locator("#video-play")).to_contain_text("Play", timeout=WAIT)


def test_video_tab_merge_split_relabel_approve_delete(page, server, artifacts_dir):
    reg = server["ctx"].registry
    s = seed_video(server)
    pick_video(page, server, s)
    page.locator("#video-reviewer input, #video-reviewer textarea").first.fill("e2e-user")
    click_row(page, s["a"])
    choose(page, "#video-merge-with", "(8–15)")
    page.locator("#video-merge").click()
    expect(page.locator("#video-status")).to_contain_text(f"Merged {s['b']} into {s['a']} (8 object(s) moved)", timeout=WAIT)
    t = reg.get_track(s["a"])
    assert [o["frame_idx"] for o in t["objects"]] == list(range(N))
    assert t["metadata"]["edited_by"] == "e2e-user" and t["metadata"]["merged_from"] == [s["b"]]
    assert len(reg.list_tracks(s["source"])) == 2
    expect(page.locator("#video-tracks")).not_to_contain_text(s["b"], timeout=WAIT)

    set_slider(page, 10)
    page.locator("#video-split").click()
    expect(page.locator("#video-status")).to_contain_text(f"Split {s['a']} at frame 10: 6 object(s) now in", timeout=WAIT)
    tracks = {t["start_frame_idx"]: t for t in reg.list_tracks(s["source"]) if t["category"] == "square"}
    assert sorted(tracks) == [0, 10] and tracks[0]["end_frame_idx"] == 9 and tracks[10]["end_frame_idx"] == 15
    tail = tracks[10]["track_id"]
    assert tracks[10]["metadata"]["edited_by"] == "e2e-user"

    click_row(page, tail)
    caption_frame(page, 10)
    page.locator("#video-relabel-class input").fill("crate")
    page.locator("#video-relabel-class input").press("Enter")
    page.locator("#video-relabel").click()
    expect(page.locator("#video-status")).to_contain_text(f"Relabelled {tail} and its 6 object(s) as crate", timeout=WAIT)
    assert {o["category"] for o in reg.get_track(tail)["objects"]} == {"crate"}
    assert reg.get_track(s["a"])["category"] == "square"
    expect(page.locator("#video-tracks")).to_contain_text("crate", timeout=WAIT)

    page.locator("#video-approve").click()
    expect(page.locator("#video-status")).to_contain_text(f"Approved 6 object(s) of {tail} (by e2e-user)", timeout=WAIT)
    objs = reg.get_track(tail)["objects"]
    assert {(o["validation_status"], o["validated_by"]) for o in objs} == {("approved", "e2e-user")}
    assert {o["validation_status"] for o in reg.get_track(s["a"])["objects"]} == {"pending"}
    shot(page, artifacts_dir, "video_edits")
    page.locator("#video-to-review").click()  # the track's objects as a Review queue, in frame order
    expect(page.get_by_role("tab", name="Review")).to_have_attribute("aria-selected", "true", timeout=WAIT)
    first = reg.get_track(tail)["objects"][0]["object_id"]
    expect(page.locator("#review-info")).to_contain_text(f"{first} · 1 of 6 in queue", timeout=WAIT)
    open_tab(page, "Video")

    click_row(page, s["c"])
    page.locator("#video-delete").click()
    expect(page.locator("#video-status")).to_contain_text(f"Deleted track {s['c']}; its objects stay.", timeout=WAIT)
    assert s["c"] not in {t["track_id"] for t in reg.list_tracks(s["source"])}
    assert len(reg.get_objects(s["blue"])) == N

    # an edit the registry refuses lands in the status line (and a toast), nothing changes
    click_row(page, s["a"])
    set_slider(page, 0)
    page.locator("#video-split").click()
    expect(page.locator("#video-status")).to_contain_text("cannot split track", timeout=WAIT)
    assert reg.get_track(s["a"])["object_count"] == 10


def test_video_tab_click_object_reprompts_propagation(page, server, artifacts_dir, monkeypatch):
    from app.ui import tab_video

    s = seed_video(server)
    calls = []

    def fake_propagate(ctx, registry, source_id, from_frame, object_ids=None, max_frames=None, backward=False):
        calls.append((source_id, from_frame, object_ids, max_frames, backward))
        return {"source_id": source_id, "from_frame": from_frame, "backward": backward, "segmenter": "grabcut-track",
                "warning": None, "prompts": list(object_ids), "frames": 5, "written": 5, "replaced": 0,
                "object_ids": [], "tracks": {}, "drift": [], "kept": []}

    monkeypatch.setattr(tab_video, "propagate_impl", lambda: fake_propagate)
    pick_video(page, server, s)
    set_slider(page, 5)
    (_, red_box), _ = s["truth"][5]
    x0, y0, x1, y1 = (float(v) for v in red_box)
    click_image_at(page, "#video-frame", (x0 + x1) / 2, y1 - 4)
    expect(page.locator("#video-object input, #video-object textarea").first).to_have_value(s["red"][5], timeout=WAIT)
    expect(page.locator("#video-status")).to_contain_text("on frame 5", timeout=WAIT)
    page.locator("#video-prop-max input").fill("5")
    page.locator("#video-propagate").click()
    expect(page.locator("#video-status")).to_contain_text(
        f"Propagated {s['red'][5]} forward from frame 5 with grabcut-track: 5 object(s) written over 5 frame(s).", timeout=WAIT)
    assert calls == [(s["source"], 5, [s["red"][5]], 5, False)]
    shot(page, artifacts_dir, "video_propagate")


def test_video_tab_upload_and_auto_label_frames(page, server, artifacts_dir):
    """Upload -> V1's add_video (every 2nd frame) -> auto-label the frames (the test-double
    detector finds the red and blue squares on each frame)."""
    reg = server["ctx"].registry
    frames, _ = moving_boxes(8, size=SIZE)
    frames[0][0, 0] = 3
    path = write_video(server["root"] / "uploads" / "drive.mp4", frames)
    open_tab(page, "Video")
    page.locator("#video-tab-add, .label-wrap").filter(has_text="Add a video").first.click()
    page.locator("#video-upload input[type=file]").set_input_files(str(path))
    page.locator("#video-every input").fill("2")
    page.locator("#video-add").click()
    expect(page.locator("#video-status")).to_contain_text("4 frame(s) · 0 track(s) of src_", timeout=WAIT)
    sid = next(s["source_id"] for s in reg.list_sources() if s["file_name"] == "drive.mp4")
    assert [f["frame_idx"] for f in reg.list_frames(sid)] == [0, 2, 4, 6]
    expect(page.locator("#video-source input").first).to_have_value(re.compile(f"drive.mp4 · 4 frames · {sid}"), timeout=WAIT)
    page.locator("#video-classes input, #video-classes textarea").first.fill("red, blue")
    page.locator("#video-label").click()
    expect(page.locator("#video-status")).to_contain_text("Auto-labelled", timeout=WAIT)
    objs = reg.list_objects(source_id=sid, limit=None)
    assert len(objs) == 8 and {o["category"] for o in objs} == {"red", "blue"}
    assert {o["frame_id"] for o in objs} == {f["frame_id"] for f in reg.list_frames(sid)}
    expect(page.locator("#video-caption")).to_contain_text("2 object(s)", timeout=WAIT)
    page.locator("#video-track-run").click()
    expect(page.locator("#video-status")).to_contain_text("Tracker: 2 new track(s), 8 object(s) linked", timeout=WAIT)
    tracks = reg.list_tracks(sid)
    assert sorted(t["object_count"] for t in tracks) == [4, 4]
    assert {t["metadata"]["created_by"] for t in tracks} == {"tracker"}
    expect(page.locator("#video-caption")).to_contain_text("tracks #1, #2", timeout=WAIT)
    shot(page, artifacts_dir, "video_upload")
