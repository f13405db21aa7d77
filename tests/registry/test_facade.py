"""The registry facade: sources, objects, filters, patches, categories, tracks, search."""
from __future__ import annotations

import time

import numpy as np
import pytest

from registry.facade import ObjectIn, Registry, stable_color
from tests.registry.conftest import box_mask, make_image, unit


def test_register_source_is_idempotent_and_copies(reg, image, tmp_path):
    sid = reg.register_source(image)
    assert sid.startswith("src_")
    assert reg.register_source(image) == sid
    copy = tmp_path / "same-bytes.png"
    copy.write_bytes(image.read_bytes())
    assert reg.register_source(copy) == sid
    src = reg.get_source(sid)
    assert (src["width"], src["height"]) == (64, 48)
    assert src["file_path"].startswith(str(reg.data_dir / "media" / src["content_hash"][:2]))
    assert open(src["file_path"], "rb").read() == image.read_bytes()
    assert reg.find_source_by_hash(src["content_hash"])["source_id"] == sid
    assert reg.count_sources() == 1 and [s["source_id"] for s in reg.list_sources()] == [sid]
    other = reg.register_source(make_image(tmp_path / "b.png", seed=2), copy=False)
    assert reg.get_source(other)["file_path"] == str((tmp_path / "b.png").resolve())
    assert reg.count_sources() == 2


def test_register_objects_roundtrip(reg, image):
    sid = reg.register_source(image)
    mask = box_mask(48, 64, 10, 5, 30, 25)
    emb = unit(8, 0)
    res = reg.register_objects(sid, [
        ObjectIn("Person", (10, 5, 30, 25), mask=mask, confidence=0.8, embedding=emb, detection_model="florence2"),
        ObjectIn("car", (40, 10, 60, 40), confidence=0.3, metadata={"note": "ünïcode"}),
    ], project="p1")
    a, b = res.object_ids
    assert a.startswith("obj_") and b.startswith("obj_") and res.duplicates == []
    o = reg.get_object(a)
    assert o["category"] == "Person" and o["bbox_xywh"] == [10, 5, 20, 20]
    assert o["area"] == 400 and o["has_mask"] and o["has_embedding"] and o["project_id"] == "p1"
    assert o["validation_status"] == "pending" and not o["is_validated"]
    assert np.array_equal(reg.get_mask(a), mask)
    rle = reg.get_mask_rle(a)
    assert rle["size"] == [48, 64] and isinstance(rle["counts"], str)
    assert np.allclose(reg.get_embedding(a), emb)
    ob = reg.get_object(b)
    assert ob["area"] == 20 * 30 and not ob["has_mask"] and ob["metadata"] == {"note": "ünïcode"}
    assert reg.get_mask(b) is None and reg.get_embedding(b) is None
    # the embedding went through the outbox into the index (sync_on_write)
    assert reg.index.ids() == {a}
    assert reg.sync_outbox() == {"synced": 0, "failed": 0, "pending": 0}


def test_category_lookup_by_synonym_case_insensitive_and_stable_colour(reg, image):
    reg.create_category("person", synonyms=["human", "Pedestrian"], supercategory="agent")
    sid = reg.register_source(image)
    ids = reg.register_objects(sid, [
        ObjectIn("HUMAN", (0, 0, 10, 10)), ObjectIn("pedestrian", (20, 20, 30, 30)), ObjectIn("Dog", (40, 0, 50, 10)),
    ]).object_ids
    assert [reg.get_object(i)["category"] for i in ids] == ["person", "person", "Dog"]
    assert reg.get_category("dog")["color"] == stable_color("Dog") == stable_color("dog")
    assert reg.get_category("nope") is None
    cats = {c["name"]: c["object_count"] for c in reg.list_categories()}
    assert cats == {"Dog": 1, "person": 2}
    with pytest.raises(ValueError, match="already"):
        reg.create_category("Person")
    with pytest.raises(ValueError, match="already naming"):
        reg.add_synonyms("dog", ["human"])


def test_dedupe_by_mask_and_box_iou(reg, image):
    sid = reg.register_source(image)
    m = box_mask(48, 64, 10, 10, 30, 30)
    first = reg.register_objects(sid, [ObjectIn("cat", (10, 10, 30, 30), mask=m)]).object_ids[0]
    almost = m.copy()
    almost[10, 10] = False  # IoU 399/400 > 0.9
    res = reg.register_objects(sid, [
        ObjectIn("cat", (10, 10, 30, 30), mask=almost),           # duplicate by mask IoU
        ObjectIn("dog", (10, 10, 30, 30), mask=m),                # other category: kept
        ObjectIn("cat", (40, 10, 60, 30)),                        # elsewhere: kept
        ObjectIn("cat", (40, 10, 60, 30.5)),                      # duplicate of the previous (box IoU)
        ObjectIn("cat", (10, 10, 30, 30), mask=box_mask(48, 64, 10, 10, 20, 30)),  # IoU 0.5: kept
    ])
    ids = res.object_ids
    assert ids[0] is None and ids[1] and ids[2] and ids[3] is None and ids[4]
    assert res.duplicates == [(0, first), (3, ids[2])]
    assert reg.count_objects(source_id=sid) == 4
    again = reg.register_objects(sid, [ObjectIn("cat", (10, 10, 30, 30), mask=m)], dedupe=False)
    assert again.object_ids[0] is not None


