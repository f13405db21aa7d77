"""The Auto-label canvas events on the server (app.workflows.canvas_autolabel), no browser."""
from __future__ import annotations

import numpy as np
import pytest

from app.workflows import autolabel_session as al
from app.workflows import canvas_autolabel as cal
from pipeline import mask_edit as me


@pytest.fixture
def st(ctx, scenes):
    """Three uploads labeled by the test-double detector (red, green, blue on each)."""
    images, bad = al.load_uploads([str(p) for p in scenes])
    assert not bad
    assert not al.label_images(ctx.labeler(), images, ["red", "green", "blue"], confidence=0.0)
    assert [len(r.det) for r in images] == [3, 3, 3]
    return {"images": images, "current": 0, "corner": None, "key": None}


CLASSES = ["red", "green", "blue"]


def run(ctx, st, events, keep=None, cls="", classes=CLASSES):
    return cal.autolabel_events(ctx, st, events, keep, classes, cls, "grabcut", user="ann")


def _index_of(st, label):
    r = st["images"][st["current"]]
    return r.det.labels.index(label)


def test_view_lists_objects_dropped_and_position(ctx, st):
    keys = al.keys(st["images"])
    v = cal.autolabel_view(st, set(keys) - {keys[1]}, CLASSES, "red")
    assert (v["index"], v["count"]) == (0, 3) and v["image"].startswith("data:image/jpeg")
    assert [o["dropped"] for o in v["objects"]] == [False, True, False]
    r = st["images"][0]
    assert np.array_equal(me.decode_mask(v["objects"][0]["mask"], r.height, r.width), r.det.mask[0])
    assert "image" not in cal.autolabel_view(st, None, CLASSES)  # sent once per image


def test_click_selects_and_key_relabels_the_selected_object(ctx, st):
    r = st["images"][0]
    i = _index_of(st, "red")
    x0, y0, x1, y1 = r.det.xyxy[i]
    note, keep, cls = run(ctx, st, [{"type": "point", "x": float(x0 + x1) / 2, "y": float(y0 + y1) / 2, "label": 1}])
    assert st["selected"] == i and "Selected" in note
    note, keep, cls = run(ctx, st, [{"type": "class", "index": 2}])
    assert r.det.labels[i] == "blue" and cls == "blue" and "now **blue**" in note
    run(ctx, st, [{"type": "point", "x": 2, "y": 2, "label": 1}])  # the background: nothing selected
    assert st["selected"] is None
    with pytest.raises(ValueError, match=r"class key 4: expected 1\.\.3"):
        run(ctx, st, [{"type": "class", "index": 3}])


def test_delete_keeps_the_keep_list_in_step_and_undo_brings_it_back(ctx, st):
    keys = al.keys(st["images"])
    dropped = keys[2]  # image 0, object #3 unticked
    keep = [k for k in keys if k != dropped]
    note, keep, _ = run(ctx, st, [{"type": "delete", "index": 0}], keep=keep)
    name = st["images"][0].name
    assert len(st["images"][0].det) == 2 and "Deleted object #1" in note
    assert f"{name}#2" not in keep and f"{name}#1" in keep  # the unticked one moved up to #2, still unticked
    assert len(keep) == 9 - 1 - 1
    run(ctx, st, [{"type": "undo"}])
    assert len(st["images"][0].det) == 3
    run(ctx, st, [{"type": "redo"}])
    assert len(st["images"][0].det) == 2
    with pytest.raises(ValueError, match="click one first"):
        run(ctx, st, [{"type": "delete"}])


def test_hand_box_needs_a_class_and_is_manual(ctx, st):
    with pytest.raises(ValueError, match="Type the class of the box"):
        run(ctx, st, [{"type": "box", "box": [40, 40, 125, 125]}])
    assert len(st["images"][0].det) == 3  # nothing half-written
    note, keep, _ = run(ctx, st, [{"type": "box", "box": [40, 40, 125, 125]}], cls="ball")
    d = st["images"][0].det
    assert len(d) == 4 and d.labels[3] == "ball" and d.data["detection_model"][3] == "manual"
    assert d.data["created_by"][3] == "ann" and d.mask[3].sum() > 1000 and st["selected"] == 3
    assert f"{st['images'][0].name}#4" in keep


def test_brush_and_polygon_edit_the_selected_mask_and_its_box(ctx, st):
    r = st["images"][0]
    i = _index_of(st, "green")
    st["selected"] = i
    before = r.det.mask[i].copy()
    x1 = float(r.det.xyxy[i][2])
    run(ctx, st, [{"type": "brush", "points": [[x1 + 10, 50]], "radius": 4}])
    assert r.det.mask[i][50, int(x1 + 10)] and r.det.xyxy[i][2] >= x1 + 13
    ring = me.mask_to_polygons(r.det.mask[i])[0]
    run(ctx, st, [{"type": "polygon", "old": ring, "points": ring[:3]}])  # cut down to a triangle
    assert r.det.mask[i].sum() < before.sum()
    run(ctx, st, [{"type": "undo"}, {"type": "undo"}])
    assert np.array_equal(r.det.mask[i], before)
    with pytest.raises(ValueError, match="empty mask"):
        run(ctx, st, [{"type": "erase", "points": [[0, 0], [400, 300]], "radius": 400}])


def test_nav_moves_between_images_and_clears_the_selection(ctx, st):
    st["selected"] = 1
    run(ctx, st, [{"type": "nav", "delta": 1}])
    assert st["current"] == 1 and st["selected"] is None
    run(ctx, st, [{"type": "nav", "delta": 1}, {"type": "nav", "delta": 1}])
    assert st["current"] == 2  # clamped at the last image
    run(ctx, st, [{"type": "nav", "delta": -1}])
    assert cal.autolabel_view(st, None, CLASSES)["index"] == 1


def test_a_stroke_starting_on_an_object_edits_it_without_a_click_first(ctx, st):
    r = st["images"][0]
    i = _index_of(st, "green")
    x0, y0, x1, y1 = (float(v) for v in r.det.xyxy[i])
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    run(ctx, st, [{"type": "erase", "index": None, "points": [[cx, cy], [cx + 5, cy]], "radius": 3}])
    assert st["selected"] == i and not r.det.mask[i][int(cy), int(cx)]
    st["selected"] = None
    with pytest.raises(ValueError, match="click one first"):
        run(ctx, st, [{"type": "brush", "index": None, "points": [[1, 1]], "radius": 3}])  # on the background
