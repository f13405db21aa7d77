"""``launch.py track`` and ``launch.py export --format mot`` end to end on a registered video."""
from __future__ import annotations

import json
from pathlib import Path

import motmetrics as mm
import numpy as np
import pytest

from app.cli.main import main
from registry.facade import ObjectIn, Registry
from registry.formats.mot import read_seqinfo
from tests.video_fixtures import moving_boxes, seed_video_source, write_video

HIDDEN = (5, 6)  # frames where square 0 is not detected: the tracker bridges them, --interpolate fills them


def open_reg(data_dir: Path) -> Registry:
    return Registry(data_dir, embedding_dim=8, embedding_version="test-v1", index="exact", sync_on_write=False)


@pytest.fixture
def video(data_dir: Path, tmp_path: Path):
    """12 frames (96x128) of two squares moving right/left; one 'block' object per square per frame
    (with an 8-d embedding per square), square 0 missed on HIDDEN frames."""
    frames, truth = moving_boxes(12)
    path = write_video(tmp_path / "two squares.mp4", frames)
    rng = np.random.default_rng(0)
    looks = [np.eye(8, dtype=np.float32)[0], np.eye(8, dtype=np.float32)[3]]
    with open_reg(data_dir) as reg:
        sid, fids = seed_video_source(reg, path, frames)
        for i, boxes in enumerate(truth):
            objs = [ObjectIn("block", tuple(float(v) for v in b), confidence=0.8, frame_id=fids[i],
                             embedding=looks[g] + rng.normal(0, 0.05, 8).astype(np.float32))
                    for g, b in boxes if not (g == 0 and i in HIDDEN)]
            reg.register_objects(sid, objs, dedupe=False)
    return sid, truth