def test_list_filter_sort_paginate_count_iter(reg, tmp_path):
    s1 = reg.register_source(make_image(tmp_path / "1.png", seed=1))
    s2 = reg.register_source(make_image(tmp_path / "2.png", seed=2))
    confs = [0.9, 0.1, 0.5, 0.3, 0.7]
    ids1 = reg.register_objects(s1, [ObjectIn("cat", (i * 10, 0, i * 10 + 8, 8), confidence=c) for i, c in enumerate(confs)],
                                project="a").object_ids
    reg.register_objects(s2, [ObjectIn("dog", (0, 0, 8, 8), confidence=0.2), ObjectIn("cat", (20, 0, 28, 8), confidence=None)],
                         project="b")
    reg.update_object(ids1[2], status="approved", validated_by="ann")
    cats = reg.list_objects(category="cat", status="pending", order="confidence_asc")
    assert [o["confidence"] for o in cats] == [None, 0.1, 0.3, 0.7, 0.9]
    assert [o["confidence"] for o in reg.list_objects(category="cat", order="confidence_desc", limit=2)] == [0.9, 0.7]
    assert [o["confidence"] for o in reg.list_objects(category="cat", order="confidence_desc", limit=2, offset=2)] == [0.5, 0.3]
    assert reg.count_objects(category=["cat", "dog"]) == 7
    assert reg.count_objects(project="b") == 2 and reg.count_objects(source_id=s1) == 5
    assert reg.count_objects(min_confidence=0.3, max_confidence=0.7) == 3
    assert reg.count_objects(status="approved") == 1
    assert reg.count_objects(category="unknown-cat") == 0
    newest = reg.list_objects(order="created_desc", limit=1)[0]
    assert newest["source_id"] == s2
    assert reg.count_objects(created_after="2000-01-01T00:00:00Z", created_before="2999-01-01") == 7
    assert reg.count_objects(created_after="2999-01-01") == 0
    streamed = [o["object_id"] for o in reg.iter_objects(batch_size=2)]
    assert len(streamed) == 7 and set(ids1) <= set(streamed)
    assert len(list(reg.iter_objects(batch_size=3, category="cat", order="confidence_asc"))) == 6
    with pytest.raises(ValueError, match="order"):
        reg.list_objects(order="random")
    with pytest.raises(ValueError, match="status"):
        reg.list_objects(status="done")


def test_update_object_validate_relabel_flags_mask(reg, image):
    sid = reg.register_source(image)
    oid = reg.register_objects(sid, [ObjectIn("cat", (0, 0, 20, 20), confidence=0.4, embedding=unit(8, 1))]).object_ids[0]
    before = reg.get_object(oid)
    time.sleep(0.002)
    o = reg.update_object(oid, status="approved", validated_by="ann", quality_score=0.9, is_occluded=True)
    assert o["validation_status"] == "approved" and o["is_validated"] and o["validated_by"] == "ann"
    assert o["validated_at"] and o["quality_score"] == 0.9 and o["is_occluded"] and not o["is_truncated"]
    assert o["updated_at"] > before["updated_at"]  # kept by the trigger
    o = reg.update_object(oid, status="rejected", validated_by="bob")
    assert o["validation_status"] == "rejected" and o["validated_by"] == "bob"
    o = reg.update_object(oid, status="pending")
    assert not o["is_validated"] and o["validated_at"] is None and o["validated_by"] is None
    o = reg.update_object(oid, category="Tiger")
    assert o["category"] == "Tiger"
    o = reg.update_object(oid, mask=box_mask(48, 64, 5, 6, 15, 26))
    assert o["bbox_xywh"] == [5, 6, 10, 20] and o["area"] == 200 and o["has_mask"]
    o = reg.update_object(oid, xyxy=(1, 2, 3, 4), confidence=0.55)
    assert o["bbox_xywh"] == [1, 2, 2, 2] and o["area"] == 200 and o["confidence"] == 0.55
    new_emb = unit(8, 7)
    reg.update_object(oid, embedding=new_emb)
    assert reg.search(new_emb, k=1)[0]["object_id"] == oid
    # relabel reached the index metadata through the outbox
    assert reg.search(new_emb, k=1, category="tiger")[0]["category"] == "Tiger"
    with pytest.raises(ValueError, match="status"):
        reg.update_object(oid, status="ok")
    with pytest.raises(ValueError, match="unknown object"):
        reg.update_object("obj_missing", status="approved")


def test_delete_object_removes_vector(reg, image):
    sid = reg.register_source(image)
    a, b = reg.register_objects(sid, [
        ObjectIn("cat", (0, 0, 10, 10), embedding=unit(8, 1)), ObjectIn("cat", (20, 0, 30, 10), embedding=unit(8, 2)),
    ]).object_ids
    reg.delete_object(a)
    assert reg.index.ids() == {b}
    with pytest.raises(ValueError):
        reg.get_object(a)
    with pytest.raises(ValueError, match="unknown object"):
        reg.delete_object(a)
    assert reg.count_objects() == 1


