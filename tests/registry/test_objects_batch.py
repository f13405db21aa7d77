"""registry.objects_batch: the columnar fast path equals prepare's object-by-object path."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from registry import masks as rle_ops
from registry.objects_batch import fast_batch, from_items
from registry.objects_write import prepare
from registry.records import ObjectIn

W, H = 64, 48
SOURCE = {"source_id": "src_x", "width": W, "height": H}


def _objects(rng: np.random.Generator, n: int) -> list[ObjectIn]:
    out = []
    for i in range(n):
        x0, y0 = float(rng.integers(0, W - 8)), float(rng.integers(0, H - 8))
        x1, y1 = x0 + float(rng.integers(1, 8)) + 0.25, y0 + float(rng.integers(1, 8)) + 0.5
        m = np.zeros((H, W), dtype=bool)
        m[int(y0):int(y1), int(x0):int(x1)] = True
        rle = rle_ops.encode(m)
        out.append(ObjectIn(
            category=["cat", "Dog ", "cat", "bird"][i % 4], xyxy=(x0, y0, x1, y1),
            mask_rle=None if i % 3 == 0 else ({"size": (H, W), "counts": rle["counts"]} if i % 5 == 0 else rle),
            confidence=None if i % 4 == 0 else float(rng.random()),
            embedding=None if i % 6 == 0 else rng.standard_normal(8).astype(np.float32),
            detection_model="m" if i % 2 else None, classification_model="c" if i % 7 == 0 else None,
            classification_confidence=0.5 if i % 7 == 0 else None, frame_id=None,
            quality_score=0.25 if i % 9 == 0 else None, is_occluded=bool(i % 2), is_truncated=i % 3 == 1,
            is_difficult=i % 11 == 0, validation_status=["pending", "approved", "rejected"][i % 3],
            validated_by="ann" if i % 3 else None, metadata={"k": i, "é": [1.5]} if i % 8 == 0 else None,
        ))
    return out


def _same(a, b) -> None:
    for f in dataclasses.fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if f.name == "mask_box":  # the fast path's (N, 4) array has NaN rows where prepare has None
            def rows(boxes):
                return [None if v is None or np.isnan(v).all() else list(v) for v in boxes]

            assert rows(va) == rows(vb) and sum(r is not None for r in rows(va)) == 40
        elif f.name == "rle":  # the fast path keeps the caller's dict (a tuple size stays a tuple)
            assert [None if r is None else ([*r["size"]], r["counts"]) for r in va] == \
                   [None if r is None else ([*r["size"]], r["counts"]) for r in vb]
        else:
            assert va == vb, f.name


def test_fast_batch_equals_prepare_on_a_mixed_batch():
    objs = _objects(np.random.default_rng(5), 60)
    fast = fast_batch(SOURCE, objs, 8)
    assert fast is not None and len(fast) == 60
    slow = from_items(prepare(SOURCE, objs, None, 8, "v1"))
    _same(fast, slow)
    assert sum(c is not None for c in fast.counts) == 40 and sum(e is not None for e in fast.embedding) == 50
    assert fast.category[1] == "Dog" and fast.metadata[0] == '{"k": 0, "é": [1.5]}'


@pytest.mark.parametrize("odd", [
    {"confidence": 1.5}, {"confidence": 1}, {"quality_score": float("nan")}, {"validation_status": "maybe"},
    {"xyxy": (0.0, 0.0, W + 1.0, 4.0)}, {"category": "  "}, {"category": 3}, {"metadata": {"x": float("nan")}},
    {"mask_rle": {"size": [H, W], "counts": "0"}}, {"mask_rle": {"size": [H + 1, W], "counts": "0"}},
    {"embedding": np.zeros(8, dtype=np.float32)}, {"embedding": np.ones(8)}, {"mask": np.ones((H, W), bool)},
])
def test_fast_batch_leaves_anything_odd_to_prepare(odd):
    objs = _objects(np.random.default_rng(6), 12)
    objs[7] = dataclasses.replace(objs[7], **odd)
    assert fast_batch(SOURCE, objs, 8) is None  # prepare words the error (or converts the value)
