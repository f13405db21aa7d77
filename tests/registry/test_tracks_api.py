"""registry.tracks: add objects to a track, list a source's tracks, delete tracker-made tracks."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from registry.facade import ObjectIn
from registry.tracks import BULK_ROWS, INSERT_TRIGGER, insert_members_tx
from tests.video_fixtures import seed_video_source


@pytest.fixture
def video(reg, tmp_path):
    """A 6-frame video source (32x24) with one 'cat' box and one 'dog' box per frame."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"stand-in bytes for a video file")
    frames = [np.full((24, 32, 3), 10 * i, np.uint8) for i in range(6)]
    sid, fids = seed_video_source(reg, path, frames)
    cats = reg.register_objects(sid, [
        ObjectIn("cat", (i, 0, i + 8, 8), confidence=0.5 + 0.05 * i, frame_id=f) for i, f in enumerate(fids)
    ], dedupe=False).object_ids
    dogs = reg.register_objects(sid, [
        ObjectIn("dog", (i, 12, i + 8, 20), confidence=0.9, frame_id=f) for i, f in enumerate(fids)
    ], dedupe=False).object_ids
    return sid, fids, cats, dogs


def test_add_objects_to_track_keeps_frame_order_and_summary(reg, video):
    sid, _, cats, _ = video
    tid = reg.create_track([cats[2], cats[3]], metadata={"created_by": "sam2-video"})
    assert reg.add_objects_to_track(tid, [cats[5], cats[0], cats[2]]) == 2  # cats[2] already there
    t = reg.get_track(tid)
    assert [o["object_id"] for o in t["objects"]] == [cats[0], cats[2], cats[3], cats[5]]
    assert [o["sequence_idx"] for o in t["objects"]] == [0, 1, 2, 3]
    assert (t["start_frame_idx"], t["end_frame_idx"], t["object_count"]) == (0, 5, 4)
    assert t["avg_confidence"] == pytest.approx(np.mean([0.5, 0.6, 0.65, 0.75]))
    assert reg.add_objects_to_track(tid, []) == 0


def test_add_objects_to_track_refuses_bad_members_and_writes_nothing(reg, video):
    sid, _, cats, dogs = video
    tid = reg.create_track([cats[0]])
    other = reg.create_track([cats[1]])
    with pytest.raises(ValueError, match="category 'dog'"):
        reg.add_objects_to_track(tid, [cats[2], dogs[3]])
    with pytest.raises(ValueError, match=f"already in track {other}"):
        reg.add_objects_to_track(tid, [cats[2], cats[1]])
    dup = reg.register_objects(sid, [ObjectIn("cat", (20, 10, 30, 20), frame_id=video[1][0])], dedupe=False).object_ids[0]
    with pytest.raises(ValueError, match="one object per frame"):
        reg.add_objects_to_track(tid, [cats[3], dup])
    with pytest.raises(ValueError, match="unknown object ids"):
        reg.add_objects_to_track(tid, ["obj_nope"])
    with pytest.raises(ValueError, match="unknown track id 'trk_nope'"):
        reg.add_objects_to_track("trk_nope", [cats[2]])
    assert reg.get_track(tid)["object_count"] == 1  # nothing half-written


def test_list_tracks_by_first_frame_with_category_and_metadata(reg, video):
    sid, _, cats, dogs = video
    late = reg.create_track(cats[3:], metadata={"created_by": "tracker", "max_gap": 3})
    early = reg.create_track(dogs[:2])
    rows = reg.list_tracks(sid)
    assert [r["track_id"] for r in rows] == [early, late]
    assert rows[0]["category"] == "dog" and rows[0]["metadata"] is None
    assert (rows[1]["category"], rows[1]["start_frame_idx"], rows[1]["end_frame_idx"]) == ("cat", 3, 5)
    assert rows[1]["object_count"] == 3 and rows[1]["avg_confidence"] == pytest.approx(0.7)
    assert rows[1]["metadata"] == {"created_by": "tracker", "max_gap": 3}
    with pytest.raises(ValueError, match="unknown source id 'src_nope'"):
        reg.list_tracks("src_nope")


