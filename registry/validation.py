"""Checks of the caller's input to the write paths: numbers, JSON, boxes, masks, embeddings.

Coordinate conventions: boxes are ``xyxy`` in absolute pixels of the source image (x = column,
y = row); masks are ``(H, W)`` bool arrays of the source image's size, returned as compressed
COCO RLE; embeddings are ``(dim,)`` float32 vectors, returned as little-endian float32 bytes.
Every error is a ``ValueError`` naming the item, the expected and the actual value.
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from registry import masks as rle_ops
from registry.records import ObjectIn

STATUSES = ("pending", "approved", "rejected")


def finite_unit(value: Any, what: str) -> float | None:
    """``value`` as a float in [0, 1] (None stays None); ValueError naming ``what`` otherwise."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"expected {what} as a number in [0, 1] or None, got {value!r}") from exc
    if not math.isfinite(f) or f < 0.0 or f > 1.0:
        raise ValueError(f"expected {what} in [0, 1], got {value!r}")
    return f


def json_or_none(value: Any, what: str) -> str | None:
    """A dict as JSON text (None stays None); ValueError naming ``what`` for anything else or NaN."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"expected {what} as a dict or None, got {type(value).__name__}")
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"expected {what} to be JSON-serialisable (no NaN), got {exc}") from exc


def check_box(xyxy: Any, width: int | None, height: int | None, where: str) -> tuple[float, float, float, float]:
    """The box as 4 floats ``(x0, y0, x1, y1)``, absolute pixels inside a ``width`` x ``height``
    image (None: unchecked); ValueError naming ``where`` otherwise."""
    box = None
    if type(xyxy) in (tuple, list) and len(xyxy) == 4:  # the common case, without numpy
        try:
            box = [float(v) for v in xyxy]
        except (TypeError, ValueError):
            box = None  # the general path below words the error
    if box is None:
        try:
            box = [float(v) for v in np.asarray(xyxy, dtype=np.float64).reshape(-1)]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: expected xyxy as 4 numbers, got {xyxy!r}") from exc
    if len(box) != 4:
        raise ValueError(f"{where}: expected xyxy as 4 numbers (x0, y0, x1, y1), got {len(box)} values")
    if not all(math.isfinite(v) for v in box):
        raise ValueError(f"{where}: expected finite box coordinates, got {box}")
    x0, y0, x1, y1 = box
    if x0 < 0 or y0 < 0:
        raise ValueError(f"{where}: expected non-negative box coordinates (absolute pixels), got {box}; clip the box to the image")
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"{where}: expected x1 > x0 and y1 > y0 (xyxy), got {box}")
    if width is not None and x1 > width + 1e-6 or height is not None and y1 > height + 1e-6:
        raise ValueError(
            f"{where}: expected a box inside the {width}x{height} image (xyxy absolute pixels), got {box}; "
            "clip it to the image"
        )
    return x0, y0, x1, y1


def check_embedding(emb: Any, where: str, dim: int, version: str) -> bytes:
    """The little-endian float32 bytes of one ``(dim,)`` embedding; ValueError naming ``where``."""
    vec = np.asarray(emb, dtype=np.float32)
    if vec.ndim != 1 or vec.shape[0] != dim:
        raise ValueError(
            f"{where}: expected an embedding of shape ({dim},) for {version!r}, "
            f"got {tuple(vec.shape)}; use the embedder this registry was opened with"
        )
    if not np.isfinite(vec).all():
        raise ValueError(f"{where}: expected finite embedding values, got NaN or inf")
    if not np.any(vec):
        raise ValueError(f"{where}: expected a non-zero embedding (cosine similarity needs a direction), got all zeros")
    return vec.astype("<f4").tobytes()


def check_mask(
    obj: ObjectIn, width: int | None, height: int | None, where: str, *, validate: bool = True
) -> dict | None:
    """``obj``'s mask (or ``mask_rle``) as compressed RLE of the ``(height, width)`` image, or None
    without one; ``validate=False`` leaves decoding a given RLE to the caller's batch check."""
    if obj.mask is not None and obj.mask_rle is not None:
        raise ValueError(f"{where}: expected either mask or mask_rle, got both")
    if obj.mask is None and obj.mask_rle is None:
        return None
    if width is None or height is None:
        raise ValueError(f"{where}: the source has no width/height, so a mask cannot be checked; register it with its size")
    if obj.mask is not None:
        m = np.asarray(obj.mask)
        if m.shape != (height, width):
            raise ValueError(
                f"{where}: expected a mask of shape (H, W) = ({height}, {width}) like the source image, "
                f"got {m.shape}; resize or re-segment at the image size"
            )
        if m.dtype != np.bool_:
            if not np.issubdtype(m.dtype, np.number) or not np.isin(m, (0, 1)).all():
                raise ValueError(f"{where}: expected a bool mask (or 0/1 values), got dtype {m.dtype}")
            m = m.astype(bool)
        return rle_ops.encode(m)
    rle = {"size": [int(v) for v in obj.mask_rle["size"]], "counts": obj.mask_rle["counts"]}
    if isinstance(rle["counts"], bytes):
        rle["counts"] = rle["counts"].decode("ascii")
    if not isinstance(rle["counts"], str):
        raise ValueError(f"{where}: expected compressed RLE counts (str), got {type(rle['counts']).__name__}")
    if rle["size"] != [height, width]:
        raise ValueError(f"{where}: expected an RLE of size [{height}, {width}], got {rle['size']}")
    if validate:
        rle_ops.validate(rle)
    return rle


def check_embeddings(embs: list[Any], positions: list[int], dim: int, version: str) -> list[bytes]:
    """:func:`check_embedding` for a batch: one stacked float32 array and one finiteness and
    non-zero check; the little-endian float32 bytes of each row."""
    if not embs:
        return []
    try:
        arrs = [np.asarray(e) for e in embs]
        ok = all(a.shape == (dim,) and a.dtype.kind in "fiu" for a in arrs)
        mat = np.stack(arrs).astype("<f4", copy=False) if ok else None
    except (TypeError, ValueError):
        mat = None
    if mat is not None and np.isfinite(mat).all() and mat.any(axis=1).all():
        return [row.tobytes() for row in mat]
    # Something is wrong: the per-object check names the first bad one.
    return [check_embedding(e, f"object {i}", dim, version) for e, i in zip(embs, positions, strict=True)]
