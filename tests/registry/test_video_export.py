"""YOLO and COCO exports of a video source: one image per labelled frame, COCO ``track_id``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from registry.datasets import build_dataset
from registry.export import export_dataset
from registry.facade import ObjectIn, Registry
from tests.video_fixtures import moving_boxes, seed_video_source, write_video


@pytest.fixture
def video_reg(data_dir: Path, tmp_path: Path):
    """A 5-frame video (128x96) whose two squares are tracked on frames 0-3; frame 4 has no
    objects; one untracked 'speck' on frame 2."""
    reg = Registry(data_dir, index="exact", embedding_dim=8, sync_on_write=False)
    frames, truth = moving_boxes(5)
    sid, frame_ids = seed_video_source(reg, write_video(tmp_path / "Street Cam.mp4", frames), frames)
    per_track: dict[int, list[str]] = {0: [], 1: []}
    for f in range(4):
        objs = [ObjectIn("square", tuple(float(v) for v in box), confidence=0.9, frame_id=frame_ids[f])
                for _, box in truth[f]]
        ids = reg.register_objects(sid, objs).object_ids
        for (tid, _), oid in zip(truth[f], ids, strict=True):
            per_track[tid].append(oid)
    speck = reg.register_objects(sid, [ObjectIn("speck", (60, 40, 66, 46), frame_id=frame_ids[2])]).object_ids[0]
    tracks = {tid: reg.create_track(ids) for tid, ids in per_track.items()}
    yield reg, sid, frame_ids, truth, tracks, speck
    reg.close()


def test_coco_export_of_a_video_has_one_image_per_frame_and_track_ids(video_reg, tmp_path):
    from pycocotools.coco import COCO

    reg, sid, frame_ids, truth, tracks, speck = video_reg
    built = build_dataset(reg, "clip", split="1,0,0")
    res = export_dataset(reg, built["dataset_id"], tmp_path / "coco", "coco", "detect")
    images = sorted(p.name for p in (tmp_path / "coco" / "images" / "train").iterdir())
    assert images == [f"Street_Cam_f{i:06d}.png" for i in range(4)]  # frame 4 has no objects
    for i in range(4):  # the frame's own PNG, not the video file
        got = (tmp_path / "coco" / "images" / "train" / images[i]).read_bytes()
        assert got == Path(reg.list_frames(sid)[i]["file_path"]).read_bytes()
    coco = COCO(res["files"]["train"])
    assert len(coco.getImgIds()) == 4 and len(coco.getAnnIds()) == 9
    anns = coco.loadAnns(coco.getAnnIds())
    by_object = {a["agl_object_id"]: a for a in anns}
    assert "track_id" not in by_object[speck] and "agl_track_id" not in by_object[speck]
    numbers = {}
    for tid, track_id in tracks.items():
        members = [a for a in anns if a.get("agl_track_id") == track_id]
        assert len(members) == 4 and len({a["track_id"] for a in members}) == 1
        numbers[tid] = members[0]["track_id"]
    assert sorted(numbers.values()) == [1, 2] and all(isinstance(v, int) for v in numbers.values())
    # the annotation of track 1 on frame 3 is where the square was
    img3 = next(i for i in coco.loadImgs(coco.getImgIds()) if i["file_name"] == "Street_Cam_f000003.png")
    assert img3["agl_id"] == frame_ids[3] and (img3["width"], img3["height"]) == (128, 96)
    a = next(a for a in anns if a["image_id"] == img3["id"] and a.get("track_id") == numbers[1])
    x0, y0, x1, y1 = truth[3][1][1]
    assert a["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0])
    manifest = json.loads(Path(res["manifest"]).read_text())
    assert manifest["image_files"]["images/train/Street_Cam_f000002.png"] == frame_ids[2]


def test_yolo_export_of_a_video_labels_each_frame(video_reg, tmp_path):
    reg, sid, _, truth, _, _ = video_reg
    built = build_dataset(reg, "clip", split="1,0,0")
    export_dataset(reg, built["dataset_id"], tmp_path / "yolo", "yolo", "detect")
    labels = sorted(p.name for p in (tmp_path / "yolo" / "labels" / "train").iterdir())
    assert labels == [f"Street_Cam_f{i:06d}.txt" for i in range(4)]
    img = np.asarray(Image.open(tmp_path / "yolo" / "images" / "train" / "Street_Cam_f000001.png"))
    assert img.shape == (96, 128, 3)
    lines = (tmp_path / "yolo" / "labels" / "train" / "Street_Cam_f000001.txt").read_text().split("\n")
    rows = sorted([float(v) for v in line.split()] for line in lines if line.strip())
    assert "square" in (tmp_path / "yolo" / "data.yaml").read_text()
    assert len(rows) == 2  # the two squares of frame 1
    want = sorted([[(b[0] + b[2]) / 2 / 128, (b[1] + b[3]) / 2 / 96, (b[2] - b[0]) / 128, (b[3] - b[1]) / 96]
                   for _, b in truth[1]])
    assert np.allclose([r[1:] for r in rows], want, atol=1e-4)
    speck_frame = (tmp_path / "yolo" / "labels" / "train" / "Street_Cam_f000002.txt").read_text()
    assert len(speck_frame.strip().split("\n")) == 3
