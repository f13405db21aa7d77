"""Dataset build: filters, deterministic leak-free splits, achieved ratios, versions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from registry.datasets import (
    build_dataset,
    dataset_members,
    get_dataset,
    list_datasets,
    parse_split,
)
from registry.facade import ObjectIn
from tests.registry.export_helpers import CLASSES, open_registry, populate, write_image


@pytest.fixture
def reg(data_dir: Path):
    r = open_registry(data_dir)
    yield r
    r.close()


def _split_of_sources(reg, dataset_id: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for oid, split in dataset_members(reg, dataset_id).items():
        out.setdefault(reg.get_object(oid)["source_id"], set()).add(split)
    return out


def test_split_is_deterministic_per_source_and_reports_ratios(reg, tmp_path):
    populate(reg, tmp_path / "raw", 40)
    a = build_dataset(reg, "d", seed=7)
    b = build_dataset(reg, "d", seed=7)
    c = build_dataset(reg, "d", seed=8)
    assert dataset_members(reg, a["dataset_id"]) == dataset_members(reg, b["dataset_id"])
    assert dataset_members(reg, a["dataset_id"]) != dataset_members(reg, c["dataset_id"])
    by_source = _split_of_sources(reg, a["dataset_id"])
    assert all(len(s) == 1 for s in by_source.values())  # the source is the split unit
    assert a["image_count"] == 40 and a["object_count"] == 120
    assert sum(a["ratios"].values()) == pytest.approx(1.0)
    assert a["ratios"] == pytest.approx({"train": 0.8, "val": 0.1, "test": 0.1}, abs=0.03)
    assert a["splits"]["val"]["classes"] == {n: a["splits"]["val"]["images"] for n in sorted(CLASSES)}


def test_versions_keep_older_membership(reg, tmp_path):
    populate(reg, tmp_path / "raw", 10)
    v1 = build_dataset(reg, "ds", seed=1)
    members_v1 = dataset_members(reg, v1["dataset_id"])
    populate(reg, tmp_path / "raw2", 0)
    extra = reg.register_source(write_image(tmp_path / "extra.png", seed=99))
    reg.register_objects(extra, [ObjectIn(category=CLASSES[0], xyxy=(1, 1, 10, 10))])
    v2 = build_dataset(reg, "ds", seed=2)
    assert (v1["version"], v2["version"]) == (1, 2)
    assert dataset_members(reg, v1["dataset_id"]) == members_v1
    assert v2["object_count"] == v1["object_count"] + 1
    assert get_dataset(reg, "ds")["dataset_id"] == v2["dataset_id"]
    assert get_dataset(reg, "ds", version=1)["dataset_id"] == v1["dataset_id"]
    assert {d["version"] for d in list_datasets(reg)} == {"1", "2"}
    with pytest.raises(ValueError, match="known datasets"):
        get_dataset(reg, "nope")


def test_dry_run_previews_the_same_split_and_stores_nothing(reg, tmp_path):
    populate(reg, tmp_path / "raw", 10)
    preview = build_dataset(reg, "pv", seed=3, dry_run=True)
    assert preview["dataset_id"] is None and preview["version"] == 1
    assert list_datasets(reg) == []
    assert reg.db.execute("SELECT count(*) FROM dataset_objects").fetchone()[0] == 0
    built = build_dataset(reg, "pv", seed=3)
    assert built["version"] == 1
    assert built["splits"] == preview["splits"] and built["ratios"] == preview["ratios"]
    assert build_dataset(reg, "pv", seed=3, dry_run=True)["version"] == 2


def test_filters(reg, tmp_path):
    populate(reg, tmp_path / "raw", 10, statuses=("pending", "approved", "rejected"))
    total = reg.count_objects() - reg.count_objects(status="rejected")
    assert build_dataset(reg, "all")["object_count"] == total  # rejected never exported
    only = build_dataset(reg, "cat", {"categories": [CLASSES[1]]})
    assert set(only["splits"]["train"]["classes"]) == {CLASSES[1]}
    approved = build_dataset(reg, "ok", {"validated_only": True})
    assert approved["object_count"] == reg.count_objects(status="approved")
    conf = build_dataset(reg, "conf", {"min_confidence": 0.7})
    assert conf["object_count"] == reg.count_objects(min_confidence=0.7) - reg.count_objects(
        min_confidence=0.7, status="rejected")
    with pytest.raises(ValueError, match="unknown category"):
        build_dataset(reg, "x", {"categories": ["unicorn"]})
    with pytest.raises(ValueError, match="no objects match"):
        build_dataset(reg, "x", {"min_confidence": 0.999})
    with pytest.raises(ValueError, match="unknown dataset filter keys"):
        build_dataset(reg, "x", {"colour": "red"})


def test_video_frames_tracks_and_near_duplicates_stay_together(reg, tmp_path):
    populate(reg, tmp_path / "raw", 20, embeddings=True)
    # a video: 6 frames, one tracked object per frame
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video, but unique bytes")
    vid = reg.register_source(video, source_type="video", width=64, height=48, frame_count=6, fps=5.0)
    frame_objs = []
    for i in range(6):
        fid = reg.add_frame(vid, i, file_path=str(write_image(tmp_path / f"f{i}.png", seed=500 + i)))
        res = reg.register_objects(vid, [ObjectIn(category=CLASSES[0], xyxy=(2 + i, 2, 20 + i, 20), frame_id=fid)])
        frame_objs += res.registered
    reg.create_track(frame_objs)
    # two distinct images whose objects embed identically: near-duplicates
    emb = np.random.default_rng(5).normal(size=8).astype(np.float32)
    dup_sources = []
    for k in range(2):
        s = reg.register_source(write_image(tmp_path / f"dup{k}.png", seed=700 + k))
        reg.register_objects(s, [ObjectIn(category=CLASSES[1], xyxy=(5, 5, 30, 30), embedding=emb * (1 + k))])
        dup_sources.append(s)
    for seed in range(8):
        built = build_dataset(reg, "leak", seed=seed)
        by_source = _split_of_sources(reg, built["dataset_id"])
        assert len(by_source[vid]) == 1
        assert by_source[dup_sources[0]] == by_source[dup_sources[1]]
        assert built["group_count"] == 20 + 1 + 1
    off = build_dataset(reg, "leak", seed=0, near_duplicate_threshold=None)
    assert off["group_count"] == 23


def test_parse_split():
    assert parse_split("0.8,0.1,0.1") == pytest.approx({"train": 0.8, "val": 0.1, "test": 0.1})
    assert parse_split("8,2") == pytest.approx({"train": 0.8, "val": 0.2, "test": 0.0})
    for bad in ("a,b", "0.5", "0,1,0", "-1,1,1"):
        with pytest.raises(ValueError):
            parse_split(bad)


def test_small_datasets_still_get_val_and_test(reg, tmp_path):
    populate(reg, tmp_path / "raw", 3)
    built = build_dataset(reg, "tiny")
    assert [built["splits"][s]["images"] for s in ("train", "val", "test")] == [1, 1, 1]
