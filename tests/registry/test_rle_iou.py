"""registry.rle_iou: the compiled pair IoU dedupe uses, held to pycocotools bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from registry import dedupe, rle_iou

H, W = 37, 53


def _masks(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    out = []
    for i in range(n):
        m = np.zeros((H, W), np.uint8)
        kind = i % 6
        if kind == 1:
            m[:] = 1  # full: the first run is 0
        elif kind > 1:
            y0, x0 = rng.integers(0, H), rng.integers(0, W)
            m[y0:y0 + rng.integers(1, 20), x0:x0 + rng.integers(1, 30)] = 1
            if kind == 3:
                m ^= (rng.random((H, W)) < 0.1).astype(np.uint8)  # hundreds of runs
            if kind == 4:
                m[0, 0] = 1  # starts on foreground
        out.append(m)  # kind 0: empty
    return out


def test_pair_iou_is_bit_identical_to_pycocotools():
    rng = np.random.default_rng(3)
    coco = [mask_utils.encode(np.asfortranarray(m)) for m in _masks(rng, 48)]
    # str and bytes counts mixed, as stored rows and new objects are.
    counts = [c["counts"].decode() if i % 2 else c["counts"] for i, c in enumerate(coco)]
    pa, pb = (g.ravel() for g in np.meshgrid(np.arange(48), np.arange(48), indexing="ij"))
    got = rle_iou.pair_iou(counts, pa, pb)
    ref = np.asarray(mask_utils.iou(coco, coco, [0] * 48)).reshape(-1)
    assert (got > 0).sum() > 500 and (got == 1.0).sum() >= 48 - 8  # diagonal, less the empties
    np.testing.assert_array_equal(got, ref)


def test_corrupt_counts_give_a_number_not_a_hang():
    good = mask_utils.encode(np.asfortranarray(np.ones((H, W), np.uint8)))["counts"].decode()
    # Runs summing to less than H*W, a negative run, and a dangling continuation character.
    got = rle_iou.pair_iou([good, "05", "0:1", "0" + chr(48 + 0x20)], np.array([0, 0, 0, 1]), np.array([1, 2, 3, 2]))
    assert got.shape == (4,) and np.isfinite(got).all()
    with pytest.raises(ValueError, match="ASCII"):
        rle_iou.pair_iou([good, "é"], np.array([0]), np.array([1]))
    with pytest.raises(ValueError, match="pair indices"):
        rle_iou.pair_iou([good], np.array([0]), np.array([1]))


def test_dedupe_falls_back_to_pycocotools_for_masks_of_another_size():
    m = np.zeros((H, W), np.uint8)
    m[5:20, 5:30] = 1
    same = mask_utils.encode(np.asfortranarray(m))
    other = mask_utils.encode(np.asfortranarray(np.pad(m, ((0, 3), (0, 0)))))  # (H + 3, W)
    box = [5.0, 5.0, 25.0, 15.0]

    def items(rles):
        return dedupe.Items.build([1] * len(rles), [box] * len(rles), rles, [375.0] * len(rles))

    assert dedupe.find_duplicates(items([same, same]), items([]), 0.1) == {1: ("new", 0)}
    # pycocotools answers -1 for a pair of different sizes: not a duplicate, and no error (the
    # kernel, which assumes one size, would merge the two run lists into 0.24 > 0.1).
    assert dedupe.find_duplicates(items([same, other]), items([]), 0.1) == {}
