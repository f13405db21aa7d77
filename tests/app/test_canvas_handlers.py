"""The canvas bridge on the server (app.workflows.canvas): views and events, no browser."""
from __future__ import annotations

import json

import numpy as np
import pytest

from app.workflows import canvas as cw
from app.workflows import refine as rf
from pipeline import mask_edit as me


@pytest.fixture
def session(ctx, scenes):
    """A Refine session on the red disc of scene 0 (GrabCut from a box around it)."""
    s = rf.open_image(str(scenes[0]))
    cw.set_box(ctx, s, (40.0, 40.0, 125.0, 125.0), "grabcut")
    assert s.mask is not None and s.mask.sum() > 1000
    return s


def test_view_carries_image_once_mask_runs_and_outline(session):
    v = cw.refine_view(session, ["red", "green"], "hello")
    assert v["canvas"] == "refine" and (v["width"], v["height"]) == (320, 240)
    assert v["image"].startswith("data:image/jpeg;base64,")
    obj = v["objects"][0]
    assert np.array_equal(me.decode_mask(obj["mask"], 240, 320), session.mask)
    assert obj["polygons"] and len(obj["polygons"][0]) >= 3
    assert [c["key"] for c in v["classes"]] == [1, 2] and v["prompt_box"] == [40.0, 40.0, 125.0, 125.0]
    again = cw.refine_view(session, ["red"])
    assert "image" not in again and again["seq"] > v["seq"]  # the page keeps the image it has
    json.dumps(again)  # plain JSON all the way


def test_brush_erase_undo_redo(ctx, session):
    start = session.mask.copy()
    cw.refine_events(ctx, session, [{"type": "brush", "points": [[200, 200], [230, 200]], "radius": 4}], None, [])
    assert session.mask[200, 215] and session.mask.sum() > start.sum()
    cw.refine_events(ctx, session, [{"type": "erase", "points": [[80, 84]], "radius": 6}], None, [])
    assert not session.mask[84, 80]
    cw.refine_events(ctx, session, [{"type": "undo"}, {"type": "undo"}], None, [])
    assert np.array_equal(session.mask, start)
    note = cw.refine_events(ctx, session, [{"type": "redo"}], None, [])
    assert session.mask[200, 215] and session.mask[84, 80] and note == ""
    assert cw.refine_events(ctx, session, [{"type": "redo"}, {"type": "redo"}], None, []) == "Nothing to redo."
    # a new edit drops what could be redone
    cw.refine_events(ctx, session, [{"type": "undo"}, {"type": "erase", "points": [[60, 84]], "radius": 3}], None, [])
    assert not session.future


def test_polygon_edit_moves_the_outline(ctx, session):
    ring = me.mask_to_polygons(session.mask)[0]
    i = max(range(len(ring)), key=lambda k: ring[k][0])  # the right-most vertex
    new = [list(p) for p in ring]
    new[i] = [new[i][0] + 30, new[i][1]]
    before = session.mask.copy()
    cw.refine_events(ctx, session, [{"type": "polygon", "ring": 0, "old": ring, "points": new}], None, [])
    assert session.mask.sum() > before.sum()
    assert session.mask[int(ring[i][1]), int(ring[i][0]) + 15]
    cw.refine_events(ctx, session, [{"type": "undo"}], None, [])
    assert np.array_equal(session.mask, before)


def test_point_delete_and_class_key(ctx, session):
    cw.refine_events(ctx, session, [{"type": "point", "x": 80, "y": 84, "label": 1}], "grabcut", [])
    assert session.points == [(80.0, 84.0)] and session.labels == [1]
    note = cw.refine_events(ctx, session, [{"type": "delete"}], None, [])
    assert session.mask is None and not session.points and "Ctrl+Z" in note
    cw.refine_events(ctx, session, [{"type": "undo"}], None, [])
    assert session.mask is not None and session.points == [(80.0, 84.0)]
    cw.refine_events(ctx, session, [{"type": "class", "index": 1}], None, ["red", "disc"])
    assert session.category == "disc"
    with pytest.raises(ValueError, match=r"class key 3: expected 1\.\.2"):
        cw.refine_events(ctx, session, [{"type": "class", "index": 2}], None, ["red", "disc"])


def test_bad_events_are_named():
    with pytest.raises(ValueError, match="type is one of"):
        cw.parse_events('[{"type": "teleport"}]')
    with pytest.raises(ValueError, match="JSON list"):
        cw.parse_events('"point"')
    assert cw.parse_events("") == []
    with pytest.raises(ValueError, match="at least 2 px"):
        cw._box({"type": "box", "box": [5, 5, 6, 40]}, 100, 100)
    with pytest.raises(ValueError, match="numeric x and y"):
        cw._xy({"type": "point", "x": "left"})


