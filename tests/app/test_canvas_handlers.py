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
