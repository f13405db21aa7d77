"""app/workflows/labeling.py on a real registry with a deterministic labeler (GrabCut masks)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.workflows.labeling import (
    METADATA_KEY,
    iter_image_paths,
    label_file,
    label_paths,
)
from app.workflows.register_detections import register_detections
from pipeline.image_io import ImageLoadError, load_image
from pipeline.mask_ops import mask_iou
from registry.facade import Registry
from tests.app.fake_labeler import BatchingLabeler, FixedShapeLabeler
from tests.app.fakes import colour_components, write_scene

CLASSES = ["red", "green", "blue"]


@pytest.fixture
def reg(data_dir: Path):
    with Registry(data_dir, index="exact", embedding_dim=4, embedding_version="test-4d") as r:
        yield r


def test_register_detections_keeps_only_flagged_rows_and_aligns_ids(reg, tmp_path):
    path = write_scene(tmp_path / "a.png", seed=1)
    image = load_image(path)
    det = FixedShapeLabeler().label(image, CLASSES, confidence=0.0)
    assert len(det) == 3 and det.mask is not None
    det.data["embedding"] = np.eye(3, 4, dtype=np.float32)
    sid = reg.register_source(path)
    res = register_detections(reg, sid, det, project="p1", detection_model="fake", keep=[True, False, True])
    assert len(res.object_ids) == 3 and res.object_ids[1] is None
    assert res.object_ids[0] and res.object_ids[2]
    for row in (0, 2):
        obj = reg.get_object(res.object_ids[row])
        assert obj["category"] == det.labels[row] and obj["detection_model"] == "fake"
        assert obj["has_mask"] and obj["has_embedding"]
        assert obj["confidence"] == pytest.approx(float(det.confidence[row]), abs=1e-6)
        np.testing.assert_allclose(obj["bbox_xywh"][:2], det.xyxy[row][:2], atol=1e-3)
        assert mask_iou(reg.get_mask(res.object_ids[row]), det.mask[row]) == 1.0
        np.testing.assert_allclose(reg.get_embedding(res.object_ids[row]), det.data["embedding"][row], atol=1e-6)
    # Saving again: duplicates are reported against the rows of det.
    again = register_detections(reg, sid, det, keep=[True, True, True])
    assert again.object_ids[0] is None and again.object_ids[2] is None and again.object_ids[1]
    assert sorted(r for r, _ in again.duplicates) == [0, 2]
    with pytest.raises(ValueError, match="one flag per detection"):
        register_detections(reg, sid, det, keep=[True])


def test_label_file_registers_source_copy_and_masks(reg, tmp_path, data_dir):
    path = write_scene(tmp_path / "scene.png", seed=2)
    reg.create_category("red", synonyms=["crimson"])
    seen = {}

    class Spy(FixedShapeLabeler):
        def label(self, image, classes, *, confidence=0.3, synonyms=None, image_key=None):
            seen["synonyms"] = synonyms
            return super().label(image, classes, confidence=confidence, synonyms=synonyms)

    out = label_file(reg, Spy(), path, CLASSES, confidence=0.3, project="proj")
    assert out["objects"] == 3 and out["detections"] == 3  # confidences 0.95, 0.6, 0.35
    assert seen["synonyms"] == {"red": ["crimson"]}
    src = reg.get_source(out["source_id"])
    assert Path(src["file_path"]).is_file() and str(data_dir) in src["file_path"]
    assert src["metadata"][METADATA_KEY]["settings"]["classes"] == sorted(CLASSES)
    truth = {name: m for name, m, _ in colour_components(load_image(path))}
    for obj in reg.list_objects(source_id=out["source_id"]):
        assert obj["project_id"] is not None
        assert mask_iou(reg.get_mask(obj["object_id"]), truth[obj["category"]]) > 0.85
    with pytest.raises(ImageLoadError):
        bad = tmp_path / "bad.jpg"
        bad.write_bytes(b"not an image")
        label_file(reg, FixedShapeLabeler(), bad, CLASSES)
    assert reg.count_sources() == 1  # the bad file was never registered
    with pytest.raises(ValueError, match="at least one class"):
        label_file(reg, FixedShapeLabeler(), path, [" ", ""])


def _folder(tmp_path: Path, n: int = 4) -> Path:
    root = tmp_path / "imgs"
    for i in range(n):
        write_scene(root / ("sub" if i % 2 else "") / f"img{i}.png", seed=10 + i)
    (root / "notes.txt").write_text("not an image, and not an image extension: ignored")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    return root


def test_label_paths_skips_failures_and_resumes(reg, tmp_path):
    root = _folder(tmp_path)
    files = list(iter_image_paths([root]))
    assert len(files) == 5 and all(p.suffix in {".png", ".jpg"} for p in files)
    missing = tmp_path / "nope.png"
    labeler = FixedShapeLabeler()
    report = label_paths(reg, labeler, [root, missing], CLASSES, confidence=0.5, project="p", progress=False)
    assert report.total == 6 and report.labeled == 4 and report.skipped == 0
    failed = dict(report.failed)
    assert set(failed) == {str(root / "broken.jpg"), str(missing)}
    assert "broken.jpg" in failed[str(root / "broken.jpg")] or "image" in failed[str(root / "broken.jpg")].lower()
    assert "no such file" in failed[str(missing)]
    assert "2 of 6 failed:" in report.summary() and "broken.jpg" in report.summary()
    assert reg.count_sources() == 4 and report.objects == reg.count_objects() == 8
    assert reg.doctor()["ok"]
    # Resumable: the same settings label nothing again (the labeler is not even called).
    calls = labeler.calls
    again = label_paths(reg, labeler, [root], CLASSES, confidence=0.5, project="p", progress=False)
    assert again.labeled == 0 and again.skipped == 4 and again.objects == 0 and labeler.calls == calls
    assert len(again.failed) == 1 and reg.count_objects() == 8
    # Other settings (a class fewer): labeled again; objects found again are not duplicated.
    changed = label_paths(reg, labeler, [root], ["red", "green"], confidence=0.5, progress=False)
    assert changed.labeled == 4 and changed.skipped == 0 and labeler.calls == calls + 4
    assert reg.doctor()["ok"]
    fp = {reg.get_source(s)["metadata"][METADATA_KEY]["fingerprint"] for s in changed.source_ids}
    assert len(fp) == 1


def test_label_paths_rejects_empty_classes_before_work(reg, tmp_path):
    root = _folder(tmp_path, 1)
    with pytest.raises(ValueError, match="at least one class"):
        label_paths(reg, FixedShapeLabeler(), [root], [], progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        label_paths(reg, FixedShapeLabeler(), [root], ["red"], confidence=1.5, progress=False)
    assert reg.count_sources() == 0


def _summary(reg: Registry, report) -> tuple:
    """What a run stored, comparable across registries: counts, failed names, each labeled
    source's sha256 in report order, and every object (its source's sha256, class, box)."""
    digest = {s: reg.get_source(s)["content_hash"] for s in report.source_ids}
    objs = sorted((digest[o["source_id"]], o["category"], tuple(o["bbox_xywh"])) for o in reg.list_objects(limit=100))
    return (report.labeled, report.objects, sorted(Path(p).name for p, _ in report.failed),
            [digest[s] for s in report.source_ids], objs)


def test_label_paths_in_batches_equals_one_by_one(tmp_path):
    root = _folder(tmp_path, 5)
    with Registry(tmp_path / "one", index="exact", embedding_dim=4, embedding_version="test-4d") as r1:
        one = _summary(r1, label_paths(r1, BatchingLabeler(), [root], CLASSES, confidence=0.5, progress=False))
    labeler = BatchingLabeler()
    with Registry(tmp_path / "many", index="exact", embedding_dim=4, embedding_version="test-4d") as r3:
        report = label_paths(r3, labeler, [root], CLASSES, confidence=0.5, progress=False, batch_images=3)
        many = _summary(r3, report)
        assert r3.doctor()["ok"]
    # same objects, same file order in source_ids, and the broken file failed on its own
    assert many == one and one[0] == 5 and one[1] == 10 and one[2] == ["broken.jpg"] and len(one[4]) == 10
    assert sum(labeler.batches) == 5 and max(labeler.batches) <= 3 and len(labeler.batches) >= 2


def test_a_second_copy_in_the_same_batch_is_skipped_as_one_by_one_skips_it(tmp_path):
    root = tmp_path / "imgs"
    write_scene(root / "a.png", seed=10)
    write_scene(root / "b.png", seed=11)
    (root / "c_copy_of_a.png").write_bytes((root / "a.png").read_bytes())
    write_scene(root / "d.png", seed=12)
    reports = {}
    for batch in (1, 4):
        labeler = BatchingLabeler()
        with Registry(tmp_path / f"b{batch}", index="exact", embedding_dim=4, embedding_version="test-4d") as reg:
            report = label_paths(reg, labeler, [root], CLASSES, confidence=0.5, progress=False, batch_images=batch)
            reports[batch] = (report.labeled, report.skipped, report.objects, _summary(reg, report)[3])
            assert reg.count_sources() == 3 and reg.count_objects() == report.objects == 6
        assert labeler.calls == 3  # the copy is never labeled
    assert reports[4] == reports[1]
    labeled, skipped, _, digests = reports[4]
    assert (labeled, skipped) == (3, 1) and len(digests) == 4 and digests[0] == digests[2] != digests[1]


def test_a_batch_that_fails_is_labeled_one_by_one_and_only_the_bad_file_fails(tmp_path):
    root = _folder(tmp_path, 4)
    files = [p for p in iter_image_paths([root]) if p.suffix == ".png"]
    poison = tuple(int(v) for v in load_image(files[1])[0, 0])
    labeler = BatchingLabeler(poison=poison)
    with Registry(tmp_path / "d", index="exact", embedding_dim=4, embedding_version="test-4d") as reg:
        report = label_paths(reg, labeler, files, CLASSES, confidence=0.5, progress=False, batch_images=4)
        assert report.labeled == 3 and report.failed == [(str(files[1]), "poisoned image")]
        assert labeler.batches == [4]  # one batch tried, then image by image
        assert report.objects == reg.count_objects() == 6
        # the failed file's source is registered but not marked labeled: the next run tries it again
        labeler.poison = None
        again = label_paths(reg, labeler, files, CLASSES, confidence=0.5, progress=False, batch_images=4)
        assert again.skipped == 3 and again.labeled == 1 and reg.count_objects() == 8