def test_delete_tracker_tracks_spares_edited_and_person_made(reg, video):
    sid, fids, cats, dogs = video
    interp = reg.register_objects(sid, [ObjectIn("cat", (9, 0, 17, 8), frame_id=fids[1], detection_model="interpolated",
                                                 metadata={"interpolated": True})], dedupe=False).object_ids[0]
    gone = reg.create_track([cats[0], interp, cats[2]], metadata={"created_by": "tracker"})
    edited = reg.create_track(dogs[:3], metadata={"created_by": "tracker", "edited_by": "ann"})
    person = reg.create_track(dogs[3:])
    assert reg.delete_tracker_tracks(sid) == {"tracks": 1, "objects": 1}
    assert {r["track_id"] for r in reg.list_tracks(sid)} == {edited, person}
    assert reg.get_objects([interp]) == []  # the tracker's interpolated object went with its track
    assert len(reg.get_objects([cats[0], cats[2]])) == 2  # detections stay
    with pytest.raises(ValueError, match="unknown track id"):
        reg.get_track(gone)
    assert reg.delete_tracker_tracks(sid) == {"tracks": 0, "objects": 0}


def test_update_track_metadata_merges_and_removes_keys(reg, video):
    from registry.tracks import update_track_metadata

    _, _, cats, _ = video
    tid = reg.create_track(cats[:2], metadata={"created_by": "tracker", "params": {"max_gap": 3}})
    assert update_track_metadata(reg.connection, tid, {"edited_by": "ann", "params": None}) == {
        "created_by": "tracker", "edited_by": "ann"}
    assert reg.get_track(tid)["metadata"] == {"created_by": "tracker", "edited_by": "ann"}
    with pytest.raises(ValueError, match="unknown track id 'trk_nope'"):
        update_track_metadata(reg.connection, "trk_nope", {"a": 1})


def test_a_long_track_keeps_its_summary_and_the_schema_trigger(reg, tmp_path):
    """Bulk inserts (>= BULK_ROWS) go around the per-row trigger; the summary and the trigger stay right."""
    path = tmp_path / "long.mp4"
    path.write_bytes(b"stand-in bytes for a long video")
    n = BULK_ROWS * 2 + 5
    frames = [np.zeros((8, 8, 3), np.uint8)] * n
    sid, fids = seed_video_source(reg, path, frames)
    ids = reg.register_objects(sid, [ObjectIn("cat", (0, 0, 4, 4), confidence=(i % 10) / 10, frame_id=f)
                                     for i, f in enumerate(fids)], dedupe=False).object_ids
    trigger_sql = reg.connection.scalar("SELECT sql FROM sqlite_master WHERE name = ?", (INSERT_TRIGGER,))
    tid = reg.create_track(ids[BULK_ROWS:][::-1])
    assert reg.add_objects_to_track(tid, ids[:BULK_ROWS]) == BULK_ROWS
    t = reg.get_track(tid)
    assert (t["object_count"], t["start_frame_idx"], t["end_frame_idx"]) == (n, 0, n - 1)
    assert t["avg_confidence"] == pytest.approx(np.mean([(i % 10) / 10 for i in range(n)]))
    assert [o["sequence_idx"] for o in t["objects"]] == list(range(n))
    assert reg.connection.scalar("SELECT sql FROM sqlite_master WHERE name = ?", (INSERT_TRIGGER,)) == trigger_sql
    with pytest.raises(sqlite3.IntegrityError), reg.transaction() as tx:  # a failed bulk insert rolls back whole
        insert_members_tx(tx, tid, [(oid, 0) for oid in ids[:BULK_ROWS]])
    assert reg.connection.scalar("SELECT sql FROM sqlite_master WHERE name = ?", (INSERT_TRIGGER,)) == trigger_sql
    assert reg.get_track(tid)["object_count"] == n


def test_appending_after_the_last_frame_numbers_in_frame_order(reg, video):
    _, _, cats, _ = video
    tid = reg.create_track(cats[:2])
    assert reg.add_objects_to_track(tid, [cats[3]]) == 1
    assert reg.add_objects_to_track(tid, [cats[5], cats[4]]) == 2  # out of order within the batch
    t = reg.get_track(tid)
    assert [(o["object_id"], o["sequence_idx"]) for o in t["objects"]] == [
        (cats[0], 0), (cats[1], 1), (cats[3], 2), (cats[4], 3), (cats[5], 4)]
    assert (t["object_count"], t["end_frame_idx"]) == (5, 5)
    assert reg.add_objects_to_track(tid, [cats[2]]) == 1  # into the middle: renumbered
    assert [o["sequence_idx"] for o in reg.get_track(tid)["objects"]] == list(range(6))
