"""Export a built dataset as YOLO (detect/segment) or COCO (detect/segment), streaming.

Layouts written under ``out_dir``:

* YOLO: ``images/{train,val,test}/<id>.<ext>``, ``labels/{train,val,test}/<id>.txt`` (one per
  image; normalised ``class cx cy w h``, or ``class x1 y1 ...`` polygons for segment),
  ``data.yaml`` (``path``, splits, ``names`` in the dataset's class order).
* COCO: ``images/{split}/<id>.<ext>``, ``annotations/instances_{split}.json`` (one per split;
  ``bbox`` = ``[x, y, w, h]`` absolute pixels, category ids = the registry's category ids, ≥ 1
  and stable across exports of the same registry; segmentation polygons when exact, else RLE;
  ``area`` from the mask; ``iscrowd`` 0).
* Both: ``manifest.json`` (counts per split and class, the filter, the seed, the registry state
  the export came from, what was skipped), and optionally ``<out_dir>.zip``.

Image files are named by their registry id (``src_…`` or ``frm_…`` + the original suffix), never
by a class or user file name, and hard-linked from the registry's media folder when on the
same filesystem (copied otherwise).

Objects are read with one ordered SQL cursor and written as they come: memory does not grow
with the number of objects. Masks are read as the stored compressed RLE and only their bounding
box is decoded (:func:`registry.formats.mask_geometry.rle_decode_crop`).

Mask policies: see :mod:`registry.formats.mask_geometry` (COCO: polygons when the rasterised
polygon reproduces the mask bit for bit, RLE otherwise; YOLO: one polygon per object, parts and
holes joined by zero-width bridges). Objects without a mask in a segment export are written as
their box's rectangle (counted as ``box_as_polygon`` in the manifest).
"""
from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from registry.datasets import SPLITS, get_dataset
from registry.formats import mask_geometry as geom
from registry.formats.coco import CocoWriter, RawJson, quarter_polygon_json
from registry.formats.yolo import IMAGE_SUFFIXES, box_line, polygon_line, write_data_yaml
from registry.ids import utc_now

__all__ = ["export_dataset", "FORMATS", "TASKS"]

FORMATS = ("yolo", "coco")
TASKS = ("detect", "segment")

#: Objects whose masks are decoded together (memory: their crops, plus a few bytes per RLE run).
_CHUNK_OBJECTS = 512

_QUERY = """
SELECT d.split, o.source_id, o.frame_id, o.object_id, o.category_id,
       o.bbox_x, o.bbox_y, o.bbox_w, o.bbox_h, o.mask_counts, o.mask_h, o.mask_w, o.area,
       s.file_path, s.width, s.height, f.file_path
FROM dataset_objects d
JOIN objects o ON o.object_id = d.object_id
JOIN sources s ON s.source_id = o.source_id
LEFT JOIN frames f ON f.frame_id = o.frame_id
WHERE d.dataset_id = ?
ORDER BY d.split, o.source_id, o.frame_id, o.object_id
"""


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def _place_image(src: Path, dst: Path, stats: Counter) -> None:
    """Hard-links ``src`` to ``dst`` (same filesystem), else copies it."""
    try:
        os.link(src, dst)
        stats["linked"] += 1
    except OSError:
        shutil.copyfile(src, dst)
        stats["copied"] += 1


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise ValueError(
                f"output folder {out_dir} is not empty; choose an empty or new folder "
                "(or pass overwrite=True / --overwrite to replace an earlier export)"
            )
        if not (out_dir / "manifest.json").is_file():
            raise ValueError(
                f"refusing to overwrite {out_dir}: it holds no manifest.json, so it is not an "
                "earlier export; choose an empty or new folder"
            )
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


class _Image:
    """The rows of one exported image (consecutive in the cursor)."""

    __slots__ = ("split", "key", "path", "width", "height", "rows")

    def __init__(self, split: str, key: str, path: str | None, width: int | None, height: int | None):
        self.split, self.key, self.path = split, key, path
        self.width, self.height = width, height
        self.rows: list[tuple] = []


