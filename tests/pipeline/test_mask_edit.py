"""Mask hand edits (brush, eraser, polygon) and the canvas wire format."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline import mask_edit as me


def _blob(h: int = 40, w: int = 50) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[10:30, 12:40] = True
    return m


def test_rle_round_trip_keeps_every_pixel():
    rng = np.random.default_rng(0)
    m = rng.random((23, 31)) > 0.6
    m[0, 0] = True  # a mask starting with foreground gets a leading 0 run
    data = me.encode_mask(m)
    assert data["bbox"][:2] == [0, 0]
    assert data["rle"][0] == 0
    assert sum(data["rle"]) == data["bbox"][2] * data["bbox"][3]
    assert np.array_equal(me.decode_mask(data, 23, 31), m)


def test_rle_of_a_box_is_its_crop():
    data = me.encode_mask(_blob())
    assert data == {"bbox": [12, 10, 28, 20], "rle": [0, 28 * 20]}
    assert me.encode_mask(np.zeros((5, 5), bool)) == {"bbox": [0, 0, 0, 0], "rle": []}


def test_rle_with_wrong_total_is_refused():
    with pytest.raises(ValueError, match="runs summing to"):
        me.decode_mask({"bbox": [0, 0, 2, 2], "rle": [1, 1]}, 4, 4)


def test_brush_adds_a_disc_and_a_line():
    m = np.zeros((40, 60), bool)
    out = me.paint_stroke(m, [(10, 20), (50, 20)], 3)
    assert not m.any()  # the input is not changed
    assert out[20, 10] and out[20, 30] and out[20, 50] and out[17, 30]
    assert not out[10, 30] and not out[20, 55]
    assert np.nonzero(out[:, 30])[0].tolist() == list(range(17, 24))  # 2 * 3 + 1 px wide
    assert np.nonzero(out[20])[0][[0, -1]].tolist() == [7, 53]  # round caps of radius 3


def test_eraser_removes_only_under_the_stroke():
    m = _blob()
    out = me.paint_stroke(m, [(25, 20)], 4, erase=True)
    assert not out[20, 25] and out[12, 14]
    assert 40 < m.sum() - out.sum() < 70  # a disc of radius 4: ~pi * 4.5^2 px


def test_brush_refuses_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        me.paint_stroke(_blob(), [], 3)
    with pytest.raises(ValueError, match="radius"):
        me.paint_stroke(_blob(), [(1, 1)], 0)


def test_polygons_outline_the_parts_biggest_first():
    m = _blob()
    m[2:6, 2:6] = True
    rings = me.mask_to_polygons(m)
    assert len(rings) == 2
    xs = [p[0] for p in rings[0]]
    ys = [p[1] for p in rings[0]]
    assert (min(xs), max(xs), min(ys), max(ys)) == (12, 39, 10, 29)
    refilled = me.fill_polygon(rings[0], *m.shape)
    assert np.array_equal(refilled, _blob())


def test_dragging_a_vertex_moves_the_outline_and_keeps_the_rest():
    m = _blob()
    m[2:6, 2:6] = True
    ring = me.mask_to_polygons(m)[0]
    corner = max(range(len(ring)), key=lambda i: ring[i][0] + ring[i][1])  # bottom-right (39, 29)
    new = [list(p) for p in ring]
    new[corner] = [48, 38]
    out = me.replace_polygon(m, ring, new)
    assert out[36, 46] and out[2, 2]  # grown towards the new vertex; the small part untouched
    assert out.sum() > m.sum()
    assert not out[5, 45]


def test_polygon_edit_keeps_holes():
    m = _blob()
    m[18:22, 20:24] = False  # a hole
    ring = me.mask_to_polygons(m)[0]
    out = me.replace_polygon(m, ring, ring)
    assert np.array_equal(out, m)


def test_polygon_with_two_vertices_is_refused():
    with pytest.raises(ValueError, match="at least 3 vertices"):
        me.replace_polygon(_blob(), [[12, 10], [39, 10], [39, 29]], [[12, 10], [39, 10]])


def test_bbox_of_mask():
    assert me.bbox_xyxy(_blob()) == (12.0, 10.0, 40.0, 30.0)
    assert me.bbox_xyxy(np.zeros((3, 3), bool)) is None
