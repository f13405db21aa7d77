"""Import a YOLO (ultralytics) detect or segment dataset described by ``data.yaml``.

Each split entry of ``data.yaml`` (a folder of images, or a ``.txt`` list of image paths) is
read; each image's labels come from the parallel ``labels/`` path (see
:func:`registry.formats.yolo.label_path_for`). Lines are ``class cx cy w h`` (normalised box)
or ``class x1 y1 x2 y2 ...`` (normalised polygon; it becomes the object's mask, rasterised the
way ultralytics does, and its box is the polygon's extent). An image without a label file is
registered with no objects. The split an image came from is kept in each object's metadata.

A malformed ``data.yaml`` (see :func:`registry.formats.yolo.read_data_yaml`: size cap, no YAML
aliases, plain names, split entries as paths) raises ``ValueError`` before anything is written;
a class name the registry refuses skips that class's labels (reported); bad images
(missing, corrupt), bad label lines (unknown class, wrong value count, box/polygon outside the
image, degenerate polygons) are reported one by one and skipped.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from registry.categories import check_category_name
from registry.formats import mask_geometry as geom
from registry.formats.yolo import IMAGE_SUFFIXES, label_path_for, parse_label_file, read_data_yaml
from registry.importers.common import (
    BOX_TOLERANCE_PX,
    ImportReport,
    PendingImage,
    check_box_xyxy,
    check_image,
    register_batches,
)
from registry.records import ObjectIn

__all__ = ["import_yolo"]


def _split_images(entry: Path, report: ImportReport) -> list[Path]:
    if entry.is_dir():
        return sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if entry.is_file() and entry.suffix == ".txt":
        out = []
        for line in entry.read_text(encoding="utf-8").splitlines():
            if line.strip():
                p = Path(line.strip())
                out.append(p if p.is_absolute() else (entry.parent / p))
        return out
    report.error(str(entry), "split entry is neither a folder nor a .txt list of images")
    return []


def import_yolo(
    reg: Any,
    data_yaml: str | Path,
    *,
    validated: bool = False,
    project: str | None = None,
    batch_size: int = 100,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Imports a YOLO dataset into the registry.

    Args:
        reg: the :class:`registry.facade.Registry`.
        data_yaml: the dataset's ``data.yaml`` (or its folder).
        validated: mark imported objects ``approved`` (by ``"import"``); else ``pending``.
        project: project id for the sources and objects.
        batch_size: images per transaction.
        progress: called with the number of images registered so far after each batch.

    Raises:
        ValueError: ``data.yaml`` is malformed (nothing imported).
        FileNotFoundError: no such file.
    """
    data_yaml = Path(data_yaml)
    if data_yaml.is_dir():
        data_yaml = data_yaml / "data.yaml"
    if not data_yaml.is_file():
        raise FileNotFoundError(f"expected a data.yaml file, got {str(data_yaml)!r}")
    spec = read_data_yaml(data_yaml)
    names: list[str] = spec["names"]
    report = ImportReport(format="yolo", path=str(data_yaml))
    status = "approved" if validated else "pending"
    # A name the registry refuses skips only that class's label lines (reported once here);
    # categories are created in the transaction of the first batch that uses them.
    refused: dict[int, str] = {}
    for k, name in enumerate(names):
        try:
            names[k] = check_category_name(name)
        except ValueError as exc:
            refused[k] = str(exc)
            report.error(f"class {k} ({name[:60]!r})", f"{exc}; its labels are skipped")

    def pending() -> Iterator[PendingImage]:
        used: dict[str, None] = {}
        seen: set[Path] = set()
        for split, entries in spec["splits"].items():
            for entry in entries:
                for image_path in _split_images(entry, report):
                    if image_path in seen:  # e.g. val == train
                        continue
                    seen.add(image_path)
                    report.images_seen += 1
                    item = f"image {image_path.name} ({split})"
                    try:
                        width, height = check_image(image_path)
                    except ValueError as exc:
                        report.error(item, str(exc))
                        continue
                    label = label_path_for(image_path)
                    objects = []
                    if label.is_file():
                        parsed, errors = parse_label_file(label, len(names))
                        for err in errors:
                            report.error(item, err)
                        for lineno, (cls, values) in enumerate(parsed, 1):
                            report.annotations_seen += 1
                            if cls in refused:
                                report.error(f"{label.name} object {lineno}",
                                             f"class {cls} has a refused name: {refused[cls]}")
                                continue
                            try:
                                obj = _to_object(cls, values, names, width, height)
                            except ValueError as exc:
                                report.error(f"{label.name} object {lineno}", str(exc))
                                continue
                            obj.validation_status = status
                            obj.validated_by = "import" if validated else None
                            obj.metadata = {"import": {"format": "yolo", "split": split}}
                            used.setdefault(obj.category, None)
                            objects.append(obj)
                    yield PendingImage(item=item, path=image_path, width=width, height=height, objects=objects)
        report.categories = list(used)

    register_batches(reg, pending(), report, project=project, batch_size=batch_size, progress=progress,
                     categories={n: None for k, n in enumerate(names) if k not in refused})
    return report


def _to_object(cls: int, values: np.ndarray, names: list[str], width: int, height: int) -> ObjectIn:
    """An ObjectIn from one label line (normalised values → absolute pixels)."""
    scale = np.array([width, height], dtype=np.float64)
    tol = BOX_TOLERANCE_PX / min(width, height)
    if values.size == 4:
        cx, cy, w, h = values
        if w <= 0 or h <= 0:
            raise ValueError(f"degenerate box (w={w}, h={h})")
        x0, y0 = (cx - w / 2) * width, (cy - h / 2) * height
        x1, y1 = (cx + w / 2) * width, (cy + h / 2) * height
        return ObjectIn(category=names[cls], xyxy=check_box_xyxy(x0, y0, x1, y1, width, height))
    pts = values.reshape(-1, 2)
    if pts.min() < -tol or pts.max() > 1 + tol:
        raise ValueError("polygon lies outside the image (normalised values outside [0, 1])")
    pts = np.clip(pts, 0.0, 1.0) * scale
    if len(np.unique(pts, axis=0)) < 3 or geom.polygon_area(pts) <= 0:
        raise ValueError("degenerate polygon (fewer than 3 distinct points or zero area)")
    # Pixel-index convention (cv2.fillPoly), as ultralytics rasterises; the box is the extent of
    # the filled pixels so box and mask agree.
    mask = geom.yolo_polygon_to_mask(pts, height, width)
    if not mask.any():
        raise ValueError("polygon covers no pixel")
    x, y, w, h = geom.mask_bbox_xywh(mask)
    return ObjectIn(category=names[cls], xyxy=(x, y, x + w, y + h), mask_rle=geom.rle_encode(mask))