def _iter_images(cursor) -> Any:
    current: _Image | None = None
    for row in cursor:
        split, source_id, frame_id, *_rest = row
        key = frame_id or source_id
        if current is None or current.key != key or current.split != split:
            if current is not None:
                yield current
            src_path, sw, sh, frame_path = row[13], row[14], row[15], row[16]
            path = frame_path if frame_id else src_path
            mh, mw = row[10], row[11]
            current = _Image(split, key, path, sw or mw, sh or mh)
        current.rows.append(row)
    if current is not None:
        yield current


def export_dataset(
    reg: Any,
    dataset_id: str,
    out_dir: str | Path,
    fmt: str,
    task: str = "detect",
    *,
    zip: bool = False,  # noqa: A002 - the CLI flag's name
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Exports one dataset version to a folder.

    Args:
        reg: the :class:`registry.facade.Registry`.
        dataset_id: a dataset id or name (latest version).
        out_dir: the output folder (created; must be empty unless ``overwrite`` and it holds an
            earlier export's manifest).
        fmt: ``"yolo"`` or ``"coco"``.
        task: ``"detect"`` or ``"segment"``.
        zip: also write ``<out_dir>.zip``.
        progress: called as ``progress(objects_done, objects_total)`` every 1000 objects.

    Returns:
        ``{"out_dir", "format", "task", "dataset_id", "name", "version", "files": {...},
        "counts": {split: {"images", "objects", "classes"}}, "skipped": [...], "zip": path|None,
        "manifest": path, "polygons": n, "rle": n, "box_as_polygon": n}``.

    Raises:
        ValueError: unknown format/task/dataset, non-empty output folder, or no objects.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {FORMATS}")
    if task not in TASKS:
        raise ValueError(f"unknown export task {task!r}; expected one of {TASKS}")
    ds = get_dataset(reg, dataset_id)
    dataset_id = ds["dataset_id"]
    mapping = (ds.get("category_mapping") or {}).get("categories") or []
    if not mapping:
        raise ValueError(f"dataset {ds['name']!r} has no categories (no objects); rebuild it")
    yolo_id = {int(c["category_id"]): int(c["yolo_id"]) for c in mapping}
    name_of = {int(c["category_id"]): c["name"] for c in mapping}
    out_dir = Path(out_dir).expanduser().resolve()
    _prepare_out_dir(out_dir, overwrite)

    total = int(reg.db.execute(
        "SELECT count(*) FROM dataset_objects WHERE dataset_id = ?", [dataset_id]).fetchone()[0])
    state = reg.db.execute("SELECT count(*), max(updated_at) FROM objects").fetchone()
    split_objects = dict(reg.db.execute(
        "SELECT split, count(*) FROM dataset_objects WHERE dataset_id = ? GROUP BY split",
        [dataset_id]).fetchall())
    present = [s for s in SPLITS if split_objects.get(s)]
    for split in present:
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        if fmt == "yolo":
            (out_dir / "labels" / split).mkdir(parents=True, exist_ok=True)

    coco_writers: dict[str, CocoWriter] = {}
    if fmt == "coco":
        cats = [{"id": int(c["coco_id"]), "name": c["name"], "supercategory": c.get("supercategory") or ""}
                for c in mapping]
        info = {"description": f"AgenticLabeling dataset {ds['name']} v{ds['version']}",
                "version": str(ds["version"]), "date_created": utc_now()}
        for split in present:
            coco_writers[split] = CocoWriter(
                out_dir / "annotations" / f"instances_{split}.json", categories=cats, info=info)

    counts = {s: {"images": 0, "objects": 0, "classes": Counter()} for s in SPLITS}
    stats: Counter = Counter()
    skipped: list[dict] = []
    done = 0
    cursor = reg.db.execute(_QUERY, [dataset_id])
    try:
        for chunk in _chunks(_iter_images(cursor), _CHUNK_OBJECTS):
            placed: list[tuple[_Image, str]] = []
            for image in chunk:
                done += len(image.rows)
                if progress and done // 1000 != (done - len(image.rows)) // 1000:
                    progress(done, total)
                src = Path(image.path) if image.path else None
                if src is not None and not src.is_absolute():
                    src = Path(reg.data_dir) / src  # copied media are stored relative to the data dir
                if src is None or not src.is_file():
                    skipped.append({"image": image.key, "objects": len(image.rows),
                                    "reason": f"image file missing: {image.path}"})
                    continue
                if not image.width or not image.height:
                    image.width, image.height = _image_size(src)
                suffix = src.suffix.lower() if src.suffix.lower() in IMAGE_SUFFIXES else ".jpg"
                file_name = f"{image.key}{suffix}"
                _place_image(src, out_dir / "images" / image.split / file_name, stats)
                c = counts[image.split]
                c["images"] += 1
                c["objects"] += len(image.rows)
                for row in image.rows:
                    c["classes"][name_of.get(int(row[4]), str(row[4]))] += 1
                placed.append((image, file_name))
            # Masks of the whole chunk at once: batched RLE decoding amortises numpy's per-call
            # overhead over hundreds of objects (see mask_geometry.rle_crops_to_foreground).
            geometry = _chunk_geometry([row for image, _ in placed for row in image.rows], fmt, task)
            k = 0
            for image, file_name in placed:
                n = len(image.rows)
                if fmt == "yolo":
                    # (`zip` is this function's flag, not the builtin: index the geometry.)
                    lines = [_yolo_line(row, geometry[k + j], yolo_id, image.width, image.height, task, stats)
                             for j, row in enumerate(image.rows)]
                    label = out_dir / "labels" / image.split / f"{image.key}.txt"
                    label.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
                else:
                    writer = coco_writers[image.split]
                    image_id = writer.add_image(file_name, width=image.width, height=image.height,
                                                extra={"agl_id": image.key})
                    for j, row in enumerate(image.rows):
                        _coco_annotation(writer, image_id, row, geometry[k + j], task, stats)
                k += n
    except BaseException:
        for w in coco_writers.values():
            w.abort()
        raise
    files = {}
    for split, w in coco_writers.items():
        files[split] = w.close()["path"]
    if fmt == "yolo":
        names = [c["name"] for c in sorted(mapping, key=lambda c: int(c["yolo_id"]))]
        splits = {s: f"images/{s}" for s in present}
        if "val" not in splits:
            # ultralytics requires a val entry; with too few images for a val split, validate
            # on train rather than fail (recorded in the manifest).
            splits["val"] = "images/train"
            stats["val_is_train"] = 1
        files["data.yaml"] = str(write_data_yaml(out_dir / "data.yaml", out_dir, names,
                                                 {k: splits[k] for k in ("train", "val", "test") if k in splits}))
    if progress:
        progress(total, total)

    result_counts = {s: {"images": c["images"], "objects": c["objects"],
                         "classes": dict(sorted(c["classes"].items()))} for s, c in counts.items()}
    manifest = {
        "format": fmt,
        "task": task,
        "dataset": {"dataset_id": dataset_id, "name": ds["name"], "version": ds["version"]},
        "filter": ds.get("filter_config"),
        "split_config": ds.get("split_config"),
        "seed": (ds.get("split_config") or {}).get("seed"),
        "categories": mapping,
        "counts": result_counts,
        "registry_state": {"object_count": int(state[0]), "max_updated_at": state[1]},
        "exported_at": utc_now(),
        "images": {"linked": stats["linked"], "copied": stats["copied"]},
        "segmentation": {"polygon": stats["polygon"], "rle": stats["rle"],
                         "box_as_polygon": stats["box_as_polygon"]},
        "val_is_train": bool(stats["val_is_train"]),
        "skipped": skipped,
    }
    manifest_path = out_dir / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    zip_path = None
    if zip:
        zip_path = shutil.make_archive(str(out_dir), "zip", root_dir=out_dir)
    with reg.transaction():
        reg.db.execute(
            "UPDATE datasets SET format = ?, export_path = ?, exported_at = ? WHERE dataset_id = ?",
            [fmt, str(zip_path or out_dir), manifest["exported_at"], dataset_id],
        )
    return {
        "out_dir": str(out_dir),
        "format": fmt,
        "task": task,
        "dataset_id": dataset_id,
        "name": ds["name"],
        "version": ds["version"],
        "files": files,
        "counts": result_counts,
        "skipped": skipped,
        "zip": zip_path,
        "manifest": str(manifest_path),
        "polygons": stats["polygon"],
        "rle": stats["rle"],
        "box_as_polygon": stats["box_as_polygon"],
    }


def _row_rle(row: tuple) -> dict | None:
    counts, mh, mw = row[9], row[10], row[11]
    if counts is None:
        return None
    return {"size": [int(mh), int(mw)], "counts": counts}


def _chunks(images, min_objects: int):
    """Groups consecutive images into lists of at least ``min_objects`` objects (the last may be smaller)."""
    chunk: list[_Image] = []
    n = 0
    for image in images:
        chunk.append(image)
        n += len(image.rows)
        if n >= min_objects:
            yield chunk
            chunk, n = [], 0
    if chunk:
        yield chunk


class _Geometry:
    """What one object's annotation needs from its mask (None fields when it has no mask)."""

    __slots__ = ("area", "crop", "rle")

    def __init__(self, area: float | None, crop: tuple[np.ndarray, int, int] | None, rle: dict | None):
        self.area, self.crop, self.rle = area, crop, rle


_NO_MASK = _Geometry(None, None, None)


def _chunk_geometry(rows: list[tuple], fmt: str, task: str) -> list[_Geometry]:
    """Mask areas (COCO) and foreground crops (segment tasks) of many rows, batched."""
    with_mask = [i for i, row in enumerate(rows) if row[9] is not None]
    # Normalised once (bytes counts, int size); the geometry functions then take them as is.
    rles = [geom.normalize_rle(_row_rle(rows[i])) for i in with_mask]
    areas = geom.rle_areas(rles).tolist() if fmt == "coco" else [None] * len(rles)
    crops = geom.rle_crops_to_foreground(rles) if task == "segment" else [None] * len(rles)
    out = [_NO_MASK] * len(rows)
    for i, rle, area, crop in zip(with_mask, rles, areas, crops, strict=True):
        out[i] = _Geometry(area, crop, rle)
    return out


def _box_polygon(x: float, y: float, w: float, h: float) -> np.ndarray:
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)


def _yolo_line(row: tuple, geo: _Geometry, yolo_id: dict[int, int], width: int, height: int,
               task: str, stats: Counter) -> str:
    cls = yolo_id[int(row[4])]
    box = (row[5], row[6], row[7], row[8])
    if task == "detect":
        return box_line(cls, box, width, height)
    points = geom.yolo_polygon_from_crop(*geo.crop) if geo.crop is not None else np.zeros((0, 2))
    if len(points) < 3:
        stats["box_as_polygon"] += 1
        points = _box_polygon(*box)
    else:
        stats["polygon"] += 1
    return polygon_line(cls, points, width, height)


def _coco_annotation(writer: CocoWriter, image_id: int, row: tuple, geo: _Geometry, task: str,
                     stats: Counter) -> None:
    box = [float(row[5]), float(row[6]), float(row[7]), float(row[8])]
    area = float(row[12]) if row[12] is not None else box[2] * box[3]
    segmentation: list | dict | RawJson = []
    if geo.area is not None:
        area = float(geo.area)
    if task == "segment":
        if geo.crop is not None and area > 0:
            crop, x0, y0 = geo.crop
            q = geom.coco_polygon_quarters(crop, rle=geo.rle, x0=x0, y0=y0)
            if q is not None:
                # Quarter pixels: crop frame -> absolute, then table-formatted JSON.
                segmentation = quarter_polygon_json([q + np.array([4 * x0, 4 * y0])])
                stats["polygon"] += 1
            else:
                segmentation = {"size": geo.rle["size"], "counts": geo.rle["counts"].decode("ascii")}
                stats["rle"] += 1
        else:
            segmentation = [_box_polygon(*box).ravel().tolist()]
            stats["box_as_polygon"] += 1
    writer.add_annotation(image_id, int(row[4]), box, area=area, segmentation=segmentation,
                          extra={"agl_object_id": row[3]})