def run_json(capsys, *argv: str) -> dict:
    assert main(list(argv) + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_track_export_mot_and_rerun_keeps_an_edited_track(data_dir: Path, tmp_path: Path, video, capsys):
    sid, truth = video
    out = run_json(capsys, "track", "--data", str(data_dir), "--source", sid, "--max-gap", "3", "--interpolate")
    assert (out["tracks"], out["objects_linked"], out["interpolated"]) == (2, 22, 2)
    assert out["embedding_version"] == "test-v1" and out["params"]["max_gap"] == 3

    with open_reg(data_dir) as reg:
        tracks = reg.list_tracks(sid)
        assert [t["object_count"] for t in tracks] == [12, 12]
        assert all(t["metadata"]["created_by"] == "tracker" and t["metadata"]["params"]["interpolate"] for t in tracks)
        first = reg.get_track(tracks[0]["track_id"])
        interp = [o for o in first["objects"] if o["detection_model"] == "interpolated"]
        assert [o["frame_idx"] for o in interp] == list(HIDDEN) and all(o["metadata"]["interpolated"] for o in interp)
        for o in interp:  # linear motion: the interpolated box is the true one
            x, y, w, h = o["bbox_xywh"]
            assert np.allclose([x, y, x + w, y + h], truth[o["frame_idx"]][0][1]) and not o["has_mask"]
        # Each track follows one square: its boxes all lie on that square's row.
        assert {round(o["bbox_xywh"][1]) for o in first["objects"]} == {int(truth[0][0][1][1])}

    mot = tmp_path / "mot"
    res = run_json(capsys, "export", "--data", str(data_dir), "--format", "mot", "--source", sid, "--out", str(mot))
    assert res["export"]["sequence"] == "two_squares" and res["export"]["boxes"] == 24
    gt = mm.io.loadtxt(str(mot / "two_squares" / "gt" / "gt.txt"), fmt="mot15-2D")
    assert len(gt) == 24 and sorted(gt.index.get_level_values("FrameId").unique()) == list(range(1, 13))
    assert sorted(gt.index.get_level_values("Id").unique()) == [1, 2]
    info = read_seqinfo(mot / "two_squares" / "seqinfo.ini")
    assert info == {"name": "two_squares", "frameRate": "10", "seqLength": "12", "imWidth": "128",
                    "imHeight": "96", "imExt": ".png"}
    acc = mm.MOTAccumulator(auto_id=True)  # the export read back scores perfectly against the truth
    for i, boxes in enumerate(truth):
        rows = gt.loc[i + 1]
        g = np.array([[b[0], b[1], b[2] - b[0], b[3] - b[1]] for _, b in boxes])
        h = rows[["X", "Y", "Width", "Height"]].to_numpy()
        dist = np.array([[0.0 if np.allclose(a, b) else np.nan for b in h] for a in g])
        acc.update([t for t, _ in boxes], rows.index.tolist(), dist)
    summary = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches"])
    assert summary["mota"].iloc[0] == 1.0 and summary["idf1"].iloc[0] == 1.0

    # A person edits the first track; re-running keeps it (and its interpolated objects) as it is.
    with open_reg(data_dir) as reg, reg.transaction() as tx:
        tx.execute("UPDATE tracks SET metadata = json_set(metadata, '$.edited_by', 'ann') WHERE track_id = ?",
                   (tracks[0]["track_id"],))
    again = run_json(capsys, "track", "--data", str(data_dir), "--source", sid, "--interpolate")
    assert (again["tracks"], again["objects_linked"], again["kept_tracks"]) == (1, 12, 1)
    assert (again["replaced_tracks"], again["unchanged_tracks"]) == (0, 1)  # the other one, found again as it was
    with open_reg(data_dir) as reg:
        after = {t["track_id"]: t for t in reg.list_tracks(sid)}
        assert set(after) == {tracks[0]["track_id"], tracks[1]["track_id"]}
        assert after[tracks[1]["track_id"]]["metadata"]["params"]["max_gap"] == 10  # this run's parameters
        kept = reg.get_track(tracks[0]["track_id"])
        assert [o["object_id"] for o in kept["objects"]] == [o["object_id"] for o in first["objects"]]
        assert reg.count_objects(source_id=sid) == 24  # no interpolated object made twice

    assert main(["export", "--data", str(data_dir), "--format", "mot", "--source", sid, "--out", str(mot)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["export", "--data", str(data_dir), "--format", "mot", "--source", sid, "--out", str(mot), "--overwrite"]) == 0


def test_track_cli_names_bad_input(data_dir: Path, tmp_path: Path, capsys):
    with open_reg(data_dir) as reg:
        img = tmp_path / "a.png"
        from PIL import Image

        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
        image_sid = reg.register_source(img)
    assert main(["track", "--data", str(data_dir), "--source", "src_nope"]) == 2
    assert "unknown source id 'src_nope'" in capsys.readouterr().err
    assert main(["track", "--data", str(data_dir), "--source", image_sid]) == 2
    assert "expected a video source" in capsys.readouterr().err
    assert main(["track", "--data", str(data_dir), "--source", image_sid, "--iou-weight", "2"]) == 2
    assert "iou_weight: expected a value in [0, 1], got 2.0" in capsys.readouterr().err
    assert main(["export", "--data", str(data_dir), "--format", "mot", "--out", str(tmp_path / "m")]) == 2
    assert "expected --source SRC_ID" in capsys.readouterr().err


def test_tracker_leaves_out_rejected_and_person_tracked_objects(data_dir: Path, tmp_path: Path):
    from app.workflows.tracking import track_source

    frames, truth = moving_boxes(6)
    path = tmp_path / "v.mp4"
    path.write_bytes(b"stand-in bytes: the tracker reads frames and objects, not the video file")
    with open_reg(data_dir) as reg:
        sid, fids = seed_video_source(reg, path, frames)
        ids = {g: reg.register_objects(sid, [ObjectIn("block", tuple(map(float, b[g][1])), frame_id=fids[i])
                                             for i, b in enumerate(truth)], dedupe=False).object_ids for g in (0, 1)}
        manual = reg.create_track(ids[1][:3])  # a person's track (no created_by): its objects stay out
        reg.update_object(ids[0][2], status="rejected", validated_by="ann")
        out = track_source(reg, sid, max_gap=2, min_length=2)
        assert out["embedding_version"] is None  # no embeddings: IoU alone
        assert (out["tracks"], out["objects_considered"], out["kept_tracks"]) == (2, 8, 1)
        made = [reg.get_track(t["track_id"]) for t in reg.list_tracks(sid) if t["track_id"] != manual]
        members = sorted(sorted(o["object_id"] for o in t["objects"]) for t in made)
        assert members == sorted([sorted(ids[0][:2] + ids[0][3:]), sorted(ids[1][3:])])
        assert reg.get_track(manual)["object_count"] == 3


def test_fill_track_gaps_interpolates_a_persons_keyframes_and_stamps_the_edit(data_dir: Path, tmp_path: Path):
    from app.workflows.tracking import fill_track_gaps, track_source

    frames, truth = moving_boxes(9)
    path = tmp_path / "v.mp4"
    path.write_bytes(b"stand-in bytes for keyframe interpolation")
    with open_reg(data_dir) as reg:
        sid, fids = seed_video_source(reg, path, frames)
        keys = reg.register_objects(sid, [ObjectIn("block", tuple(map(float, truth[i][1][1])), frame_id=fids[i])
                                          for i in (0, 4, 8)], dedupe=False).object_ids
        tid = reg.create_track(keys)
        out = fill_track_gaps(reg, tid, edited_by="ann")
        assert out["interpolated"] == 6
        t = reg.get_track(tid)
        assert [o["frame_idx"] for o in t["objects"]] == list(range(9))
        for o in t["objects"]:  # square 1 moves 4 px a frame: interpolation lands on the truth
            x, y, w, h = o["bbox_xywh"]
            assert np.allclose([x, y, x + w, y + h], truth[o["frame_idx"]][1][1])
            assert (o["detection_model"] == "interpolated") == (o["object_id"] not in keys)
        assert t["metadata"]["edited_by"] == "ann" and t["metadata"]["last_edit"] == "interpolate"
        assert fill_track_gaps(reg, tid)["interpolated"] == 0  # no gaps left
        again = track_source(reg, sid, interpolate=True)
        assert (again["kept_tracks"], again["tracks"]) == (1, 0)  # its objects stay out of association
        assert reg.get_track(tid)["object_count"] == 9


def test_track_cli_on_a_video_without_objects_says_what_to_do(data_dir: Path, tmp_path: Path, capsys):
    frames, _ = moving_boxes(3)
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"stand-in bytes for an unlabelled video")
    with open_reg(data_dir) as reg:
        sid, _ = seed_video_source(reg, path, frames)
    assert main(["track", "--data", str(data_dir), "--source", sid]) == 0
    out = capsys.readouterr().out
    assert f"{sid}: 0 track(s) linking 0 of 0 object(s)" in out and f"--source {sid}" in out


def test_an_edit_while_tracking_makes_the_tracker_run_again_on_the_new_state(data_dir: Path, tmp_path: Path,
                                                                             monkeypatch):
    import app.workflows.tracking as tracking

    frames, truth = moving_boxes(6)
    path = tmp_path / "v.mp4"
    path.write_bytes(b"stand-in bytes: a person deletes an object while the tracker runs")
    with open_reg(data_dir) as reg:
        sid, fids = seed_video_source(reg, path, frames)
        ids = reg.register_objects(sid, [ObjectIn("block", tuple(map(float, truth[i][0][1])), frame_id=fids[i])
                                         for i in range(6)], dedupe=False).object_ids
        real, calls = tracking.track, []

        def track_while_a_person_deletes(frames_in, cfg):
            calls.append(1)
            if len(calls) == 1:
                reg.delete_object(ids[2])  # between the read and the write
            return real(frames_in, cfg)

        monkeypatch.setattr(tracking, "track", track_while_a_person_deletes)
        out = tracking.track_source(reg, sid)
        assert (out["attempts"], out["tracks"], out["objects_linked"]) == (2, 1, 5)
        assert ids[2] not in {o["object_id"] for o in reg.get_track(reg.list_tracks(sid)[0]["track_id"])["objects"]}

        def always_edited(frames_in, cfg):
            reg.update_object(ids[0], xyxy=(1.0 + len(calls), 8.0, 20.0, 27.0))
            calls.append(1)
            return real(frames_in, cfg)

        monkeypatch.setattr(tracking, "track", always_edited)
        with pytest.raises(RuntimeError, match="changed while it was being tracked, 3 times"):
            tracking.track_source(reg, sid)
        assert len(reg.list_tracks(sid)) == 1  # the earlier tracks are still there: nothing written


def test_sparse_frames_predict_per_frame_index_and_interpolate_only_stored_frames(data_dir: Path, tmp_path: Path):
    from app.workflows.tracking import track_source

    frames, truth = moving_boxes(26, step=2)
    stored = list(range(0, 26, 5))  # like `video add --every 5`
    path = tmp_path / "v.mp4"
    path.write_bytes(b"stand-in bytes for a sparsely sampled video")
    with open_reg(data_dir) as reg:
        sid, fids = seed_video_source(reg, path, [frames[i] for i in stored], frame_indices=stored)
        objs = [ObjectIn("block", tuple(map(float, truth[f][g][1])), frame_id=fid)
                for f, fid in zip(stored, fids, strict=True) for g in (0, 1) if not (g == 0 and f == 10)]
        reg.register_objects(sid, objs, dedupe=False)
        out = track_source(reg, sid, max_gap=1, interpolate=True)
        assert (out["tracks"], out["objects_linked"], out["interpolated"]) == (2, 11, 1)
        first = reg.get_track(reg.list_tracks(sid)[0]["track_id"])
        assert [o["frame_idx"] for o in first["objects"]] == stored
        gap = next(o for o in first["objects"] if o["detection_model"] == "interpolated")
        x, y, w, h = gap["bbox_xywh"]
        assert gap["frame_idx"] == 10 and np.allclose([x, y, x + w, y + h], truth[10][0][1])


def test_rerun_keeps_ids_of_tracks_found_again_and_replaces_changed_ones(data_dir: Path, tmp_path: Path):
    from app.workflows.tracking import track_source

    frames, truth = moving_boxes(8)
    path = tmp_path / "v.mp4"
    path.write_bytes(b"stand-in bytes for re-running the tracker")
    with open_reg(data_dir) as reg:
        sid, fids = seed_video_source(reg, path, frames)
        ids = {g: reg.register_objects(sid, [ObjectIn("block", tuple(map(float, truth[i][g][1])), frame_id=fids[i])
                                             for i in range(8)], dedupe=False).object_ids for g in (0, 1)}
        first = track_source(reg, sid, interpolate=True)
        before = [t["track_id"] for t in reg.list_tracks(sid)]
        again = track_source(reg, sid, interpolate=True)
        assert (first["tracks"], again["unchanged_tracks"], again["replaced_tracks"]) == (2, 2, 0)
        assert [t["track_id"] for t in reg.list_tracks(sid)] == before
        reg.add_frame(sid, 9)  # a frame stored since (video add, denser): interpolation may differ, made anew
        assert track_source(reg, sid, interpolate=True)["replaced_tracks"] == 2
        assert track_source(reg, sid)["replaced_tracks"] == 2  # interpolation setting changed: made anew
        reg.delete_object(ids[0][4])  # square 0 now has a gap: its track changes, square 1's does not
        out = track_source(reg, sid, max_gap=0)
        assert (out["tracks"], out["unchanged_tracks"], out["replaced_tracks"]) == (3, 1, 1)
        assert sorted(t["object_count"] for t in reg.list_tracks(sid)) == [3, 4, 8]


def test_mot_export_leaves_out_objects_a_person_rejected(data_dir: Path, tmp_path: Path):
    """Ground truth must not hold a box a reviewer rejected after tracking (datasets leave them out too)."""
    from app.workflows.tracking import export_mot
    from registry.formats.mot import read_gt

    frames, truth = moving_boxes(4)
    path = tmp_path / "v.mp4"
    path.write_bytes(b"stand-in bytes: export reads the registry, not the video file")
    with open_reg(data_dir) as reg:
        sid, fids = seed_video_source(reg, path, frames)
        ids = reg.register_objects(sid, [ObjectIn("block", tuple(map(float, b[0][1])), frame_id=fids[i])
                                         for i, b in enumerate(truth)], dedupe=False).object_ids
        reg.create_track(ids)
        reg.update_object(ids[2], status="rejected", validated_by="ann")
        out = export_mot(reg, sid, tmp_path / "mot")
        rows = read_gt(Path(out["out_dir"]) / out["sequence"] / "gt" / "gt.txt")
        assert out["boxes"] == 3
        assert [r[0] for r in rows] == [1, 2, 4]  # 1-based frames; frame index 2 was rejected


def test_rerun_removes_replaced_interpolated_objects_even_once_embedded(data_dir: Path, tmp_path: Path):
    """An embed pass gives interpolated boxes vectors too; a re-run that replaces their track must
    still remove them (and their vectors), not leave orphans that pile up on the same frames."""
    from app.workflows.tracking import track_source

    frames, truth = moving_boxes(5)
    path = tmp_path / "v.mp4"
    path.write_bytes(b"stand-in bytes: the tracker reads frames and objects, not the video file")
    with open_reg(data_dir) as reg:
        sid, fids = seed_video_source(reg, path, frames)
        reg.register_objects(sid, [ObjectIn("block", tuple(map(float, truth[i][0][1])), frame_id=fids[i])
                                   for i in (0, 1, 3, 4)], dedupe=False)
        assert track_source(reg, sid, interpolate=True)["interpolated"] == 1
        interp = [o for o in reg.list_objects(source_id=sid, limit=None) if o["detection_model"] == "interpolated"]
        assert len(interp) == 1
        reg.update_object(interp[0]["object_id"], embedding=np.eye(8, dtype=np.float32)[0])  # e.g. `embed`
        out = track_source(reg, sid, interpolate=False)
        assert out["replaced_tracks"] == 1
        left = [o for o in reg.list_objects(source_id=sid, limit=None) if o["detection_model"] == "interpolated"]
        assert left == []
        queued = reg.connection.query("SELECT operation FROM embedding_outbox WHERE object_id = ? ORDER BY id",
                                      (interp[0]["object_id"],))
        assert queued[-1]["operation"] == "delete"  # its vector leaves the index too
        track_source(reg, sid, interpolate=True)
        again = [o for o in reg.list_objects(source_id=sid, limit=None) if o["detection_model"] == "interpolated"]
        assert len(again) == 1
        reg.sync_outbox()
        assert interp[0]["object_id"] not in {h["object_id"] for h in reg.search(np.eye(8, dtype=np.float32)[0], k=10)}
