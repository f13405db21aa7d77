"""Import a COCO detection/segmentation file (polygons, compressed or uncompressed RLE).

Conventions read: ``bbox`` = ``[x, y, w, h]`` absolute pixels; polygons flattened absolute
(x, y); RLE ``{"size": [H, W], "counts": str | list}`` (a list = uncompressed, column-major).
Each image's file is looked up as ``<images_dir>/<file_name>`` (default: the JSON's folder,
then ``<json folder>/images``). Categories are matched by name (created when missing, with the
file's ``supercategory``). Scores (``score``) become confidences.

Whole-file problems (not JSON, not COCO-shaped) raise ``ValueError`` before anything is
written. Item problems are reported one by one and skipped: missing or corrupt image files,
image sizes that disagree with the file, annotations pointing at unknown images or
categories, boxes outside the image, degenerate polygons, RLE of the wrong size.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from registry.facade import ObjectIn
from registry.formats import mask_geometry as geom
from registry.formats.coco import read_coco
from registry.importers.common import (
    ImportReport,
    PendingImage,
    check_box_xyxy,
    check_image,
    register_batches,
)

__all__ = ["import_coco"]


def _find_image(file_name: str, dirs: list[Path]) -> Path:
    for d in dirs:
        p = d / file_name
        if p.is_file():
            return p
    return dirs[0] / file_name


def _annotation_mask_rle(ann: dict, width: int, height: int) -> dict | None:
    """Compressed RLE (str counts) of an annotation's segmentation, or None when it has none.

    Raises:
        ValueError: degenerate polygons or an RLE whose size is not the image's.
    """
    seg = ann.get("segmentation")
    if seg in (None, [], {}):
        return None
    if isinstance(seg, dict):
        size = [int(v) for v in seg.get("size", [])]
        if size != [height, width]:
            raise ValueError(f"RLE size {size} does not match the image size [{height}, {width}]")
        rle = geom.normalize_rle(seg)
    elif isinstance(seg, list):
        polys = []
        for poly in seg:
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
                raise ValueError(
                    f"degenerate polygon: expected an even number >= 6 of coordinates, got "
                    f"{len(poly) if isinstance(poly, list) else type(poly).__name__}"
                )
            pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
            if not np.all(np.isfinite(pts)) or geom.polygon_area(pts) <= 0:
                raise ValueError("degenerate polygon: zero area")
            polys.append([float(v) for v in poly])
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    else:
        raise ValueError(f"expected segmentation as polygons or RLE, got {type(seg).__name__}")
    if mask_utils.area(rle) == 0:
        raise ValueError("segmentation covers no pixel of the image")
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def import_coco(
    reg: Any,
    json_path: str | Path,
    *,
    images_dir: str | Path | None = None,
    validated: bool = False,
    project: str | None = None,
    batch_size: int = 100,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Imports a COCO instances file into the registry.

    Args:
        reg: the :class:`registry.facade.Registry`.
        json_path: the COCO JSON file.
        images_dir: folder of the images (default: the JSON's folder, then its ``images/``).
        validated: mark imported objects ``approved`` (by ``"import"``); else ``pending``.
        project: project id for the sources and objects.
        batch_size: images per transaction.
        progress: called with the number of images registered so far after each batch.

    Returns:
        An :class:`ImportReport` (``.summary()`` for people, ``.to_dict()`` for JSON).

    Raises:
        ValueError: the file is not valid JSON / not COCO-shaped (nothing imported).
        FileNotFoundError: no such file.
    """
    json_path = Path(json_path)
    data = read_coco(json_path)
    dirs = [Path(images_dir)] if images_dir else [json_path.parent, json_path.parent / "images"]
    report = ImportReport(format="coco", path=str(json_path))
    report.images_seen = len(data.images)
    report.annotations_seen = len(data.annotations)
    status = "approved" if validated else "pending"

    by_image: dict[Any, list[dict]] = defaultdict(list)
    for k, ann in enumerate(data.annotations):
        item = f"annotation {ann.get('id', f'#{k}')}" if isinstance(ann, dict) else f"annotation #{k}"
        if not isinstance(ann, dict):
            report.error(item, f"expected an object, got {type(ann).__name__}")
            continue
        if ann.get("image_id") not in data.images:
            report.error(item, f"refers to unknown image id {ann.get('image_id')!r}")
            continue
        if ann.get("category_id") not in data.categories:
            report.error(item, f"refers to unknown category id {ann.get('category_id')!r}")
            continue
        by_image[ann["image_id"]].append(ann)

    for cat in data.categories.values():
        name = str(cat["name"]).strip()
        if name and reg.get_category(name) is None:
            reg.create_category(name, supercategory=cat.get("supercategory") or None)

    def pending():
        seen_names: dict[str, None] = {}
        for image_id, img in data.images.items():
            item = f"image {image_id} ({img.get('file_name')})"
            path = _find_image(str(img["file_name"]), dirs)
            try:
                width, height = check_image(path)
            except ValueError as exc:
                report.error(item, str(exc))
                for ann in by_image.get(image_id, ()):
                    report.error(f"annotation {ann.get('id')}", f"its image {image_id} was skipped")
                continue
            if (img.get("width"), img.get("height")) not in ((None, None), (width, height)):
                report.error(item, f"the JSON says {img.get('width')}x{img.get('height')} but the file is "
                                   f"{width}x{height}; fix the JSON or the file")
                continue
            objects = []
            for ann in by_image.get(image_id, ()):
                aitem = f"annotation {ann.get('id')} (image {image_id})"
                try:
                    rle = _annotation_mask_rle(ann, width, height)
                    bbox = ann.get("bbox")
                    if bbox is None and rle is not None:
                        bbox = [float(v) for v in mask_utils.toBbox(geom.normalize_rle(rle))]
                    if not isinstance(bbox, list) or len(bbox) != 4:
                        raise ValueError(f"expected bbox [x, y, w, h], got {bbox!r}")
                    x, y, w, h = (float(v) for v in bbox)
                    xyxy = check_box_xyxy(x, y, x + w, y + h, width, height)
                    score = ann.get("score")
                    if score is not None and not 0.0 <= float(score) <= 1.0:
                        raise ValueError(f"expected score in [0, 1], got {score}")
                except (ValueError, TypeError) as exc:
                    report.error(aitem, str(exc))
                    continue
                name = str(data.categories[ann["category_id"]]["name"]).strip()
                seen_names.setdefault(name, None)
                objects.append(ObjectIn(
                    category=name, xyxy=xyxy, mask_rle=rle,
                    confidence=None if score is None else float(score),
                    validation_status=status, validated_by="import" if validated else None,
                    metadata={"import": {"format": "coco", "file": json_path.name,
                                         "annotation_id": ann.get("id"),
                                         **({"iscrowd": 1} if ann.get("iscrowd") else {})}},
                ))
            yield PendingImage(item=item, path=path, width=width, height=height, objects=objects)
        report.categories = list(seen_names)

    register_batches(reg, pending(), report, project=project, batch_size=batch_size, progress=progress)
    return report
