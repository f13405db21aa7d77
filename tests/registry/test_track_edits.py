"""Track edits a person makes (registry.track_edits via the facade): merge, split, delete,
relabel, approve; each stamps metadata.edited_by/edited_at, and errors write nothing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from registry.facade import ObjectIn, Registry
from tests.video_fixtures import moving_boxes, seed_video_source, write_video

N_FRAMES = 6


def seed(reg: Registry, tmp_path: Path, *, embed: bool = False) -> dict:
    """A 6-frame video with a red and a blue square: one object per square per frame.

    Returns ``{"source", "frames", "red": [obj per frame], "blue": [...]}``; confidences are
    0.5 + 0.05 * frame for red and 0.9 - 0.05 * frame for blue.
    """
    frames, truth = moving_boxes(N_FRAMES, size=(48, 64))
    video = write_video(tmp_path / "clip.mp4", frames)
    source_id, frame_ids = seed_video_source(reg, video, frames)
    rng = np.random.default_rng(0)
    objs = []
    for i, (fid, boxes) in enumerate(zip(frame_ids, truth, strict=True)):
        for tid, box in boxes:
            conf = 0.5 + 0.05 * i if tid == 0 else 0.9 - 0.05 * i
            emb = None
            if embed:
                emb = rng.standard_normal(reg.embedding_dim).astype(np.float32)
                emb /= np.linalg.norm(emb)
            objs.append(ObjectIn(category="square", xyxy=tuple(float(v) for v in box), confidence=conf,
                                 frame_id=fid, embedding=emb))
    ids = reg.register_objects(source_id, objs, dedupe=False).object_ids
    assert None not in ids
    return {"source": source_id, "frames": frame_ids, "red": ids[0::2], "blue": ids[1::2]}


def frames_of(reg: Registry, track_id: str) -> list[int]:
    return [o["frame_idx"] for o in reg.get_track(track_id)["objects"]]


def assert_stamped(track: dict, who: str) -> None:
    assert track["metadata"]["edited_by"] == who
    assert track["metadata"]["edited_at"].endswith("Z") and track["metadata"]["edited_at"][:2] == "20"


def test_merge_disjoint_tracks_keeps_first_and_stamps(reg, tmp_path):
    s = seed(reg, tmp_path)
    a = reg.create_track(s["red"][:3], metadata={"created_by": "tracker"})
    b = reg.create_track(s["red"][3:], metadata={"created_by": "tracker"})
    out = reg.merge_tracks(a, b, edited_by="ana")
    assert out == {"track_id": a, "merged": b, "moved": 3, "dropped": []}
    t = reg.get_track(a)
    assert [o["object_id"] for o in t["objects"]] == s["red"]
    assert [o["sequence_idx"] for o in t["objects"]] == list(range(N_FRAMES))
    assert (t["start_frame_idx"], t["end_frame_idx"], t["object_count"]) == (0, N_FRAMES - 1, N_FRAMES)
    assert t["metadata"]["created_by"] == "tracker" and t["metadata"]["merged_from"] == [b]
    assert_stamped(t, "ana")
    with pytest.raises(ValueError, match="unknown track id"):
        reg.get_track(b)


def test_merge_same_frame_refused_by_default_nothing_written(reg, tmp_path):
    s = seed(reg, tmp_path)
    a, b = reg.create_track(s["red"]), reg.create_track(s["blue"][2:4])
    with pytest.raises(ValueError, match=r"frame\(s\) \[2, 3\].*higher-confidence"):
        reg.merge_tracks(a, b, edited_by="ana")
    assert frames_of(reg, a) == list(range(N_FRAMES)) and frames_of(reg, b) == [2, 3]
    assert reg.get_track(a)["metadata"] is None


def test_merge_keep_confidence_keeps_better_object_per_frame(reg, tmp_path):
    s = seed(reg, tmp_path)
    a, b = reg.create_track(s["red"][:4]), reg.create_track(s["blue"][2:])
    out = reg.merge_tracks(a, b, edited_by="ana", keep="confidence")
    # frame 2: red 0.60 vs blue 0.80 -> blue; frame 3: red 0.65 vs blue 0.75 -> blue
    assert out["dropped"] == sorted([s["red"][2], s["red"][3]])
    t = reg.get_track(a)
    assert [o["object_id"] for o in t["objects"]] == [s["red"][0], s["red"][1], *s["blue"][2:]]
    assert t["object_count"] == N_FRAMES
    assert reg.get_object(s["red"][2])["category"] == "square"  # dropped objects stay in the registry


def test_merge_refuses_other_category_and_self(reg, tmp_path):
    s = seed(reg, tmp_path)
    a, b = reg.create_track(s["red"][:3]), reg.create_track(s["red"][3:])
    reg.relabel_track(b, "robot", edited_by="ana")
    with pytest.raises(ValueError, match="different categories.*relabel"):
        reg.merge_tracks(a, b, edited_by="ana")
    with pytest.raises(ValueError, match="itself"):
        reg.merge_tracks(a, a, edited_by="ana")
    with pytest.raises(ValueError, match="edited_by"):
        reg.merge_tracks(a, b, edited_by=" ")
    assert frames_of(reg, a) == [0, 1, 2]


def test_split_at_frame_moves_the_tail_to_a_new_track(reg, tmp_path):
    s = seed(reg, tmp_path)
    a = reg.create_track(s["red"], metadata={"created_by": "tracker", "iou_weight": 0.5})
    out = reg.split_track(a, 4, edited_by="bo")
    new = out["new_track_id"]
    assert out["moved"] == 2 and new.startswith("trk_") and new != a
    assert frames_of(reg, a) == [0, 1, 2, 3] and frames_of(reg, new) == [4, 5]
    ta, tn = reg.get_track(a), reg.get_track(new)
    assert (ta["end_frame_idx"], tn["start_frame_idx"], tn["object_count"]) == (3, 4, 2)
    assert tn["category"] == "square" and tn["metadata"]["split_from"] == a
    assert tn["metadata"]["iou_weight"] == 0.5
    assert_stamped(ta, "bo")
    assert_stamped(tn, "bo")
    assert [o["sequence_idx"] for o in tn["objects"]] == [0, 1]


def test_split_outside_the_track_is_refused(reg, tmp_path):
    s = seed(reg, tmp_path)
    a = reg.create_track(s["red"][1:4])
    for k in (0, 1, 4):
        with pytest.raises(ValueError, match=r"spans frames 1-3"):
            reg.split_track(a, k, edited_by="bo")
    assert frames_of(reg, a) == [1, 2, 3]
    assert reg.db["tracks"].count == 1


def test_delete_track_keeps_objects_by_default(reg, tmp_path):
    s = seed(reg, tmp_path)
    a = reg.create_track(s["red"])
    assert reg.delete_track(a) == {"track_id": a, "deleted_objects": 0, "queued": False}
    with pytest.raises(ValueError, match="unknown track id"):
        reg.get_track(a)
    assert len(reg.get_objects(s["red"])) == N_FRAMES
    with pytest.raises(ValueError, match="unknown track id"):
        reg.delete_track(a)


def test_delete_track_with_objects_removes_them_and_their_vectors(reg, tmp_path):
    s = seed(reg, tmp_path, embed=True)
    a, b = reg.create_track(s["red"]), reg.create_track(s["blue"])
    reg.sync_outbox()
    assert reg.index.count() == 2 * N_FRAMES
    out = reg.delete_track(a, with_objects=True)
    assert out["deleted_objects"] == N_FRAMES and out["queued"]
    assert reg.get_objects(s["red"]) == []
    assert len(reg.get_objects(s["blue"])) == N_FRAMES and reg.get_track(b)["object_count"] == N_FRAMES
    reg.sync_outbox()
    assert reg.index.count() == N_FRAMES


def test_relabel_track_sets_track_and_objects_category(reg, tmp_path):
    s = seed(reg, tmp_path, embed=True)
    a, b = reg.create_track(s["red"]), reg.create_track(s["blue"])
    out = reg.relabel_track(a, "Robot", edited_by="cy")
    assert out["category"] == "Robot" and out["objects"] == N_FRAMES and out["queued"]
    t = reg.get_track(a)
    assert t["category"] == "Robot" and {o["category"] for o in t["objects"]} == {"Robot"}
    assert_stamped(t, "cy")
    assert {o["category"] for o in reg.get_track(b)["objects"]} == {"square"}
    reg.sync_outbox()
    hits = reg.search(reg.get_embedding(s["red"][0]), k=3, category="Robot")
    assert hits and hits[0]["object_id"] == s["red"][0]
    with pytest.raises(ValueError):
        reg.relabel_track(a, "", edited_by="cy")
    assert reg.get_track(a)["category"] == "Robot"


def test_approve_track_approves_every_object_by_user(reg, tmp_path):
    s = seed(reg, tmp_path)
    a, b = reg.create_track(s["red"]), reg.create_track(s["blue"])
    assert reg.approve_track(a, edited_by="dee")["approved"] == N_FRAMES
    for o in reg.get_objects(s["red"]):
        assert (o["validation_status"], o["is_validated"], o["validated_by"]) == ("approved", True, "dee")
        assert o["validated_at"]
    assert {o["validation_status"] for o in reg.get_objects(s["blue"])} == {"pending"}
    assert_stamped(reg.get_track(a), "dee")
    assert reg.get_track(b)["metadata"] is None


def test_edited_tracks_survive_a_tracker_rerun(reg, tmp_path):
    s = seed(reg, tmp_path)
    made = {"created_by": "tracker"}
    red, blue = reg.create_track(s["red"], metadata=made), reg.create_track(s["blue"], metadata=made)
    tail = reg.split_track(red, 3, edited_by="ana")["new_track_id"]
    assert reg.delete_tracker_tracks(s["source"]) == {"tracks": 1, "objects": 0}  # only the unedited blue one
    left = {t["track_id"]: t for t in reg.list_tracks(s["source"])}
    assert set(left) == {red, tail} and blue not in left
    assert left[tail]["metadata"]["created_by"] == "tracker" and left[tail]["metadata"]["edited_by"] == "ana"


def test_merge_tracks_sharing_an_object_keeps_it_once(reg, tmp_path):
    s = seed(reg, tmp_path)
    a, b = reg.create_track(s["red"][:3]), reg.create_track(s["red"][2:])  # frame 2's object in both
    out = reg.merge_tracks(a, b, edited_by="ana", keep="confidence")
    assert out["dropped"] == [] and out["moved"] == 3
    assert [o["object_id"] for o in reg.get_track(a)["objects"]] == s["red"]


def test_split_and_merge_of_a_long_track_keep_the_summary_right(reg, tmp_path):
    """More objects than the bulk threshold (the trigger-less delete/insert path): count, first
    and last frame and mean confidence are those of the members after each edit."""
    from registry import frames as frame_store
    from registry.tracks import BULK_ROWS

    n = BULK_ROWS * 2 + 5
    video = tmp_path / "long.mp4"
    video.write_bytes(b"stand-in bytes: track edits read the registry only")
    sid = reg.register_source(video, source_type="video", width=64, height=64, frame_count=n)
    frame_store.add_frames(reg.connection, sid, [(i, i / 10, None) for i in range(n)])
    fids = frame_store.frame_ids_by_index(reg.connection, sid)
    conf = [0.2 if i < 50 else 0.8 for i in range(n)]
    ids = reg.register_objects(sid, [ObjectIn("car", (1, 1, 9, 9), confidence=conf[i], frame_id=fids[i])
                                     for i in range(n)], dedupe=False).object_ids
    tid = reg.create_track(ids)
    out = reg.split_track(tid, 50, edited_by="ann")
    head, tail = (next(t for t in reg.list_tracks(sid) if t["track_id"] == k) for k in (tid, out["new_track_id"]))
    assert (head["object_count"], head["start_frame_idx"], head["end_frame_idx"]) == (50, 0, 49)
    assert (tail["object_count"], tail["start_frame_idx"], tail["end_frame_idx"]) == (n - 50, 50, n - 1)
    assert head["avg_confidence"] == pytest.approx(0.2) and tail["avg_confidence"] == pytest.approx(0.8)
    reg.merge_tracks(tid, out["new_track_id"], edited_by="ann")
    (whole,) = reg.list_tracks(sid)
    assert (whole["object_count"], whole["start_frame_idx"], whole["end_frame_idx"]) == (n, 0, n - 1)
    assert whole["avg_confidence"] == pytest.approx(sum(conf) / n)
    assert frames_of(reg, tid) == list(range(n))
    trig = reg.connection.query("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'trg_track%'")
    assert sorted(r["name"] for r in trig) == ["trg_track_objects_delete", "trg_track_objects_insert"]
