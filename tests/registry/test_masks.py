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
    boxes = masks.bboxes(rles)
    assert boxes.shape == (600, 4)
    expected = []
    for m in ms:  # COCO xywh of each mask's pixels
        ys, xs = np.nonzero(m)
        expected.append([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1])
    np.testing.assert_array_equal(boxes, np.asarray(expected, boxes.dtype))


def _reference(m):
    return mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"]


def _shapes(rng, h, w):
    """Random masks of several kinds: noise, boxes touching any border, full columns, sparse."""
    kind = rng.integers(0, 5)
    if kind == 0:
        return rng.random((h, w)) > rng.random()
    m = np.zeros((h, w), bool)
    if kind == 1:
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        m[y0:rng.integers(y0, h + 1), x0:rng.integers(x0, w + 1)] = True
    elif kind == 2:  # runs that end at a column's bottom and go on at the next column's top
        m[:, rng.integers(0, w):] = True
        m[rng.integers(0, h):, :] ^= True
    elif kind == 3:
        m = rng.random((h, w)) > 0.97
    else:
        m[rng.integers(0, h), rng.integers(0, w)] = True
    return m


def test_crop_encoder_is_byte_identical_to_pycocotools_on_many_masks():
    rng = np.random.default_rng(7)
    cases = [_shapes(rng, *rng.integers(1, 40, 2)) for _ in range(1500)]
    cases += [np.ones((5, 7), bool), np.zeros((5, 7), bool), np.ones((1, 1), bool), np.zeros((1, 1), bool),
              np.ones((1, 9), bool), np.ones((9, 1), bool)]
    for m in cases:
        assert masks.encode(m)["counts"].encode() == _reference(m), m.astype(int)
    # Non-contiguous and Fortran-ordered inputs, and 0/1 integer masks.
    big = _shapes(rng, 96, 128)
    assert masks.encode(np.asfortranarray(big))["counts"].encode() == _reference(big)
    assert masks.encode(big[::2, ::3])["counts"].encode() == _reference(big[::2, ::3])
    assert masks.encode(big.astype(np.uint8))["counts"].encode() == _reference(big)


def test_crop_encoder_on_object_sized_blobs():
    from tests.bench.bench_registry import blobby_masks

    for m in blobby_masks(40, seed=3):
        assert masks.encode(m)["counts"].encode() == _reference(m)


def test_validate_many_returns_areas_and_agrees_with_validate_on_corruptions():
    rng = np.random.default_rng(11)
    good = [masks.encode(_shapes(rng, *rng.integers(1, 30, 2))) for _ in range(200)]
    assert masks.validate_many(good).tolist() == masks.areas(good).tolist()
    alphabet = [chr(c) for c in range(48, 112)]
    rejected = 0
    for t in range(1500):
        batch = [dict(good[i]) for i in rng.integers(0, len(good), 4)]
        k = int(rng.integers(0, 4))
        s = list(batch[k]["counts"])
        op = t % 4
        if op == 0:
            s[int(rng.integers(0, len(s)))] = alphabet[int(rng.integers(0, 64))]
        elif op == 1:
            s.insert(int(rng.integers(0, len(s) + 1)), alphabet[int(rng.integers(0, 64))])
        elif op == 2 and len(s) > 1:
            del s[int(rng.integers(0, len(s)))]
        else:
            s.append(chr(int(rng.integers(32, 127))))
        batch[k]["counts"] = "".join(s)
        try:
            masks.validate(batch[k])
            one_ok = True
        except ValueError:
            one_ok = False
        try:
            masks.validate_many(batch)
            many = None
        except ValueError as exc:
            many = str(exc)
        if one_ok:
            assert many is None
        else:
            rejected += 1
            assert many is not None and many.startswith("RLE "), many
    assert rejected > 1000  # the mutations mostly break the strings, so both paths were exercised


def test_validate_many_refuses_runs_that_wrap_int64():
    # Four runs of about 2**62 sum to 100 modulo 2**64: each run must stay within H*W.
    huge = (1 << 62)
    rle = mask_utils.frPyObjects({"size": [10, 10], "counts": [0, 100]}, 10, 10)
    assert masks.validate_many([{"size": [10, 10], "counts": rle["counts"].decode()}]).tolist() == [100]
    counts = _compress([huge, huge, huge, huge + 100])
    with pytest.raises(ValueError, match="RLE 0"):
        masks.validate_many([{"size": [10, 10], "counts": counts}])
    with pytest.raises(ValueError, match="corrupt"):
        masks.validate({"size": [10, 10], "counts": counts})


def _compress(runs):
    """pycocotools' counts-string compression (rleToString) in Python, for runs beyond uint32."""
    out = []
    for i, x in enumerate(runs):
        if i > 2:
            x -= runs[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = not ((c & 0x10) == 0 and x == 0 or (c & 0x10) and x == -1)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)
