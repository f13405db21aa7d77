"""COCO JSON: a streaming writer and a validating reader.

Conventions: ``bbox`` is ``[x, y, w, h]`` in absolute pixels (top-left corner, (x, y) =
(column, row)); ``segmentation`` is a list of flattened polygons ``[x1, y1, x2, y2, ...]``
(absolute pixels) or an RLE dict ``{"size": [H, W], "counts": str | list[int]}``; image and
annotation ids are positive integers; category ids start at 1.

The writer never holds the dataset: image entries go straight to the output file and
annotation entries to a temporary fragment file next to it, appended when the writer closes.
Memory stays constant whatever the number of objects.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CocoWriter", "CocoData", "read_coco", "is_coco_id", "RawJson", "quarter_polygon_json"]

_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

_ANNOTATION_KEYS = frozenset({"id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation"})


class RawJson(str):
    """Text that is already valid JSON, spliced into the output as is (see :func:`quarter_polygon_json`)."""

    __slots__ = ()


_QUARTER_SUFFIX = (".0", ".25", ".5", ".75")
_QUARTER_MAX = 1 << 16  # table entries (quarters): coordinates below 16384 px
_quarter_table: list[str] = []


def _quarters(n: int) -> list[str]:
    """``repr(q / 4)`` for q in 0..n-1 (grown on demand, capped at ``_QUARTER_MAX``)."""
    if len(_quarter_table) < n:
        start = len(_quarter_table)
        stop = min(_QUARTER_MAX, max(n, 2 * start, 4096))
        _quarter_table.extend(f"{q >> 2}{_QUARTER_SUFFIX[q & 3]}" for q in range(start, stop))
    return _quarter_table


def quarter_polygon_json(polygons: Sequence[np.ndarray]) -> RawJson:
    """COCO polygons given in quarter pixels, as JSON text: ``[[x1,y1,x2,...],...]``.

    Text is identical to ``json.dumps([(q / 4).tolist() ...])`` (Python's float repr), but made
    by table look-up: encoding ~300 floats per polygon through the JSON encoder was the largest
    cost of a COCO segment export.

    Args:
        polygons: int arrays of any shape (flattened in C order) of non-negative quarter-pixel
            values ``q``, i.e. absolute pixel coordinate ``q / 4``.
    """
    parts = []
    for poly in polygons:
        q = np.asarray(poly).ravel()
        if q.size and (q.min() < 0 or q.max() >= _QUARTER_MAX):
            parts.append(",".join(repr(float(v) / 4.0) for v in q.tolist()))
            continue
        table = _quarters(int(q.max()) + 1 if q.size else 0)
        parts.append(",".join([table[v] for v in q.tolist()]))
    return RawJson("[[" + "],[".join(parts) + "]]" if parts else "[]")


class CocoWriter:
    """Writes one COCO JSON file incrementally.

    Example:
        >>> with CocoWriter(path, categories=[{"id": 1, "name": "cat"}]) as w:
        ...     img = w.add_image("src_x.jpg", width=640, height=480)
        ...     w.add_annotation(img, 1, [10, 20, 30, 40], area=1200.0)
    """

    def __init__(
        self,
        path: str | Path,
        *,
        categories: Sequence[dict],
        info: dict | None = None,
        licenses: Sequence[dict] = (),
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ids = [int(c["id"]) for c in categories]
        if any(i < 1 for i in ids) or len(set(ids)) != len(ids):
            raise ValueError(f"expected unique category ids >= 1, got {ids}")
        self._category_ids = set(ids)
        self._tmp_ann = self.path.with_name(self.path.name + ".annotations.part")
        self._out = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._ann = open(self._tmp_ann, "w", encoding="utf-8")  # noqa: SIM115
        head = {"info": info or {}, "licenses": list(licenses),
                "categories": [dict(c) for c in categories]}
        # Everything up to the images array; annotations follow after close().
        self._out.write(_DUMPS(head)[:-1] + ',"images":[')
        self.image_count = 0
        self.annotation_count = 0
        self._closed = False

    def add_image(self, file_name: str, *, width: int, height: int, extra: dict | None = None) -> int:
        """Adds an image entry; returns its id (1, 2, ... in call order)."""
        self.image_count += 1
        entry = {"id": self.image_count, "file_name": file_name, "width": int(width), "height": int(height)}
        if extra:
            entry.update(extra)
        self._out.write(("," if self.image_count > 1 else "") + _DUMPS(entry))
        return self.image_count

    def add_annotation(
        self,
        image_id: int,
        category_id: int,
        bbox_xywh: Sequence[float],
        *,
        area: float,
        segmentation: list | dict | None = None,
        iscrowd: int = 0,
        extra: dict | None = None,
    ) -> int:
        """Adds an annotation (bbox xywh absolute pixels); returns its id (1, 2, ...)."""
        if category_id not in self._category_ids:
            raise ValueError(f"category id {category_id} is not among {sorted(self._category_ids)}")
        self.annotation_count += 1
        if extra and not _ANNOTATION_KEYS.isdisjoint(extra):
            entry: dict[str, Any] = {
                "id": self.annotation_count,
                "image_id": int(image_id),
                "category_id": int(category_id),
                "bbox": [round(float(v), 3) for v in bbox_xywh],
                "area": float(area),
                "iscrowd": int(iscrowd),
                "segmentation": (json.loads(segmentation) if isinstance(segmentation, RawJson)
                                 else segmentation if segmentation is not None else []),
            }
            entry.update(extra)
            text = _DUMPS(entry)
        else:
            # The same text as the dict above, by string formatting (one encoder call fewer per
            # field); a RawJson segmentation is spliced in as is.
            if isinstance(segmentation, RawJson):
                seg = segmentation
            else:
                seg = _DUMPS(segmentation if segmentation is not None else [])
            bbox = [round(float(v), 3) for v in bbox_xywh]
            area_f = float(area)
            # json writes finite floats as repr(); NaN/inf go through the encoder as before.
            if len(bbox) == 4 and all(map(math.isfinite, bbox)):
                bbox_text = f"[{bbox[0]!r},{bbox[1]!r},{bbox[2]!r},{bbox[3]!r}]"
            else:
                bbox_text = _DUMPS(bbox)
            area_text = repr(area_f) if math.isfinite(area_f) else _DUMPS(area_f)
            text = (
                f'{{"id":{self.annotation_count},"image_id":{int(image_id)},'
                f'"category_id":{int(category_id)},"bbox":{bbox_text},'
                f'"area":{area_text},"iscrowd":{int(iscrowd)},"segmentation":{seg}'
                + (("," + _DUMPS(extra)[1:-1]) if extra else "") + "}"
            )
        self._ann.write(("," if self.annotation_count > 1 else "") + text)
        return self.annotation_count

    def close(self) -> dict:
        """Finishes the file; returns ``{"path", "images", "annotations"}``."""
        if not self._closed:
            self._ann.close()
            self._out.write('],"annotations":[')
            with open(self._tmp_ann, encoding="utf-8") as part:
                shutil.copyfileobj(part, self._out, 1 << 20)
            self._out.write("]}")
            self._out.close()
            os.unlink(self._tmp_ann)
            self._closed = True
        return {"path": str(self.path), "images": self.image_count, "annotations": self.annotation_count}

    def abort(self) -> None:
        """Closes and removes the partial output."""
        for f in (self._out, self._ann):
            f.close()
        for p in (self.path, self._tmp_ann):
            p.unlink(missing_ok=True)
        self._closed = True

    def __enter__(self) -> CocoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def is_coco_id(value: Any) -> bool:
    """COCO ids are integers (strings are tolerated); never bools, lists or dicts."""
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


class CocoData:
    """A parsed COCO file: ``images`` by id, ``categories`` by id, ``annotations`` in file order.

    ``errors`` lists ``(item, reason)`` for image and category entries left out (ids that are
    not integers, ids used twice); ``ambiguous_images`` / ``ambiguous_categories`` hold the ids
    used twice, so annotations pointing at them can say why they are skipped.
    """

    def __init__(self, images: dict[int, dict], categories: dict[int, dict], annotations: list[dict],
                 errors: list[tuple[str, str]] | None = None, ambiguous_images: set | None = None,
                 ambiguous_categories: set | None = None):
        self.images = images
        self.categories = categories
        self.annotations = annotations
        self.errors = errors or []
        self.ambiguous_images = ambiguous_images or set()
        self.ambiguous_categories = ambiguous_categories or set()
        self.image_entries = len(images)


def _index_entries(entries: list[dict], what: str, label: str, errors: list[tuple[str, str]]) -> tuple[dict, set]:
    """Entries by id; entries with a bad id or an id used twice are left out and reported."""
    by_id: dict[Any, dict] = {}
    first_of: dict[Any, str] = {}
    ambiguous: set = set()
    for k, entry in enumerate(entries):
        ident = entry["id"]
        item = f"{what} #{k} ({label} {str(entry.get(label))[:60]!r})"
        if not is_coco_id(ident):
            errors.append((item, f"expected an integer id, got {ident!r:.40} ({type(ident).__name__}); "
                                 "fix the id in the JSON"))
            continue
        if ident in first_of:
            ambiguous.add(ident)
            errors.append((f"{what} {ident!r} ({label} {str(entry.get(label))[:60]!r})",
                           f"id {ident!r} is used twice (also by {first_of[ident]}); both are skipped "
                           "with their annotations; give each entry its own id"))
            continue
        first_of[ident] = f"{label} {str(entry.get(label))[:60]!r}"
        by_id[ident] = entry
    for ident in ambiguous:
        errors.append((f"{what} {ident!r} ({first_of[ident]})", f"id {ident!r} is used twice; skipped"))
        del by_id[ident]
    return by_id, ambiguous


def read_coco(path: str | Path) -> CocoData:
    """Reads and structurally validates a COCO JSON file.

    Only the file as a whole is refused here (not JSON, not the three arrays, entries without
    ids); image and category entries with ids that are not integers, or ids used twice, are
    left out and listed in ``errors``. Per-annotation problems are the importer's to report.

    Raises:
        ValueError: the file is not JSON or not COCO-shaped (nothing should be imported).
        FileNotFoundError: no such file.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path.name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "nothing was imported"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path.name} is not UTF-8 text JSON ({exc}); nothing was imported") from exc
    except RecursionError as exc:
        raise ValueError(f"{path.name} nests JSON too deeply to be a COCO file; nothing was imported") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: expected a JSON object with 'images', 'annotations', 'categories', got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(
                f"{path.name}: expected a list under {key!r}, got {type(data.get(key)).__name__}; "
                "is this a COCO instances file?"
            )
    for img in data["images"]:
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise ValueError(f"{path.name}: every image needs 'id' and 'file_name', got {img!r:.120}")
    for cat in data["categories"]:
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise ValueError(f"{path.name}: every category needs 'id' and 'name', got {cat!r:.120}")
    errors: list[tuple[str, str]] = []
    images, amb_images = _index_entries(data["images"], "image", "file_name", errors)
    categories, amb_cats = _index_entries(data["categories"], "category", "name", errors)
    out = CocoData(images, categories, list(data["annotations"]), errors, amb_images, amb_cats)
    out.image_entries = len(data["images"])
    return out
