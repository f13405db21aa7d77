"""MOTChallenge import onto a video source's frames: tracks, bad lines, missing frames, resume."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry.facade import Registry
from registry.importers import mot_import
from registry.importers.mot_import import import_mot, parse_mot_line
from tests.video_fixtures import moving_boxes, seed_video_source, write_video


@pytest.fixture
def reg(data_dir: Path):
    r = Registry(data_dir, index="exact", embedding_dim=8, sync_on_write=False)
    yield r
    r.close()


@pytest.fixture
def video(reg, tmp_path):
    """A 6-frame video source (128x96) with frames 0..5 registered."""
    frames, truth = moving_boxes(6)
    path = write_video(tmp_path / "clip.mp4", frames)
    sid, frame_ids = seed_video_source(reg, path, frames)
    return sid, frame_ids, truth


def _write(tmp_path: Path, lines: list[str], name: str = "gt.txt") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def _boxes(reg, sid):
    frame_idx = {f["frame_id"]: f["frame_idx"] for f in reg.list_frames(sid)}
    return sorted((frame_idx[o["frame_id"]], o["metadata"]["mot"]["id"], o["category"], tuple(o["bbox_xywh"]))
                  for o in reg.list_objects(source_id=sid, limit=None))


def test_tracks_untracked_bad_lines_and_missing_frames(reg, video, tmp_path):
    sid, frame_ids, _ = video
    lines = [
        "1,1,11,21,20,20,1,-1,-1,-1",   # id 1 on frames 1..3 (frame_idx 0..2), MOT 1-based pixels
        "2,1,15,21,20,20,1,-1,-1,-1",
        "3,1,19,21,20,20,1,-1,-1,-1",
        "1,2,61,41,19,19,1,-1,-1,-1",   # id 2 on frames 1 and 3
        "3,2,57,41,19,19,1,-1,-1,-1",
        "2,-1,100,60,10,10,0.4,-1,-1,-1",  # an untracked detection
        "2,5,1,1",                       # line 7: too few values
        "2,6,abc,1,5,5,1",              # line 8: not a number
        "2,7,10,10,0,5,1",              # line 9: zero width
        "9,1,10,10,5,5,1",              # line 10: frame 9 = frame_idx 8 is not registered
        "9,2,20,10,5,5,1",              # line 11: same missing frame
        "",
        "4,3,120,80,30,30,1",           # line 13: reaches past the 128x96 frame: clipped, truncated
        "4,4,200,200,5,5,1",            # line 14: wholly outside
    ]
    report = import_mot(reg, sid, _write(tmp_path, lines))
    assert report.objects_imported == 7 and report.tracks_new == 3
    assert report.images_seen == 5 and report.images_registered == 4
    errors = dict(report.errors)
    assert errors["line 7"].startswith("expected at least 6 comma-separated values")
    assert errors["line 8"] == "x: expected a number, got 'abc'"
    assert "w > 0" in errors["line 9"]
    assert "lies outside the 128x96 frame" in errors["line 14"]
    assert "no registered frame with frame_idx 8" in errors["frame 9"] and "2 line(s) skipped, first at line 10" in errors["frame 9"]
    assert len(report.errors) == 5
    got = _boxes(reg, sid)
    assert (0, 1, "object", (10.0, 20.0, 20.0, 20.0)) in got  # x - 1, y - 1
    assert (1, -1, "object", (99.0, 59.0, 10.0, 10.0)) in got
    tracks = {t["metadata"]["mot_id"]: t for t in reg.list_tracks(sid)}
    assert sorted(tracks) == [1, 2, 3]
    t1 = tracks[1]
    assert (t1["start_frame_idx"], t1["end_frame_idx"], t1["object_count"]) == (0, 2, 3)
    assert t1["metadata"]["created_by"] == "import"
    assert (tracks[2]["start_frame_idx"], tracks[2]["end_frame_idx"], tracks[2]["object_count"]) == (0, 2, 2)
    full = reg.get_track(tracks[1]["track_id"])
    assert [o["bbox_xywh"][0] for o in full["objects"]] == [10.0, 14.0, 18.0]
    untracked = next(o for o in reg.list_objects(source_id=sid, limit=None) if o["metadata"]["mot"]["id"] == -1)
    assert untracked["confidence"] == pytest.approx(0.4)
    in_track = reg.db.execute("SELECT count(*) FROM track_objects WHERE object_id = ?", [untracked["object_id"]])
    assert in_track.fetchone()[0] == 0
    cut = next(o for o in reg.list_objects(source_id=sid, limit=None) if o["metadata"]["mot"]["id"] == 3)
    assert cut["bbox_xywh"] == [119.0, 79.0, 9.0, 17.0] and cut["is_truncated"]


def test_categories_from_option_class_column_and_names(reg, video, tmp_path):
    sid, _, _ = video
    gt = _write(tmp_path, ["1,1,11,21,20,20,1,3,1.0", "2,1,15,21,20,20,1,3,0.5", "1,2,61,41,19,19,1,1,1.0"])
    report = import_mot(reg, sid, gt)
    cats = {(o["metadata"]["mot"]["id"], o["category"], o["is_occluded"]) for o in reg.list_objects(source_id=sid, limit=None)}
    assert cats == {(1, "car", False), (1, "car", True), (2, "pedestrian", False)}  # MOTChallenge's class list
    assert report.categories == ["car", "pedestrian"]
    other = _write(tmp_path, ["3,1,11,21,20,20,1,3,1.0"], "other.txt")
    import_mot(reg, sid, other, class_names={3: "forklift"})
    import_mot(reg, sid, other, category="robot")
    on_frame_idx_2 = sorted(c for f, _, c, _ in _boxes(reg, sid) if f == 2)
    assert on_frame_idx_2 == ["forklift", "robot"]
    with pytest.raises(ValueError, match="expected a video source"):
        img = tmp_path / "x.png"
        from PIL import Image
        Image.new("RGB", (8, 8)).save(img)
        import_mot(reg, reg.register_source(img), gt)


def test_detector_scores_outside_0_1_are_kept_in_metadata_only(reg, video, tmp_path):
    sid, _, _ = video
    det = _write(tmp_path, ["1,-1,11,21,20,20,35.2,-1,-1,-1", "2,-1,11,21,20,20,0.75,-1,-1,-1"], "det.txt")
    report = import_mot(reg, sid, det)
    assert report.objects_imported == 2 and report.tracks_new == 0 and not reg.list_tracks(sid)
    objs = sorted(reg.list_objects(source_id=sid, limit=None), key=lambda o: o["metadata"]["mot"]["line"])
    assert objs[0]["confidence"] is None and objs[0]["metadata"]["mot"]["conf"] == pytest.approx(35.2)
    assert objs[1]["confidence"] == pytest.approx(0.75) and {o["category"] for o in objs} == {"object"}


def test_overlapping_tracked_boxes_are_all_kept(reg, video, tmp_path):
    sid, _, _ = video
    report = import_mot(reg, sid, _write(tmp_path, ["1,1,11,21,20,20,1", "1,2,11,21,20,21,1", "1,2,50,50,5,5,1"]))
    assert report.objects_imported == 2 and len(reg.list_tracks(sid)) == 2  # no IoU dedupe between people
    assert any("appears twice on frame 1" in r for _, r in report.errors)


def test_resume_after_a_kill_and_no_second_import(reg, video, tmp_path, monkeypatch):
    sid, _, truth = video
    lines = [f"{f + 1},{tid + 1},{b[0] + 1:g},{b[1] + 1:g},{b[2] - b[0]:g},{b[3] - b[1]:g},1"
             for f, boxes in enumerate(truth) for tid, b in boxes]
    gt = _write(tmp_path, lines)
    real = mot_import._import_frame

    def dies_on_frame_4(reg_, src, frame, *args):
        if frame == 4:
            raise KeyboardInterrupt
        return real(reg_, src, frame, *args)

    monkeypatch.setattr(mot_import, "_import_frame", dies_on_frame_4)
    with pytest.raises(KeyboardInterrupt):
        import_mot(reg, sid, gt, batch_size=2)
    # one transaction per batch of 2 frames: frames 1-2 committed, the batch holding frame 4 rolled back
    assert reg.count_objects(source_id=sid) == 4
    assert sorted(t["object_count"] for t in reg.list_tracks(sid)) == [2, 2]
    monkeypatch.undo()
    report = import_mot(reg, sid, gt, batch_size=2)
    assert report.objects_imported == 8 and report.tracks_new == 0 and not report.errors
    tracks = reg.list_tracks(sid)
    assert sorted((t["object_count"], t["start_frame_idx"], t["end_frame_idx"]) for t in tracks) == [(6, 0, 5), (6, 0, 5)]
    again = import_mot(reg, sid, gt)
    assert again.already_imported and again.objects_imported == 0 and "already imported" in again.summary()
    assert reg.count_objects(source_id=sid) == 12


def test_missing_frames_are_imported_once_they_exist(reg, tmp_path):
    frames, _ = moving_boxes(4)
    path = write_video(tmp_path / "clip.mp4", frames)
    sid, _ = seed_video_source(reg, path, frames[:2], frame_indices=[0, 1])
    gt = _write(tmp_path, ["1,1,11,21,20,20,1", "4,1,23,21,20,20,1"])
    first = import_mot(reg, sid, gt)
    assert first.objects_imported == 1 and "frame 4" in dict(first.errors)
    reg.add_frame(sid, 3, timestamp=0.3, file_path=f"media/frames/{sid}/000003.png")
    second = import_mot(reg, sid, gt)
    assert second.objects_imported == 1 and not second.errors
    (track,) = reg.list_tracks(sid)
    assert (track["object_count"], track["start_frame_idx"], track["end_frame_idx"]) == (2, 0, 3)


def test_round_trip_with_the_mot_export(reg, video, tmp_path, data_dir):
    from app.workflows.tracking import export_mot

    sid, _, truth = video
    lines = [f"{f + 1},{tid + 1},{b[0] + 1:g},{b[1] + 1:g},{b[2] - b[0]:g},{b[3] - b[1]:g},1,{tid + 1},1"
             for f, boxes in enumerate(truth) for tid, b in boxes]
    import_mot(reg, sid, _write(tmp_path, lines), class_names={1: "red square", 2: "blue square"})
    out = export_mot(reg, sid, tmp_path / "mot")
    gt = Path(out["out_dir"]) / out["sequence"] / "gt" / "gt.txt"
    with Registry(tmp_path / "data2", index="exact", embedding_dim=8, sync_on_write=False) as other:
        frames, _ = moving_boxes(6)
        sid2, _ = seed_video_source(other, tmp_path / "clip.mp4", frames)
        report = import_mot(other, sid2, gt)  # class names come from the export's manifest.json
        assert report.objects_imported == 12 and not report.errors
        a = [(f, c, b) for f, _, c, b in _boxes(reg, sid)]
        b = [(f, c, bb) for f, _, c, bb in _boxes(other, sid2)]
        assert a == b and {c for _, c, _ in b} == {"red square", "blue square"}
        assert len(other.list_tracks(sid2)) == 2


def test_parse_line_forms():
    row = parse_mot_line("3, 7, 10.5, 20, 30, 40, 0.9, -1, -1, -1", 5)
    assert (row.frame, row.mot_id, row.box_xywh, row.conf, row.cls, row.visibility) == (3, 7, (9.5, 19.0, 30.0, 40.0), 0.9, None, None)
    assert parse_mot_line("3 7 10 20 30 40", 1).box_xywh == (9.0, 19.0, 30.0, 40.0)  # space separated
    assert parse_mot_line("   ", 2) is None
    with pytest.raises(ValueError, match="frame: expected a 1-based frame number >= 1, got 0"):
        parse_mot_line("0,1,1,1,1,1", 1)
    with pytest.raises(ValueError, match="id: expected -1"):
        parse_mot_line("1,-2,1,1,1,1", 1)


def test_cli_import_mot(reg, video, tmp_path, capsys):
    from app.cli.main import main

    sid, _, _ = video
    gt = _write(tmp_path, ["1,1,11,21,20,20,1", "2,1,15,21,20,20,1", "2,x"])
    data = str(reg.data_dir)
    reg.close()
    rc = main(["import", "--data", data, "--format", "mot", "--source", sid, str(gt), "--category", "robot", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1 and out["objects_imported"] == 2 and out["tracks_new"] == 1 and out["categories"] == ["robot"]
    assert out["errors"] == [{"item": "line 3", "reason": "expected at least 6 comma-separated values (frame,id,x,y,w,h), got 2"}]
    assert main(["import", "--data", data, "--format", "mot", str(gt)]) == 2
    assert "expected --source SRC_ID" in capsys.readouterr().err


def test_an_id_that_changes_class_midway_links_the_rest_and_names_the_refused_lines(reg, video, tmp_path):
    """Tracks are linked once per batch; when a track refuses part of a batch (another class),
    the other lines of that batch are still linked and each refused line is named."""
    sid, _, _ = video
    lines = [f"{f},1,{11 + 4 * f},21,20,20,1,{1 if f != 3 else 3},1" for f in range(1, 6)]  # frame 3: a car
    lines += [f"{f},2,61,41,19,19,1,1,1" for f in range(1, 6)]
    report = import_mot(reg, sid, _write(tmp_path, lines), batch_size=10)
    assert report.objects_imported == 10 and report.tracks_new == 2
    assert [e for e in report.errors if "not linked" in str(e)] and "line 3" in str(report.errors)
    by_id = {t["metadata"]["mot_id"]: reg.get_track(t["track_id"]) for t in reg.list_tracks(sid)}
    assert [o["frame_idx"] for o in by_id[1]["objects"]] == [0, 1, 3, 4]  # frame_idx 2 (line 3) left out
    assert [o["frame_idx"] for o in by_id[2]["objects"]] == [0, 1, 2, 3, 4]
    assert {o["category"] for o in by_id[1]["objects"]} == {"pedestrian"}
