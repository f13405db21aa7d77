"""YOLO (ultralytics) label files and ``data.yaml``: writers and validating readers.

Label files: one ``.txt`` per image, same stem, under ``labels/`` where the image is under
``images/``; one object per line:

* detect: ``class cx cy w h``, box centre and size **normalised** by image width/height;
* segment: ``class x1 y1 x2 y2 ...``, one polygon of (x, y) points normalised by (W, H).

An image without objects gets an empty file (a "background" image for the trainer).
``data.yaml`` holds ``path`` (dataset root), ``train``/``val``/``test`` (image folders relative
to ``path``) and ``names`` (``{id: name}``, ids 0..n-1).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

__all__ = [
    "box_line",
    "polygon_line",
    "write_data_yaml",
    "read_data_yaml",
    "parse_label_file",
    "label_path_for",
    "IMAGE_SUFFIXES",
]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm", ".heic"}


def box_line(class_id: int, bbox_xywh: Sequence[float], width: int, height: int) -> str:
    """A detect label line from an absolute-pixel ``[x, y, w, h]`` box (clipped to the image)."""
    x, y, w, h = (float(v) for v in bbox_xywh)
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(width), x + w), min(float(height), y + h)
    cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
    nw, nh = max(0.0, x1 - x0) / width, max(0.0, y1 - y0) / height
    return f"{class_id} {cx:.6f} {cy:.6f} {nw:.6f} {nh:.6f}"


def polygon_line(class_id: int, points: np.ndarray, width: int, height: int) -> str:
    """A segment label line from a ``(K, 2)`` absolute-pixel (x, y) polygon (clipped to [0, 1])."""
    pts = np.asarray(points)
    if pts.size and pts.ndim == 2 and pts.shape[1] == 2:
        ints = pts if pts.dtype.kind in "iu" else None
        if ints is None and np.array_equal(pts, np.floor(pts)):
            ints = pts.astype(np.int64)
        if ints is not None and ints.min() >= 0 and ints[:, 0].max() <= width and ints[:, 1].max() <= height:
            tx, ty = _normalised(int(width)), _normalised(int(height))
            if tx is not None and ty is not None:
                out = [""] * (2 * len(ints))
                out[0::2] = [tx[v] for v in ints[:, 0].tolist()]
                out[1::2] = [ty[v] for v in ints[:, 1].tolist()]
                return f"{class_id} " + " ".join(out)
    pts = np.asarray(points, dtype=np.float64) / np.array([width, height], dtype=np.float64)
    pts = np.clip(pts, 0.0, 1.0)
    return f"{class_id} " + " ".join(f"{v:.6f}" for v in pts.ravel())


_TABLE_MAX = 1 << 15
_tables: dict[int, list[str]] = {}
_sizes_seen: dict[int, int] = {}


def _normalised(n: int) -> list[str] | None:
    """``f"{i / n:.6f}"`` for i in 0..n, cached per image dimension ``n``.

    Mask polygons have integer pixel coordinates, so the few distinct values of an image size
    are formatted once instead of ~300 floats per object (formatting was most of a YOLO
    segment export). A table is built the second time a size is asked for, so a dataset of
    all-different sizes pays no more than before; at most 64 tables are kept.
    """
    table = _tables.get(n)
    if table is not None:
        return table
    if not 0 < n <= _TABLE_MAX:
        return None
    seen = _sizes_seen.get(n, 0) + 1
    if seen < 2:
        if len(_sizes_seen) > 4096:
            _sizes_seen.clear()
        _sizes_seen[n] = seen
        return None
    if len(_tables) >= 64:
        _tables.pop(next(iter(_tables)))
    table = _tables[n] = [f"{i / n:.6f}" for i in range(n + 1)]
    return table


def write_data_yaml(path: str | Path, root: str | Path, names: Sequence[str], splits: dict[str, str]) -> Path:
    """Writes ``data.yaml``.

    Args:
        path: the file to write.
        root: dataset root (absolute), written as ``path``.
        names: class names, index = class id.
        splits: ``{"train": "images/train", ...}`` relative to root; only the given keys are written.
    """
    doc = {"path": str(root), **splits, "nc": len(names), "names": {i: n for i, n in enumerate(names)}}
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False, allow_unicode=True)
    return path


def read_data_yaml(path: str | Path) -> dict:
    """Reads ``data.yaml``: ``{"root": Path, "names": [str], "splits": {split: [Path image dirs/list files]}}``.

    Relative split entries are resolved against ``path:`` (itself relative to the yaml's folder),
    as ultralytics does.

    Raises:
        ValueError: not YAML, or no ``names``/no split (nothing should be imported).
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML ({exc}); nothing was imported") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a YAML mapping with 'names' and 'train', got {type(doc).__name__}")
    names = doc.get("names")
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: 'names' keys must be integers, got {list(names)}") from exc
        if keys != list(range(len(keys))):
            raise ValueError(f"{path}: 'names' ids must be 0..n-1, got {keys}")
        names = [str(names[k] if k in names else names[str(k)]) for k in keys]
    elif isinstance(names, list):
        names = [str(n) for n in names]
    else:
        raise ValueError(f"{path}: expected 'names' as a list or {{id: name}}, got {names!r:.80}")
    root = Path(doc.get("path") or ".")
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    splits: dict[str, list[Path]] = {}
    for split in ("train", "val", "test"):
        entry = doc.get(split)
        if not entry:
            continue
        items = entry if isinstance(entry, list) else [entry]
        splits[split] = [p if Path(p).is_absolute() else root / p for p in map(Path, items)]
    if not splits:
        raise ValueError(f"{path}: no 'train', 'val' or 'test' entry; nothing to import")
    return {"root": root, "names": names, "splits": splits}


def label_path_for(image_path: str | Path) -> Path:
    """The label file of an image: the last ``/images/`` in the path becomes ``/labels/``, suffix ``.txt``."""
    p = Path(image_path)
    parts = list(p.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def parse_label_file(path: str | Path, n_classes: int) -> tuple[list[tuple[int, np.ndarray]], list[str]]:
    """Parses a YOLO label file.

    Returns:
        ``(objects, errors)``: objects are ``(class_id, values)`` with ``values`` either 4
        normalised box numbers (cx, cy, w, h) or an even count ≥ 6 of normalised polygon
        coordinates; errors name the line and the problem (the line is skipped).
    """
    objects: list[tuple[int, np.ndarray]] = []
    errors: list[str] = []
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls = int(parts[0])
            values = np.array([float(v) for v in parts[1:]], dtype=np.float64)
        except ValueError:
            errors.append(f"{path}:{lineno}: expected numbers, got {line.strip()[:60]!r}")
            continue
        if not 0 <= cls < n_classes:
            errors.append(f"{path}:{lineno}: class {cls} is not among the {n_classes} names")
            continue
        if values.size != 4 and (values.size < 6 or values.size % 2):
            errors.append(
                f"{path}:{lineno}: expected 4 box values or an even number >= 6 of polygon values, got {values.size}"
            )
            continue
        if not np.all(np.isfinite(values)):
            errors.append(f"{path}:{lineno}: non-finite value")
            continue
        objects.append((cls, values))
    return objects, errors
