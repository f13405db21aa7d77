"""YOLO (ultralytics) label files and ``data.yaml``: writers and validating readers.

Label files: one ``.txt`` per image, same stem, under ``labels/`` where the image is under
``images/``; one object per line:

* detect: ``class cx cy w h``, box centre and size **normalised** by image width/height;
* segment: ``class x1 y1 x2 y2 ...``, one polygon of (x, y) points normalised by (W, H).

An image without objects gets an empty file (a "background" image for the trainer).
``data.yaml`` as written here holds ``train``/``val``/``test`` (image folders relative to the
yaml's own folder) and ``names`` (``{id: name}``, ids 0..n-1), and **no** ``path``: without one,
ultralytics (``check_det_dataset``) takes the yaml's folder as the dataset root, so an unpacked
export works wherever it lies. (``path: .`` would not do: ultralytics resolves a relative
``path`` that exists against the working directory, else against its ``DATASETS_DIR``.)
The reader accepts files with a ``path`` (absolute, or relative to the yaml's folder).
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


def write_data_yaml(path: str | Path, names: Sequence[str], splits: dict[str, str]) -> Path:
    """Writes ``data.yaml`` without a ``path`` key (the root is the yaml's folder; see the module doc).

    Args:
        path: the file to write, in the dataset root.
        names: class names, index = class id.
        splits: ``{"train": "images/train", ...}`` relative to the yaml's folder; only the
            given keys are written.
    """
    doc = {**splits, "nc": len(names), "names": {i: n for i, n in enumerate(names)}}
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False, allow_unicode=True)
    return path


#: ``data.yaml`` files larger than this are refused (a real one is a few hundred bytes).
MAX_DATA_YAML_BYTES = 1 << 20
#: Longest class name accepted (the registry's own limit).
MAX_NAME_CHARS = 200


def _load_plain_yaml(path: Path) -> object:
    """Parses a small YAML file made of plain scalars, lists and mappings only.

    Anchors and aliases (``&a`` / ``*a``) are refused before anything is built: a 500-byte file
    of nested aliases expands to gigabytes (a "billion laughs" bomb).

    Raises:
        ValueError: too large, not UTF-8, not YAML, anchors/aliases, or nested too deeply.
    """
    with open(path, "rb") as f:  # read at most one byte past the cap, whatever stat() says
        raw = f.read(MAX_DATA_YAML_BYTES + 1)
    if len(raw) > MAX_DATA_YAML_BYTES:
        raise ValueError(f"{path.name} is larger than a data.yaml needs (at most "
                         f"{MAX_DATA_YAML_BYTES:,} bytes); nothing was imported")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path.name} is not UTF-8 text ({exc}); nothing was imported") from exc
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise ValueError(f"{path.name} uses YAML anchors or aliases (& / *), which a "
                                 "data.yaml does not need; write the values out; nothing was imported")
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path.name} is not valid YAML ({exc}); nothing was imported") from exc
    except RecursionError as exc:
        raise ValueError(f"{path.name} nests too deeply to be a data.yaml; nothing was imported") from exc


def _class_name(path: Path, key: object, value: object) -> str:
    """A class name as a plain string (integers are allowed and become strings)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"{path.name}: class {key} name must be a plain string, got "
                         f"{type(value).__name__} {str(value)[:40]!r}; nothing was imported")
    if len(value) > MAX_NAME_CHARS:
        raise ValueError(f"{path.name}: class {key} name is {len(value):,} characters, more than "
                         f"{MAX_NAME_CHARS}; shorten it; nothing was imported")
    return value


def read_data_yaml(path: str | Path) -> dict:
    """Reads ``data.yaml``: ``{"root": Path, "names": [str], "splits": {split: [Path image dirs/list files]}}``.

    Relative split entries are resolved against ``path:`` (itself relative to the yaml's folder),
    as ultralytics does. The file must be small (:data:`MAX_DATA_YAML_BYTES`), without YAML
    anchors or aliases; names are plain strings of at most :data:`MAX_NAME_CHARS` characters;
    ``path`` a string; each split a path or a list of paths.

    Raises:
        ValueError: any of the above violated, not YAML, or no ``names``/no split (nothing
            should be imported); the message names the file and the key.
    """
    path = Path(path)
    doc = _load_plain_yaml(path)
    if not isinstance(doc, dict):
        raise ValueError(f"{path.name}: expected a YAML mapping with 'names' and 'train', got {type(doc).__name__}")
    names = doc.get("names")
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path.name}: 'names' keys must be integers, got {list(names)[:10]}") from exc
        if keys != list(range(len(keys))):
            raise ValueError(f"{path.name}: 'names' ids must be 0..n-1, got {keys[:10]}")
        names = [_class_name(path, k, names[k] if k in names else names[str(k)]) for k in keys]
    elif isinstance(names, list):
        names = [_class_name(path, k, n) for k, n in enumerate(names)]
    else:
        raise ValueError(f"{path.name}: expected 'names' as a list or {{id: name}}, got {str(names)[:80]!r}")
    root_value = doc.get("path") or "."
    if not isinstance(root_value, str):
        raise ValueError(f"{path.name}: expected 'path' as a folder path (a string), got "
                         f"{type(root_value).__name__}; nothing was imported")
    root = Path(root_value)
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    splits: dict[str, list[Path]] = {}
    for split in ("train", "val", "test"):
        entry = doc.get(split)
        if entry is None or entry == "" or entry == []:
            continue
        items = entry if isinstance(entry, list) else [entry]
        if not all(isinstance(p, str) and p.strip() for p in items):
            raise ValueError(
                f"{path.name}: expected {split!r} as a folder or .txt path or a list of them, got "
                f"{type(entry).__name__} {str(entry)[:60]!r}; nothing was imported")
        splits[split] = [p if Path(p).is_absolute() else root / p for p in map(Path, items)]
    if not splits:
        raise ValueError(f"{path.name}: no 'train', 'val' or 'test' entry; nothing to import")
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
