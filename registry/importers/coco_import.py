"""Import a COCO detection/segmentation file (polygons, compressed or uncompressed RLE).

Conventions read: ``bbox`` = ``[x, y, w, h]`` absolute pixels; polygons flattened absolute
(x, y); RLE ``{"size": [H, W], "counts": str | list}`` (a list = uncompressed, column-major).
Each image's file is looked up as ``<images_dir>/<file_name>`` (default: the JSON's folder,
then ``<json folder>/images``). Categories are matched by name (created when missing, with the
file's ``supercategory``). Scores (``score``) become confidences.

Whole-file problems (not JSON, not COCO-shaped) raise ``ValueError`` before anything is
written. Item problems are reported one by one and skipped: missing or corrupt image files,
images over the pixel limit, image sizes that disagree with the file (sizes are compared after
EXIF orientation), ids that are not integers or are used twice, ``file_name`` values that
leave the images folder (``../``, absolute paths, symlinks pointing elsewhere; allowed only with
``allow_outside_images``), categories whose name the registry refuses (only their annotations
are skipped), annotations pointing at unknown images or categories, boxes outside the image,
degenerate polygons, RLE of the wrong size. Categories are created inside the first batch's
transaction, so a refused or interrupted import leaves none behind.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from registry.categories import check_category_name
from registry.formats import mask_geometry as geom
from registry.formats.coco import is_coco_id, read_coco
from registry.importers.common import (
    ImportReport,
    PendingImage,
    check_box_xyxy,
    check_image,
    register_batches,
)
from registry.records import ObjectIn

__all__ = ["import_coco"]


def _find_image(file_name: str, dirs: list[Path], allow_outside: bool) -> Path:
    """The image file for ``file_name``: the first of ``dirs`` holding it (else the first dir).

    Raises:
        ValueError: the path resolves (``..``, an absolute path, a symlink) outside its images
            folder and ``allow_outside`` is False.
    """
    candidates = [(d, d / file_name) for d in dirs]
    found = next(((d, p) for d, p in candidates if p.is_file()), candidates[0])
    folder, path = found
    if not allow_outside:
        try:
            inside = path.resolve().is_relative_to(folder.resolve())
        except (OSError, RuntimeError):  # a symlink loop
            inside = False
        if not inside:
            raise ValueError(
                f"file_name {file_name[:80]!r} points outside the images folder {folder.name!r}; "
                "put the image inside that folder, or allow it explicitly "
                "(--allow-outside-images / allow_outside_images=True)"
            )
    return path


def _json_size(img: dict) -> tuple[int, int] | None:
    """The image entry's ``(width, height)``, None when both are absent.

    Raises:
        ValueError: one missing, or not positive integers (e.g. strings).
    """
    w, h = img.get("width"), img.get("height")
    if w is None and h is None:
        return None

    def ok(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    if not (ok(w) and ok(h)):
        raise ValueError(
            f"expected width and height as positive integers, got width={w!r:.20} "
            f"({type(w).__name__}) and height={h!r:.20} ({type(h).__name__}); write them as "
            "numbers or leave both out"
        )
    return w, h


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
    allow_outside_images: bool = False,
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
        allow_outside_images: accept ``file_name`` values resolving outside the images folder.

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
    report.images_seen = data.image_entries
    report.annotations_seen = len(data.annotations)
    for item, reason in data.errors:
        report.error(item, reason)
    status = "approved" if validated else "pending"

    # Category names are checked before anything is written; a bad one skips its annotations.
    names: dict[Any, tuple[str, str | None]] = {}
    bad_category: dict[Any, str] = {}
    for cid, cat in data.categories.items():
        try:
            name = check_category_name(cat["name"])
        except ValueError as exc:
            bad_category[cid] = str(exc)
            report.error(f"category {cid!r} ({str(cat['name'])[:60]!r})", f"{exc}; its annotations are skipped")
            continue
        sup = cat.get("supercategory") or None
        try:
            sup = None if sup is None else check_category_name(sup, what="supercategory")
        except ValueError as exc:
            report.error(f"category {cid!r} ({name!r})", f"supercategory ignored: {exc}")
            sup = None
        names[cid] = (name, sup)

    by_image: dict[Any, list[dict]] = defaultdict(list)
    for k, ann in enumerate(data.annotations):
        if not isinstance(ann, dict):
            report.error(f"annotation #{k}", f"expected an object, got {type(ann).__name__}")
            continue
        aid = ann.get("id")
        item = f"annotation {aid!r:.40}" if aid is not None else f"annotation #{k}"
        image_id, category_id = ann.get("image_id"), ann.get("category_id")
        if not is_coco_id(image_id):
            report.error(item, f"expected an integer image_id, got {image_id!r:.40} ({type(image_id).__name__})")
            continue
        if not is_coco_id(category_id):
            report.error(item, f"expected an integer category_id, got {category_id!r:.40} "
                               f"({type(category_id).__name__})")
            continue
        if image_id in data.ambiguous_images:
            report.error(item, f"refers to image id {image_id!r}, which is used twice; skipped")
            continue
        if image_id not in data.images:
            report.error(item, f"refers to unknown image id {image_id!r}")
            continue
        if category_id in bad_category:
            report.error(item, f"its category {category_id!r} was refused: {bad_category[category_id]}")
            continue
        if category_id in data.ambiguous_categories:
            report.error(item, f"refers to category id {category_id!r}, which is used twice; skipped")
            continue
        if category_id not in data.categories:
            report.error(item, f"refers to unknown category id {category_id!r}")
            continue
        by_image[image_id].append(ann)

    def pending():
        seen_names: dict[str, None] = {}
        for image_id, img in data.images.items():
            file_name = img["file_name"]
            item = f"image {image_id!r} ({str(file_name)[:80]!r})"
            try:
                if not isinstance(file_name, str) or not file_name.strip():
                    raise ValueError(f"expected file_name as a non-empty string, got {file_name!r:.40}")
                path = _find_image(file_name, dirs, allow_outside_images)
                width, height = check_image(path)
                declared = _json_size(img)
                if declared is not None and declared != (width, height):
                    raise ValueError(
                        f"the JSON says {declared[0]}x{declared[1]} but the file is {width}x{height} "
                        "(width x height, after EXIF orientation); fix the JSON's width/height or "
                        "the file")
            except ValueError as exc:
                report.error(item, str(exc))
                for ann in by_image.get(image_id, ()):
                    report.error(f"annotation {ann.get('id')!r:.40}", f"its image {image_id!r} was skipped")
                continue
            objects = []
            for ann in by_image.get(image_id, ()):
                aitem = f"annotation {ann.get('id')!r:.40} (image {image_id!r})"
                try:
                    rle = _annotation_mask_rle(ann, width, height)
                    bbox = ann.get("bbox")
                    if bbox is None and rle is not None:
                        bbox = [float(v) for v in mask_utils.toBbox(geom.normalize_rle(rle))]
                    if not isinstance(bbox, list) or len(bbox) != 4:
                        raise ValueError(f"expected bbox [x, y, w, h], got {bbox!r:.60}")
                    x, y, w, h = (float(v) for v in bbox)
                    xyxy = check_box_xyxy(x, y, x + w, y + h, width, height)
                    score = ann.get("score")
                    if score is not None and not 0.0 <= float(score) <= 1.0:
                        raise ValueError(f"expected score in [0, 1], got {score}")
                except (ValueError, TypeError) as exc:
                    report.error(aitem, str(exc) if isinstance(exc, ValueError) else
                                 f"expected numbers in bbox, segmentation and score, got a bad value ({exc})")
                    continue
                name = names[ann["category_id"]][0]
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

    register_batches(reg, pending(), report, project=project, batch_size=batch_size, progress=progress,
                     categories=dict(names.values()))
    return report