def test_rename_merge_categories(reg, image):
    sid = reg.register_source(image)
    ids = reg.register_objects(sid, [
        ObjectIn("car", (0, 0, 10, 10), embedding=unit(8, 1)), ObjectIn("auto", (20, 0, 30, 10), embedding=unit(8, 2)),
        ObjectIn("truck", (40, 0, 50, 10)),
    ]).object_ids
    cat = reg.rename_category("car", "Car")
    assert cat["name"] == "Car" and reg.get_category("CAR")["category_id"] == cat["category_id"]
    reg.rename_category("Car", "vehicle")
    assert reg.get_category("car") is None and reg.get_object(ids[0])["category"] == "vehicle"
    reg.add_synonyms("vehicle", ["motorcar"])
    assert reg.get_category("MotorCar")["name"] == "vehicle"
    merged = reg.merge_categories("auto", "vehicle")
    assert "auto" in merged["synonyms"] and reg.get_category("auto")["name"] == "vehicle"
    assert {reg.get_object(i)["category"] for i in ids[:2]} == {"vehicle"}
    assert [c["name"] for c in reg.list_categories()] == ["truck", "vehicle"]
    # the index follows: both vectors are found under the new name
    assert {h["object_id"] for h in reg.search(unit(8, 2), k=5, category="vehicle")} == set(ids[:2])
    with pytest.raises(ValueError, match="already naming"):
        reg.rename_category("truck", "auto")
    with pytest.raises(ValueError, match="unknown category"):
        reg.merge_categories("nothing", "vehicle")


def test_tracks_in_frame_order_with_counts(reg, tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not really a video, but bytes with a hash")
    sid = reg.register_source(video, source_type="video", width=64, height=48, fps=25.0, frame_count=10)
    frames = [reg.add_frame(sid, i, timestamp=i / 25) for i in (7, 2, 5)]
    assert reg.add_frame(sid, 7) == frames[0]
    objs = reg.register_objects(sid, [
        ObjectIn("cat", (0, 0, 10, 10), confidence=0.9, frame_id=frames[0]),
        ObjectIn("cat", (1, 0, 11, 10), confidence=0.5, frame_id=frames[1]),
        ObjectIn("cat", (2, 0, 12, 10), confidence=0.7, frame_id=frames[2]),
    ], dedupe=False).object_ids
    tid = reg.create_track(objs)
    t = reg.get_track(tid)
    assert [o["frame_idx"] for o in t["objects"]] == [2, 5, 7]
    assert t["object_count"] == 3 and t["start_frame_idx"] == 2 and t["end_frame_idx"] == 7
    assert t["avg_confidence"] == pytest.approx(0.7) and t["category"] == "cat"
    reg.delete_object(objs[1])  # the trigger keeps the track in step
    t = reg.get_track(tid)
    assert t["object_count"] == 2 and t["start_frame_idx"] == 5 and t["avg_confidence"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="frame_id"):
        reg.register_objects(sid, [ObjectIn("cat", (0, 0, 5, 5), frame_id="frm_nope")])


def test_search_joins_rows_and_filters(reg, image):
    sid = reg.register_source(image)
    base = unit(8, 0)
    objs = []
    for i in range(6):
        v = base + 0.05 * i * unit(8, 100 + i)
        objs.append(ObjectIn("cat" if i % 2 == 0 else "dog", (i * 10, 0, i * 10 + 8, 8), confidence=0.1 + 0.15 * i, embedding=v))
    ids = reg.register_objects(sid, objs, project="p").object_ids
    hits = reg.search(base, k=3)
    assert [h["object_id"] for h in hits] == ids[:3]
    assert hits[0]["similarity"] == pytest.approx(1.0, abs=1e-5) and hits[0]["similarity"] >= hits[1]["similarity"]
    assert [h["object_id"] for h in reg.search(base, k=3, category="dog")] == [ids[1], ids[3], ids[5]]
    assert [h["object_id"] for h in reg.search(base, k=10, min_confidence=0.5)] == [ids[3], ids[4], ids[5]]
    reg.update_object(ids[4], status="approved")
    assert [h["object_id"] for h in reg.search(base, k=10, status="approved")] == [ids[4]]
    assert reg.search(base, k=10, project="other") == []
    with pytest.raises(ValueError, match="shape"):
        reg.search(np.ones(3, np.float32))


def test_context_manager_and_reopen_keeps_data(data_dir, image):
    with Registry(data_dir, embedding_dim=8, index="exact") as r:
        sid = r.register_source(image)
        oid = r.register_objects(sid, [ObjectIn("cat", (0, 0, 5, 5), embedding=unit(8, 3))]).object_ids[0]
    with Registry(data_dir, embedding_dim=8, index="exact") as r:
        assert r.get_object(oid)["source_id"] == sid
        assert r.rebuild_index() == 1 and r.index.ids() == {oid}