def test_failed_box_keeps_the_previous_state(ctx, session, monkeypatch):
    before = session.mask.copy()
    seg = ctx.segmenter("grabcut")
    monkeypatch.setattr(seg, "predict_boxes", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        cw.refine_events(ctx, session, [{"type": "box", "box": [150, 20, 230, 100]}], "grabcut", [])
    assert np.array_equal(session.mask, before) and session.box == (40.0, 40.0, 125.0, 125.0)
    assert not session.future


def test_a_huge_image_is_sent_smaller_but_keeps_its_pixel_grid(tmp_path, monkeypatch):
    import base64

    import cv2

    monkeypatch.setattr(cw, "MAX_SIDE", 64)
    big = np.full((100, 200, 3), 128, np.uint8)
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), big)
    s = rf.open_image(str(path))
    v = cw.refine_view(s, [])
    jpg = base64.b64decode(v["image"].split(",", 1)[1])
    shown = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
    assert shown.shape[:2] == (32, 64) and (v["width"], v["height"]) == (200, 100)


@pytest.fixture
def three_on_one_image(ctx, scenes):
    """Three stored objects (xyxy boxes) on scene 0, oldest first."""
    from registry.facade import ObjectIn

    reg = ctx.registry
    src = reg.register_source(scenes[0])
    boxes = [(10, 10, 60, 60), (100, 20, 160, 90), (200, 100, 280, 200)]
    objs = [ObjectIn(category="disc", xyxy=b, confidence=0.9, embedding=np.eye(reg.embedding_dim, dtype=np.float32)[i])
            for i, b in enumerate(boxes)]
    return list(reg.register_objects(src, objs, dedupe=False).object_ids)


def test_refine_delete_asks_first_then_deletes_and_opens_the_next(ctx, three_on_one_image, monkeypatch):
    reg = ctx.registry
    a, b, c = three_on_one_image
    clock = [100.0]
    monkeypatch.setattr(cw, "_clock", lambda: clock[0])
    s = rf.open_object(reg, b)
    same, note = cw.refine_delete(reg, s)
    assert same is s and f"Press Delete again (or click Delete object) to delete **{b}**" in note
    assert reg.get_object(b)["object_id"] == b  # nothing deleted by the first Delete
    assert cw.refine_view(s, [])["confirm_delete"] == b
    clock[0] += 2.0
    nxt, note = cw.refine_delete(reg, s)
    with pytest.raises(ValueError):
        reg.get_object(b)
    assert reg.get_embeddings([a, b])[0] == [a] and reg.count_objects() == 2
    hits = reg.search(np.eye(reg.embedding_dim, dtype=np.float32)[1], k=5)
    assert b not in [h["object_id"] for h in hits] and a in [h["object_id"] for h in hits]
    assert nxt.object_id == c and f"Deleted **{b}**" in note and c in note
    assert cw.refine_view(nxt, [])["confirm_delete"] is None
    # the last one of the image: the previous opens; then none is left
    nxt, _ = cw.refine_delete(reg, nxt)
    nxt, _ = cw.refine_delete(reg, nxt)
    assert nxt.object_id == a
    cw.refine_delete(reg, nxt)
    gone, note = cw.refine_delete(reg, nxt)
    assert gone is None and "No other objects on this image" in note and reg.count_objects() == 0


def test_refine_delete_cancelled_or_expired_deletes_nothing(ctx, three_on_one_image, monkeypatch):
    reg = ctx.registry
    a = three_on_one_image[0]
    clock = [100.0]
    monkeypatch.setattr(cw, "_clock", lambda: clock[0])
    s = rf.open_object(reg, a)
    cw.refine_delete(reg, s)
    note = cw.refine_events(ctx, s, [{"type": "cancel"}], None, [])  # Esc
    assert note == f"Delete cancelled: {a} stays." and cw.armed_delete(s) is None
    same, note = cw.refine_delete(reg, s)  # asks again, deletes nothing
    assert same is s and "Press Delete again" in note
    cw.refine_events(ctx, s, [{"type": "class", "index": 0}], None, ["disc"])  # any other action cancels
    assert cw.refine_delete(reg, s)[0] is s
    clock[0] += cw.CONFIRM_S + 1  # too late: the second Delete asks again
    assert cw.refine_delete(reg, s)[0] is s and cw.armed_delete(s) == a
    assert reg.count_objects() == 3 and reg.get_object(a)["category"] == "disc"
    # Shift+Delete (clear) only clears the mask
    s.mask = np.ones((s.height, s.width), bool)
    note = cw.refine_events(ctx, s, [{"type": "delete", "clear": True}], None, [])
    assert s.mask is None and "Mask cleared" in note and reg.count_objects() == 3


def test_refine_delete_on_a_new_image_clears_the_mask(ctx, session):
    same, note = cw.refine_delete(ctx.registry, session)
    assert same is session and session.mask is None and "Nothing stored to delete" in note
