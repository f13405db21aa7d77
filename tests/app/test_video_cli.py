"""Videos into the registry: ``add_video``, ``frame_image_path``, ``label_video_frames`` and the
``launch.py video add`` / ``label --source`` commands (in-process, as ``launch.py`` runs them)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli.main import main
from app.workflows import video as video_wf
from app.workflows.video import add_video, frame_image_path, label_video_frames
from registry.facade import ObjectIn, Registry
from tests.app.fakes import FakeLabeler
from tests.pipeline.video import bad_videos
from tests.video_fixtures import moving_boxes, write_video


@pytest.fixture
def reg(data_dir: Path):
    r = Registry(data_dir, index="exact", embedding_dim=8, sync_on_write=False)
    yield r
    r.close()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    frames, _ = moving_boxes(20)
    return write_video(tmp_path / "in" / "street.mp4", frames)


def _files(data_dir: Path) -> list[str]:
    return sorted(p.relative_to(data_dir).as_posix() for p in (data_dir / "media").rglob("*") if p.is_file())


def test_add_video_registers_source_and_frames(reg, clip):
    out = add_video(reg, clip, every=5)
    sid = out["source_id"]
    assert out["frames"] == 4 and out["new_frames"] == 4 and out["existing"] is False
    src = reg.get_source(sid)
    assert src["source_type"] == "video" and (src["width"], src["height"]) == (128, 96)
    assert src["fps"] == pytest.approx(10.0) and src["frame_count"] == 20 and src["file_name"] == "street.mp4"
    assert src["metadata"]["video"]["codec"] == "h264"
    frames = reg.list_frames(sid)
    assert [f["frame_idx"] for f in frames] == [0, 5, 10, 15]
    assert [f["timestamp"] for f in frames] == pytest.approx([0.0, 0.5, 1.0, 1.5])
    rows = reg.db.execute("SELECT frame_idx, file_path FROM frames WHERE source_id = ? ORDER BY frame_idx",
                          [sid]).fetchall()
    assert rows[1] == (5, f"media/frames/{sid}/000005.png")  # stored relative to the data folder
    png = np.asarray(Image.open(frames[1]["file_path"]))
    want, _ = moving_boxes(20)
    assert png.shape == (96, 128, 3) and np.abs(png.astype(int) - want[5].astype(int)).mean() < 4
    assert not [p for p in _files(reg.data_dir) if "/.tmp-" in p]


def test_same_file_twice_same_source_no_duplicate_frames(reg, clip, tmp_path):
    first = add_video(reg, clip, every=5)
    again = add_video(reg, clip, every=5)
    assert again["source_id"] == first["source_id"] and again["existing"] is True
    assert again["frames"] == 4 and again["new_frames"] == 0
    copy = tmp_path / "renamed.mp4"
    copy.write_bytes(clip.read_bytes())  # same bytes, another name: the same source
    denser = add_video(reg, copy, every=2)
    assert denser["source_id"] == first["source_id"]
    assert denser["frames"] == 10 and denser["new_frames"] == 8  # 0 and 10 were stored already
    idx = [f["frame_idx"] for f in reg.list_frames(first["source_id"])]
    assert idx == sorted(set(idx)) == [0, 2, 4, 5, 6, 8, 10, 12, 14, 15, 16, 18]
    assert reg.count_sources() == 1


def test_a_rerun_restores_a_deleted_frame_file(reg, clip):
    sid = add_video(reg, clip, every=5)["source_id"]
    lost = Path(reg.list_frames(sid)[2]["file_path"])
    before = lost.read_bytes()
    lost.unlink()
    again = add_video(reg, clip, every=5)
    assert again["new_frames"] == 0 and lost.read_bytes() == before
    assert len(reg.list_frames(sid)) == 4


def test_failure_midway_leaves_nothing_registered(reg, clip, monkeypatch):
    real = video_wf.iter_frames

    def breaks_after_three(path, sampler, *, info):
        for k, frame in enumerate(real(path, sampler, info=info)):
            if k == 3:
                raise ValueError(f"cannot read video {Path(path).name!r}: decoding failed at frame {frame.frame_idx}")
            yield frame

    monkeypatch.setattr(video_wf, "iter_frames", breaks_after_three)
    with pytest.raises(ValueError, match="decoding failed at frame 3"):
        add_video(reg, clip)
    assert reg.count_sources() == 0
    assert reg.db.execute("SELECT count(*) FROM frames").fetchone()[0] == 0
    assert _files(reg.data_dir) == []  # neither frame PNGs nor the copied video


def test_failure_on_a_known_source_keeps_what_it_had(reg, clip, monkeypatch):
    sid = add_video(reg, clip, every=10)["source_id"]
    before = _files(reg.data_dir)
    real = video_wf.iter_frames

    def breaks_late(path, sampler, *, info):
        for frame in real(path, sampler, info=info):
            if frame.frame_idx == 7:
                raise KeyboardInterrupt
            yield frame

    monkeypatch.setattr(video_wf, "iter_frames", breaks_late)
    with pytest.raises(KeyboardInterrupt):
        add_video(reg, clip, every=1)
    assert reg.get_source(sid)["source_id"] == sid
    assert [f["frame_idx"] for f in reg.list_frames(sid)] == [0, 10]
    assert _files(reg.data_dir) == before
    monkeypatch.undo()
    assert add_video(reg, clip, every=1)["new_frames"] == 18  # a re-run completes it


def test_bytes_registered_as_an_image_are_not_turned_into_a_video(reg, clip):
    sid = reg.register_source(clip, source_type="image", width=128, height=96)
    with pytest.raises(ValueError, match=r"'street.mp4': expected a video source, got .*source_type 'image'"):
        add_video(reg, clip)
    assert reg.list_frames(sid) == [] and reg.get_source(sid)["source_type"] == "image"


def test_doctor_sees_frames_as_referenced_media_not_litter(reg, clip):
    from registry.doctor_files import find_litter

    sid = add_video(reg, clip, every=3)["source_id"]
    (reg.data_dir / "media" / "frames" / sid / "000001.png").write_bytes(b"stray")  # no row: litter
    litter = find_litter(reg.connection, reg.data_dir, min_age_s=0)
    assert [p.name for p in litter["orphans"]] == ["000001.png"] and litter["temp"] == []


def test_truncated_video_is_refused_and_nothing_stays(reg, tmp_path):
    path = bad_videos.truncated_mkv(tmp_path / "cut.mkv", tmp_path)
    with pytest.raises(ValueError, match="cannot read video 'cut.mkv': truncated"):
        add_video(reg, path)
    assert reg.count_sources() == 0 and _files(reg.data_dir) == []


def test_frame_image_path_resolves_frames_and_sources(reg, clip, tmp_path):
    sid = add_video(reg, clip, every=5)["source_id"]
    frame = reg.list_frames(sid)[2]
    res = reg.register_objects(sid, [ObjectIn("red", (10, 10, 30, 30), frame_id=frame["frame_id"]),
                                     ObjectIn("red", (10, 10, 30, 30))])
    on_frame, on_video = (reg.get_object(o) for o in res.object_ids)
    want = reg.data_dir / "media" / "frames" / sid / "000010.png"
    assert frame_image_path(reg, on_frame) == want and want.is_file()
    assert frame_image_path(reg, on_frame["object_id"]) == want
    assert frame_image_path(reg, frame) == want == frame_image_path(reg, frame["frame_id"])
    assert frame_image_path(reg, on_video) == Path(reg.get_source(sid)["file_path"])
    img = Image.new("RGB", (20, 10))
    img.save(tmp_path / "still.png")
    still = reg.register_source(tmp_path / "still.png")
    assert frame_image_path(reg, still).read_bytes() == (tmp_path / "still.png").read_bytes()
    with pytest.raises(ValueError, match="unknown frame id 'frm_nope'"):
        frame_image_path(reg, "frm_nope")


def test_label_video_frames_labels_each_frame_and_resumes(reg, clip):
    sid = add_video(reg, clip, every=4)["source_id"]
    labeler = FakeLabeler()
    report = label_video_frames(reg, labeler, sid, ["red", "blue"], progress=False)
    assert (report.total, report.labeled, report.skipped, report.failed) == (5, 5, 0, [])
    assert report.objects == 10 and labeler.calls == 5  # two squares on each of the five frames
    objs = reg.list_objects(source_id=sid, limit=None)
    frames = {f["frame_id"]: f["frame_idx"] for f in reg.list_frames(sid)}
    assert {frames[o["frame_id"]] for o in objs} == {0, 4, 8, 12, 16}
    truth = dict(moving_boxes(20)[1][8])  # track 0 is red
    red8 = next(o for o in objs if o["category"] == "red" and frames[o["frame_id"]] == 8)
    x, y, w, h = red8["bbox_xywh"]
    assert np.allclose([x, y, x + w, y + h], truth[0], atol=2)
    again = label_video_frames(reg, labeler, sid, ["blue", "red"], progress=False)
    assert (again.labeled, again.skipped, labeler.calls) == (0, 5, 5)
    other = label_video_frames(reg, labeler, sid, ["red", "blue"], confidence=0.5, progress=False)
    # new settings label again; the registry's per-frame dedupe keeps the same boxes out
    assert other.labeled == 5 and other.objects == 0 and other.duplicates == 10
    assert "video " + sid in other.summary() and "5 frame(s)" in other.summary()
    with pytest.raises(ValueError, match="expected a video source"):
        img = reg.data_dir.parent / "x.png"
        Image.new("RGB", (8, 8)).save(img)
        label_video_frames(reg, labeler, reg.register_source(img), ["red"])


def test_static_object_on_every_frame_is_kept_once_per_frame(reg, tmp_path):
    # the same box on consecutive frames is not a duplicate (dedupe is per frame)
    frames = [np.full((48, 64, 3), 100, np.uint8) for _ in range(3)]
    for f in frames:
        f[10:30, 10:30] = (220, 30, 30)
    sid = add_video(reg, write_video(tmp_path / "still.mp4", frames))["source_id"]
    report = label_video_frames(reg, FakeLabeler(), sid, ["red"], progress=False)
    assert report.objects == 3 and report.duplicates == 0
    assert reg.count_objects(source_id=sid) == 3


def test_cli_video_add_json_and_errors(data_dir, clip, tmp_path, capsys):
    rc = main(["video", "add", "--data", str(data_dir), str(clip), "--fps", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["frames"] == 4 and out["source_id"].startswith("src_")
    rc = main(["video", "add", "--data", str(data_dir), str(clip), "--every", "3", "--max-frames", "2"])
    cap = capsys.readouterr()
    assert rc == 0 and cap.out.startswith(out["source_id"] + " (already registered): 2 frame(s)")
    assert "frames:" in cap.err and "100%" in cap.err  # the tqdm bar went to stderr
    for bad in (bad_videos.audio_only(tmp_path / "song.m4a"), bad_videos.empty_file(tmp_path / "e.mp4")):
        rc = main(["video", "add", "--data", str(data_dir), str(bad)])
        cap = capsys.readouterr()
        assert rc == 2 and cap.err.startswith(f"error: cannot read video {bad.name!r}") and cap.err.count("\n") == 1
    with Registry(data_dir, index="exact", sync_on_write=False) as r:
        assert r.count_sources() == 1
    rc = main(["video", "probe", str(clip), "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["frame_count"] == 20


def test_cli_label_source_with_the_real_chain(tmp_path, data_dir, capsys):
    from tests.chain_models import build_chain_models, scene_boxes, scene_image

    weights = tmp_path / "weights"
    build_chain_models(weights)
    path = write_video(tmp_path / "scene.mp4", [scene_image(seed=s) for s in (1, 2)])
    assert main(["video", "add", "--data", str(data_dir), str(path), "--json"]) == 0
    sid = json.loads(capsys.readouterr().out)["source_id"]
    args = ["label", "--data", str(data_dir), "--classes", "cat,dog", "--source", sid, "--confidence", "0.2",
            "--weights-dir", str(weights), "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labeled"] == 2 and report["objects"] == 4 and report["source_id"] == sid, report
    # (resuming is tested with the test double above: a second run here would only reload the models)
    with Registry(data_dir, index="exact", embedding_dim=32, sync_on_write=False) as r:
        objs = r.list_objects(source_id=sid, limit=None)
        assert len(objs) == 4 and all(o["frame_id"] for o in objs) and all(o["has_mask"] for o in objs)
        assert all(o["has_embedding"] for o in objs)
        cat = next(o for o in objs if o["category"] == "cat")
        x, y, w, h = cat["bbox_xywh"]
        assert np.allclose([x, y, x + w, y + h], scene_boxes()["cat"], atol=2)
    assert main(["label", "--data", str(data_dir), "--classes", "cat", "--weights-dir", str(weights)]) == 2
    assert "got neither" in capsys.readouterr().err


def test_review_refine_and_segment_load_the_frame_image(reg, clip):
    from app.cli.segment import segment_objects
    from app.workflows import refine, review
    from pipeline.image_io import image_sha256
    from pipeline.segment.grabcut import GrabCutSegmenter

    sid = add_video(reg, clip, every=6)["source_id"]  # frames 0, 6, 12, 18
    frames = reg.list_frames(sid)
    truth = moving_boxes(20)[1]
    objs = [ObjectIn("red", tuple(float(v) for v in truth[f["frame_idx"]][0][1]), frame_id=f["frame_id"])
            for f in frames]
    ids = reg.register_objects(sid, objs).object_ids
    # Review: the crop and the whole view come from the object's frame (the red square is there)
    crop, whole, obj = review.object_views(reg, ids[2], reg.data_dir)
    assert whole.shape[:2] == (96, 128)
    x0, y0, x1, y1 = truth[12][0][1].astype(int)
    assert whole[(y0 + y1) // 2, (x0 + x1) // 2, 0] > 180 and whole[(y0 + y1) // 2, (x0 + x1) // 2, 2] < 90
    thumb = np.asarray(Image.open(review.thumbnail(reg, reg.get_object(ids[3]), reg.data_dir)))
    assert thumb.shape[0] > 8 and thumb[..., 0].mean() > thumb[..., 2].mean() + 60  # mostly red
    # Refine: the session's image is the frame PNG, keyed by that file's hash
    s = refine.open_object(reg, ids[1])
    assert s.image_path == frames[1]["file_path"] and s.image_key == image_sha256(frames[1]["file_path"])
    assert s.image().shape == (96, 128, 3)
    # segment: each frame's objects segmented on that frame
    out = segment_objects(reg, GrabCutSegmenter(), only_missing=True, progress=False)
    assert out["segmented"] == 4 and out["sources"] == 4 and not out["failed"], out
    for oid, f in zip(ids, frames, strict=True):
        mask = reg.get_mask(oid)
        bx0, by0, bx1, by1 = truth[f["frame_idx"]][0][1].astype(int)
        inside = mask[by0:by1, bx0:bx1].mean()
        assert inside > 0.8 and mask.sum() < 1.3 * (bx1 - bx0) * (by1 - by0), (f["frame_idx"], inside, mask.sum())


def test_add_video_memory_does_not_grow_with_the_video(reg, tmp_path):
    import tracemalloc

    frame_bytes = 96 * 128 * 3
    paths = {}
    for n in (10, 15, 150):
        frames, _ = moving_boxes(n, size=(96, 128))
        frames[0][0, 0] = n  # distinct bytes: three sources
        paths[n] = write_video(tmp_path / f"clip{n}.mp4", frames)
    del frames
    add_video(reg, paths[10])  # imports and caches warmed up outside the measurement
    peaks = {}
    for n in (15, 150):
        tracemalloc.start()
        try:
            out = add_video(reg, paths[n])
            _, peaks[n] = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert out["frames"] == n and len(reg.list_frames(out["source_id"])) == n
    # ten times the frames (150 held at once would be 5.5 MB): a few frames' worth more at most
    # (the frame rows, a path per written file)
    assert peaks[150] < peaks[15] + 4 * frame_bytes, peaks
    # the content hash reads 1 MiB chunks; frames waiting for a PNG writer: <= 2 x MAX_WRITERS + 1
    assert peaks[150] < (1 << 20) + (2 * video_wf.MAX_WRITERS + 4) * frame_bytes, peaks
