"""RLE helpers against pycocotools' own encoder."""
from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from registry import masks


@pytest.mark.parametrize("seed", range(20))
def test_encode_matches_pycocotools_and_roundtrips(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 60, 2)
    m = rng.random((h, w)) > rng.random()
    rle = masks.encode(m)
    assert rle["counts"].encode() == mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"]
    assert np.array_equal(masks.decode(rle), m)
    assert masks.area(rle) == m.sum()
    assert list(masks.counts_of(rle)) == _runs(m)


def _runs(m):
    flat = m.T.ravel()
    runs, cur, n = [], False, 0
    for v in flat:
        if v == cur:
            n += 1
        else:
            runs.append(n)
            cur, n = v, 1
    runs.append(n)
    return runs


def test_edge_masks_and_bbox():
    for m in (np.zeros((5, 7), bool), np.ones((5, 7), bool)):
        rle = masks.encode(m)
        assert np.array_equal(masks.decode(rle), m)
    m = np.zeros((768, 1024), bool)
    m[100:300, 200:450] = True
    rle = masks.encode(m)
    assert masks.bbox_xywh(rle) == (200.0, 100.0, 250.0, 200.0)
    assert len(rle["counts"]) < 1024
    half = m.copy()
    half[:, 325:] = False
    assert masks.iou([rle], [masks.encode(half)])[0, 0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shape"):
        masks.encode(np.zeros((2, 2, 2), bool))


@pytest.mark.parametrize("counts", ["", "0", "\x7f\x7f", "abc", "ü", "PPPPPPPPPPPPPPP1"])
def test_corrupt_counts_are_refused_before_decoding(counts):
    with pytest.raises(ValueError):
        masks.decode({"size": [10, 10], "counts": counts})


def test_runs_must_cover_the_image():
    good = masks.encode(np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="H\\*W"):
        masks.validate({"size": [4, 5], "counts": good["counts"]})


def test_batch_helpers_on_many_masks():
    """pycocotools' area() fails on 256+ RLEs in one call; the batch helpers chunk."""
    rng = np.random.default_rng(0)
    ms = [rng.random((12, 9)) > 0.5 for _ in range(600)]
    rles = masks.encode_many(ms)
    masks.validate_many(rles)
    assert masks.areas(rles).tolist() == [int(m.sum()) for m in ms]
    assert masks.bboxes(rles).shape == (600, 4)
