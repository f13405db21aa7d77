"""What the importers share: the report, image checks, box checks, batched registration.

Batches: the images of a batch (their sources and objects) are registered inside ONE
registry transaction, so a process killed mid-import leaves whole batches only. Running the
import again completes it without duplicates: sources are found by content hash, and objects
overlapping an existing object of the same source and category (IoU > the registry's
``dedupe_iou``) are skipped as duplicates.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

import image_header

log = logging.getLogger(__name__)

#: Boxes may overshoot the image by this much (pixels) from rounding; they are clipped.
BOX_TOLERANCE_PX = 1.0


@dataclass
class ImportReport:
    """Outcome of an import.

    Attributes:
        images_seen: images listed by the dataset.
        images_registered: images whose source is in the registry after the import (new or not).
        sources_new: sources created by this import.
        objects_imported: objects written.
        objects_duplicate: objects skipped as duplicates of existing ones (e.g. a re-import).
        categories: the category names used, in first-seen order.
        errors: ``(item, reason)`` for every skipped item (image or annotation).
    """

    format: str
    path: str
    images_seen: int = 0
    images_registered: int = 0
    sources_new: int = 0
    objects_imported: int = 0
    objects_duplicate: int = 0
    annotations_seen: int = 0
    categories: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)

    def error(self, item: str, reason: str) -> None:
        self.errors.append((item, reason))
        log.warning("import: skipped %s: %s", item, reason)

    def summary(self) -> str:
        """One line (plus up to 10 error lines), e.g. "imported 120 objects from 40 images ...; 3 items skipped: …"."""
        head = (
            f"{self.format} import of {self.path}: {self.objects_imported} objects from "
            f"{self.images_registered} of {self.images_seen} images ({self.sources_new} new), "
            f"{self.objects_duplicate} duplicates skipped, {len(self.categories)} categories"
        )
        return self.with_errors(head)

    def with_errors(self, head: str) -> str:
        """``head`` + "; no errors", or + the count and up to 10 "  item: reason" lines."""
        if not self.errors:
            return head + "; no errors"
        lines = [head + f"; {len(self.errors)} items skipped:"]
        lines += [f"  {item}: {reason}" for item, reason in self.errors[:10]]
        if len(self.errors) > 10:
            lines.append(f"  … and {len(self.errors) - 10} more")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "format": self.format, "path": self.path, "images_seen": self.images_seen,
            "images_registered": self.images_registered, "sources_new": self.sources_new,
            "objects_imported": self.objects_imported, "objects_duplicate": self.objects_duplicate,
            "annotations_seen": self.annotations_seen, "categories": list(self.categories),
            "errors": [{"item": i, "reason": r} for i, r in self.errors],
        }


def check_image(path: Path) -> tuple[int, int]:
    """``(width, height)`` of a readable image file, after EXIF orientation (orientations 5-8
    swap them, as :func:`image_header.image_size` and the pipeline's loader do).

    Reads the header first (size, the pixel limit :data:`image_header.MAX_IMAGE_PIXELS`), then
    runs Pillow's ``verify()`` (structure, checksums) and decodes the pixels, which also catches
    truncated files that ``verify()`` lets through.

    Raises:
        ValueError: missing, unreadable, truncated, over the pixel limit or not an image (the
            message says which, naming the file by its name).
    """
    width, height = image_header.image_size(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with image_header.pil_open(path) as im:
                im.verify()
            with image_header.pil_open(path) as im:
                im.load()
    except Exception as exc:  # Pillow raises many types for bad files
        raise ValueError(f"corrupt or unreadable image {path.name!r}: {exc}") from exc
    return width, height


def check_box_xyxy(
    x0: float, y0: float, x1: float, y1: float, width: int, height: int
) -> tuple[float, float, float, float]:
    """Validates an absolute-pixel xyxy box against the image; clips overshoot ≤ 1 px.

    Raises:
        ValueError: non-positive size, or the box lies outside the image by more than 1 px.
    """
    vals = (x0, y0, x1, y1)
    if any(v != v for v in vals):  # NaN
        raise ValueError(f"box {list(vals)} has NaN values")
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        raise ValueError(f"degenerate box xyxy {[round(v, 2) for v in vals]} (zero or negative size)")
    tol = BOX_TOLERANCE_PX
    if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
        raise ValueError(
            f"box xyxy {[round(v, 2) for v in vals]} lies outside the {width}x{height} image"
        )
    x0, y0 = max(0.0, x0), max(0.0, y0)
    x1, y1 = min(float(width), x1), min(float(height), y1)
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        raise ValueError(f"box xyxy {[round(v, 2) for v in vals]} has no area inside the image")
    return x0, y0, x1, y1


@dataclass
class PendingImage:
    """One image ready to register: its file, size (after EXIF orientation), objects (ObjectIn)
    and a label for errors."""

    item: str
    path: Path
    width: int
    height: int
    objects: list = field(default_factory=list)


def register_batches(
    reg: Any,
    images: Iterable[PendingImage],
    report: ImportReport,
    *,
    project: str | None,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
    categories: dict[str, str | None] | None = None,
) -> None:
    """Registers images and their objects, ``batch_size`` images per transaction.

    ``categories`` (``{name: supercategory}``, already checked) are created when missing, in
    order, inside the first batch's transaction: an import refused or killed before its first
    batch commits leaves no category behind, and the dataset's class order is kept.
    """
    batch: list[PendingImage] = []
    pending_categories = dict(categories or {})
    for img in images:
        batch.append(img)
        if len(batch) >= batch_size:
            _flush(reg, batch, report, project, pending_categories)
            pending_categories = {}
            if progress:
                progress(report.images_registered)
            batch = []
    if batch:
        _flush(reg, batch, report, project, pending_categories)
        if progress:
            progress(report.images_registered)


def _flush(reg: Any, batch: list[PendingImage], report: ImportReport, project: str | None,
           categories: dict[str, str | None]) -> None:
    with reg.transaction():
        for name, supercategory in categories.items():
            if reg.get_category(name) is None:
                reg.create_category(name, supercategory=supercategory)
        for img in batch:
            before = reg.count_sources()
            try:
                source_id = reg.register_source(img.path, width=img.width, height=img.height, project=project)
            except (ValueError, FileNotFoundError) as exc:
                report.error(img.item, str(exc))
                continue
            report.sources_new += reg.count_sources() - before
            report.images_registered += 1
            if not img.objects:
                continue
            try:
                result = reg.register_objects(source_id, img.objects, project=project, dedupe=True)
            except ValueError as exc:
                # The registry validates everything before writing: nothing of this image's
                # objects was written; the rest of the batch goes on.
                report.error(img.item, f"objects rejected by the registry: {exc}")
                continue
            report.objects_imported += len(result.registered)
            report.objects_duplicate += len(result.duplicates)
