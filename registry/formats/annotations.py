"""Annotation text for stored objects, a chunk at a time: COCO segmentation JSON, YOLO lines.

Pure functions of the stored values (no registry access), so the exporter can run them in
worker processes (:func:`serve`) as well as in its own. Coordinates: stored boxes are
``[x, y, w, h]`` absolute pixels; masks compressed COCO RLE of the whole image.
"""
from __future__ import annotations

import json
import pickle
import sys

import numpy as np

from registry.formats import mask_geometry as geom
from registry.formats.coco import RawJson, quarter_polygon_json
from registry.formats.yolo import box_line, polygon_line

__all__ = ["chunk_results", "chunk_geometry", "serve"]

_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class _Geometry:
    """What one object's annotation needs from its mask (None fields when it has no mask)."""

    __slots__ = ("area", "crop", "rle")

    def __init__(self, area: float | None, crop: tuple[np.ndarray, int, int] | None, rle: dict | None):
        self.area, self.crop, self.rle = area, crop, rle


_NO_MASK = _Geometry(None, None, None)


def chunk_geometry(items: list[tuple], fmt: str, task: str) -> list[_Geometry]:
    """Mask areas (COCO) and foreground crops (segment tasks) of many objects, batched.

    ``items`` as in :func:`chunk_results`.
    """
    if fmt != "coco" and task != "segment":
        return [_NO_MASK] * len(items)  # YOLO detect: boxes only
    with_mask = [i for i, item in enumerate(items) if item[0][4] is not None]
    # Normalised once (bytes counts, int size); the geometry functions then take them as is.
    rles = []
    for i in with_mask:
        counts, mh, mw = items[i][0][4:7]
        rles.append(geom.normalize_rle({"size": [int(mh), int(mw)], "counts": counts}))
    areas = geom.rle_areas(rles, _normalized=True).tolist() if fmt == "coco" else [None] * len(rles)
    crops = geom.rle_crops_to_foreground(rles, _normalized=True) if task == "segment" else [None] * len(rles)
    out = [_NO_MASK] * len(items)
    for i, rle, area, crop in zip(with_mask, rles, areas, crops, strict=True):
        out[i] = _Geometry(area, crop, rle)
    return out


def chunk_results(fmt: str, task: str, items: list[tuple]) -> list[tuple]:
    """The annotation text of each object of a chunk; pure, so it runs in a worker as well.

    Args:
        fmt: ``"coco"`` or ``"yolo"``.
        task: ``"detect"`` or ``"segment"``.
        items: per object ``(values, yolo_class, image_width, image_height)`` with ``values``
            = ``(bbox_x, bbox_y, bbox_w, bbox_h, mask_counts, mask_h, mask_w, area)`` as stored
            (bbox xywh absolute pixels; counts compressed RLE or None).

    Returns:
        COCO: ``(area, segmentation RawJson, kind)``; YOLO: ``(label line, kind)``; kind is
        ``"polygon"``, ``"rle"``, ``"box_as_polygon"`` or None (detect), for the manifest.
    """
    geometry = chunk_geometry(items, fmt, task)
    if fmt == "coco":
        return [_coco_result(item[0], geo, task) for item, geo in zip(items, geometry, strict=True)]
    return [_yolo_result(item, geo, task) for item, geo in zip(items, geometry, strict=True)]


def _box_polygon(x: float, y: float, w: float, h: float) -> np.ndarray:
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)


def _yolo_result(item: tuple, geo: _Geometry, task: str) -> tuple[str, str | None]:
    values, cls, width, height = item
    box = values[:4]
    if task == "detect":
        return box_line(cls, box, width, height), None
    points = geom.yolo_polygon_from_crop(*geo.crop) if geo.crop is not None else np.zeros((0, 2))
    if len(points) < 3:
        return polygon_line(cls, _box_polygon(*box), width, height), "box_as_polygon"
    return polygon_line(cls, points, width, height), "polygon"


_EMPTY = RawJson("[]")


def _coco_result(values: tuple, geo: _Geometry, task: str) -> tuple[float, RawJson, str | None]:
    box = [float(v) for v in values[:4]]
    area = float(values[7]) if values[7] is not None else box[2] * box[3]
    if geo.area is not None:
        area = float(geo.area)
    if task != "segment":
        return area, _EMPTY, None
    if geo.crop is not None and area > 0:
        crop, x0, y0 = geo.crop
        q = geom.coco_polygon_quarters(crop, rle=geo.rle, x0=x0, y0=y0)
        if q is not None:
            # Quarter pixels: crop frame -> absolute, then table-formatted JSON.
            return area, quarter_polygon_json([q + np.array([4 * x0, 4 * y0])]), "polygon"
        rle = {"size": geo.rle["size"], "counts": geo.rle["counts"].decode("ascii")}
        return area, RawJson(_DUMPS(rle)), "rle"
    return area, RawJson(_DUMPS([_box_polygon(*box).ravel().tolist()])), "box_as_polygon"


def serve() -> None:
    """Worker loop: reads pickled ``(fmt, task, items)`` from stdin until EOF, writes pickled
    ``(True, results)`` or ``(False, (exception class name, message))`` to stdout (see ``registry.export._WorkerPool``)."""
    import traceback

    import cv2

    cv2.setNumThreads(1)  # one process per CPU already
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            fmt, task, items = pickle.load(stdin)
        except EOFError:
            return
        try:
            reply = (True, chunk_results(fmt, task, items))
        except Exception as exc:  # reported by the parent, which stops the export
            reply = (False, (type(exc).__name__, f"{exc}\n{traceback.format_exc()}"))
        pickle.dump(reply, stdout, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.flush()
