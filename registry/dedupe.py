"""Duplicate detection at registration: which new objects overlap a stored or earlier one.

Coordinate conventions: boxes are ``xywh`` in absolute pixels of the source image (x = column,
y = row); masks are compressed COCO RLEs of the image's size (``{"size": [H, W], "counts"}``).

An object is a duplicate when its IoU with an object of the same category exceeds the
threshold ``t``: mask IoU (pycocotools) when both have masks, box IoU (pycocotools' ``bbIou``
formula, ``iscrowd=0``) otherwise. New objects are checked against the source's stored objects
first (the best match wins, ties to the first stored one), then greedily in input order against
the earlier new objects that were kept (best match, ties to the earliest).

Only pairs whose extents overlap can have an IoU above 0, so only those are ever compared.
Candidates come from a sweep over x: every object is given one sort key ``category rank *
stride + x0`` (the stride keeps categories apart), so the objects of the same category whose x
range may reach another one's lie in one contiguous run of the sorted order, found with two
``searchsorted`` calls. Pairs are generated for a chunk of rows at a time, at most
``PAIR_BUDGET`` per chunk, then filtered on the exact overlap: memory is ``O(N + PAIR_BUDGET)``
whatever the number of objects (20,000 boxes of one category on one image used to allocate
all-pairs matrices of ~23 GB).

The extent used to find candidates is the object's box, widened to its mask's tight box when
it has a mask (a mask may leave its box), so no pair with a non-zero IoU is missed. Mask pairs
are pruned with exact bounds before pycocotools runs: IoU <= min(area) / max(area), then
IoU <= I / (area_a + area_b - I) with I = min(area_a, area_b, the masks' box intersection).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from registry import masks as rle_ops
from registry import rle_iou

__all__ = ["Items", "find_duplicates", "PAIR_BUDGET"]

#: Candidate pairs generated per chunk (each costs ~150 bytes of temporaries: ~40 MB).
PAIR_BUDGET = 1 << 18
#: Rows per block of the within-batch sweep (each block re-sorts the earlier alive items).
LOWER_BLOCK = 1024


@dataclass
class Items:
    """Objects of one source as parallel arrays.

    Attributes:
        category: ``(N,)`` int category ids.
        box: ``(N, 4)`` float64 ``xywh`` absolute pixels.
        rle: ``N`` compressed RLEs or None (no mask).
        area: ``(N,)`` float64 mask areas in pixels (ignored where ``rle`` is None).
    """

    category: np.ndarray
    box: np.ndarray
    rle: list[dict | None]
    area: np.ndarray
    #: Per-item caches filled on first use: mask tight boxes (xywh, NaN = not computed yet) and
    #: pycocotools-ready RLEs (bytes counts), so each mask is converted and boxed at most once.
    _mask_box: np.ndarray | None = field(default=None, repr=False, compare=False)
    _coco: list | None = field(default=None, repr=False, compare=False)

    @classmethod
    def build(cls, category: Sequence[int], box: Sequence, rle: Sequence[dict | None],
              area: Sequence[float | None], coco: Sequence[dict | None] | None = None,
              mask_box: Sequence | None = None) -> Items:
        """Items from plain sequences (``area`` entries may be None where there is no mask;
        ``coco``, where given, holds each RLE already in pycocotools form or None;
        ``mask_box``, where given, each mask's tight xywh box already computed or None, or
        all of them as one ``(N, 4)`` array with NaN rows for those not computed)."""
        n = len(category)
        boxes = None
        if isinstance(mask_box, np.ndarray):  # (N, 4), NaN rows where not computed
            boxes = np.array(mask_box, dtype=np.float64).reshape(n, 4)
        elif mask_box is not None:
            boxes = np.full((n, 4), np.nan)
            for i, b in enumerate(mask_box):
                if b is not None:
                    boxes[i] = b
        return cls(
            category=np.asarray(category, dtype=np.int64).reshape(n),
            box=np.asarray(box, dtype=np.float64).reshape(n, 4),
            rle=list(rle),
            area=np.array([0.0 if a is None else float(a) for a in area], dtype=np.float64).reshape(n),
            _mask_box=boxes,
            _coco=None if coco is None else list(coco),
        )

    def __len__(self) -> int:
        return len(self.rle)

    def has_mask(self) -> np.ndarray:
        return np.array([r is not None for r in self.rle], dtype=bool)

    def extent_xyxy(self) -> np.ndarray:
        """``(N, 4)`` xyxy: the box, widened to the mask's tight box where there is a mask."""
        b = self.box
        ext = np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], axis=1)
        masked = np.flatnonzero(self.has_mask())
        if masked.size:
            mb = self.mask_boxes(masked)
            mx = np.stack([mb[:, 0], mb[:, 1], mb[:, 0] + mb[:, 2], mb[:, 1] + mb[:, 3]], axis=1)
            ext[masked, :2] = np.minimum(ext[masked, :2], mx[:, :2])
            ext[masked, 2:] = np.maximum(ext[masked, 2:], mx[:, 2:])
        return ext

    def mask_boxes(self, idx: np.ndarray) -> np.ndarray:
        """``(len(idx), 4)`` xywh tight boxes of the masks of items ``idx`` (all must have one),
        computed with one pycocotools call for those not boxed yet."""
        if self._mask_box is None:
            self._mask_box = np.full((len(self), 4), np.nan)
        idx = np.asarray(idx, dtype=np.int64)
        todo = np.unique(idx[np.isnan(self._mask_box[idx, 0])])
        if todo.size:
            self._mask_box[todo] = rle_ops.bboxes_coco([self.coco(i) for i in todo.tolist()])
        return self._mask_box[idx]

    def coco(self, i: int) -> dict:
        """Item ``i``'s RLE in pycocotools' form (bytes counts), converted once."""
        if self._coco is None:
            self._coco = [None] * len(self)
        c = self._coco[i]
        if c is None:
            c = self._coco[i] = rle_ops.to_coco(self.rle[i])
        return c


def find_duplicates(new: Items, stored: Items, t: float) -> dict[int, tuple[str, int]]:
    """Which new items duplicate a stored or an earlier kept new item.

    Args:
        new: the batch being registered, in input order.
        stored: the source's objects already in the registry.
        t: the IoU threshold (a pair is a duplicate when IoU > t).

    Returns:
        ``{new index: ("stored", stored index) | ("new", earlier new index)}``.
    """
    dup: dict[int, tuple[str, int]] = {}
    if not len(new):
        return dup
    ext_new = new.extent_xyxy()
    if len(stored):
        ext_old = stored.extent_xyxy()
        for pi, pj in _candidate_chunks(new.category, ext_new, stored.category, ext_old, lower=False):
            pi, pj, v = _over(new, stored, pi, pj, t)
            for i, j in zip(*_best_per_row(pi, pj, v), strict=True):
                dup[int(i)] = ("stored", int(j))
    if len(new) < 2:
        return dup
    kept = np.ones(len(new), dtype=bool)
    if dup:
        kept[list(dup)] = False
    # Only kept items can be matched, and only kept rows need matching: ``kept`` is passed as a
    # live filter (it only ever turns False, so filtering by it early is always safe).
    for pi, pj in _candidate_chunks(new.category, ext_new, new.category, ext_new, lower=True, alive=kept):
        pi, pj, v = _over(new, new, pi, pj, t)
        if not pi.size:
            continue
        # Rows of this chunk in input order; pairs best first (IoU desc, then earliest j).
        order = np.lexsort((pj, -v, pi))
        pi, pj, v = pi[order], pj[order], v[order]
        starts = np.flatnonzero(np.r_[True, pi[1:] != pi[:-1]])
        ends = np.r_[starts[1:], pi.size]
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            i = int(pi[s])
            if not kept[i]:
                continue
            hit = np.flatnonzero(kept[pj[s:e]])  # kept is final for every j < i by now
            if hit.size:
                kept[i] = False
                dup[i] = ("new", int(pj[s + hit[0]]))
    return dup


def _candidate_chunks(cat_a: np.ndarray, ext_a: np.ndarray, cat_b: np.ndarray, ext_b: np.ndarray,
                      *, lower: bool, alive: np.ndarray | None = None):
    """Yields ``(pi, pj)`` index arrays of same-category pairs whose extents overlap (positive
    width and height), rows of ``a`` in increasing order, at most ~``PAIR_BUDGET`` pairs
    generated per chunk.

    ``lower`` keeps only ``pj < pi`` (``a`` and ``b`` the same items): rows then go in blocks of
    ``LOWER_BLOCK``, each swept against the columns before the block's end only. ``alive``
    (read before each block and chunk) drops pairs whose row or column is False; the columns
    of a block are the alive ones, so 20,000 copies of one box cost a few chunks, not 200
    million pairs.
    """
    cats = np.unique(np.concatenate([cat_a, cat_b]))
    rank_a, rank_b = np.searchsorted(cats, cat_a), np.searchsorted(cats, cat_b)
    lo_x = min(ext_a[:, 0].min(), ext_b[:, 0].min())
    wmax = float((ext_b[:, 2] - ext_b[:, 0]).max())
    span = max(ext_a[:, 2].max(), ext_b[:, 2].max()) - lo_x
    stride = span + wmax + 4.0  # the search window of a row never reaches another category
    key_b = rank_b * stride + (ext_b[:, 0] - lo_x)
    base = rank_a * stride - lo_x
    # b.x0 < a.x1 and b.x1 > a.x0 imply a.x0 - wmax < b.x0 < a.x1; margins keep a superset.
    win_lo, win_hi = base + ext_a[:, 0] - wmax - 1.0, base + ext_a[:, 2] + 1.0
    ax0, ay0, ax1, ay1 = (np.ascontiguousarray(ext_a[:, c]) for c in range(4))
    bx0, by0, bx1, by1 = (np.ascontiguousarray(ext_b[:, c]) for c in range(4))
    n = len(cat_a)
    step = LOWER_BLOCK if lower else n
    for row0 in range(0, n, step):
        row1 = min(n, row0 + step)
        cols = np.arange(row1 if lower else len(cat_b))
        if alive is not None:
            cols = cols[alive[cols]]
        order_b = cols[np.argsort(key_b[cols], kind="stable")]
        sorted_b = key_b[order_b]
        lo = np.searchsorted(sorted_b, win_lo[row0:row1], side="left")
        counts = np.maximum(np.searchsorted(sorted_b, win_hi[row0:row1], side="right") - lo, 0)
        cum = np.cumsum(counts)
        row = row0
        while row < row1:
            k0 = row - row0
            done = cum[k0 - 1] if k0 else 0
            end = int(np.searchsorted(cum, done + PAIR_BUDGET, side="right")) + row0
            end = min(max(end, row + 1), row1)
            c = counts[k0:end - row0]
            total = int(c.sum())
            if total:
                pi = np.repeat(np.arange(row, end), c)
                offs = np.arange(total) - np.repeat(np.cumsum(c) - c, c)
                pj = order_b[np.repeat(lo[k0:end - row0], c) + offs]
                # The cheap filters first, then the overlap on 1-D columns (gathering rows of
                # the (N, 4) extents cost ~4x as much on the bench's batches).
                pre = pj < pi if lower else None
                if alive is not None:
                    live = alive[pi] & alive[pj]
                    pre = live if pre is None else pre & live
                if pre is not None:
                    pi, pj = pi[pre], pj[pre]
                keep = ((np.minimum(ax1[pi], bx1[pj]) - np.maximum(ax0[pi], bx0[pj]) > 0)
                        & (np.minimum(ay1[pi], by1[pj]) - np.maximum(ay0[pi], by0[pj]) > 0)
                        & (cat_a[pi] == cat_b[pj]))
                pi, pj = pi[keep], pj[keep]
                if pi.size:
                    order = np.lexsort((pj, pi))
                    yield pi[order], pj[order]
            row = end


def _over(a: Items, b: Items, pi: np.ndarray, pj: np.ndarray, t: float):
    """The candidate pairs whose IoU exceeds ``t``: ``(pi, pj, iou)``."""
    v = _pair_iou(a, b, pi, pj, t)
    keep = v > t
    return pi[keep], pj[keep], v[keep]


def _best_per_row(pi: np.ndarray, pj: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row in ``pi``: its pair with the highest IoU, ties to the smallest ``pj``."""
    if not pi.size:
        return pi, pj
    order = np.lexsort((pj, -v, pi))
    pi, pj = pi[order], pj[order]
    first = np.r_[True, pi[1:] != pi[:-1]]
    return pi[first], pj[first]


def _pair_iou(a: Items, b: Items, pi: np.ndarray, pj: np.ndarray, t: float) -> np.ndarray:
    """IoU of the pairs ``(a[pi], b[pj])``: mask IoU where both have masks, box IoU otherwise;
    mask pairs that provably cannot exceed ``t`` are left at 0 without running pycocotools."""
    ba, bb = a.box[pi], b.box[pj]
    # pycocotools' bbIou formula and operation order (iscrowd=0).
    w = np.minimum(ba[:, 0] + ba[:, 2], bb[:, 0] + bb[:, 2]) - np.maximum(ba[:, 0], bb[:, 0])
    h = np.minimum(ba[:, 1] + ba[:, 3], bb[:, 1] + bb[:, 3]) - np.maximum(ba[:, 1], bb[:, 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    union = ba[:, 2] * ba[:, 3] + bb[:, 2] * bb[:, 3] - inter
    vals = np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)
    masked = a.has_mask()[pi] & b.has_mask()[pj]
    if not masked.any():
        return vals
    area_a, area_b = a.area[pi], b.area[pj]
    big = np.maximum(area_a, area_b)
    vals[masked] = 0.0
    k = np.flatnonzero(masked & (np.minimum(area_a, area_b) >= t * big))
    if not k.size:
        return vals
    ma, mb = a.mask_boxes(pi[k]), b.mask_boxes(pj[k])
    iw = np.minimum(ma[:, 0] + ma[:, 2], mb[:, 0] + mb[:, 2]) - np.maximum(ma[:, 0], mb[:, 0])
    ih = np.minimum(ma[:, 1] + ma[:, 3], mb[:, 1] + mb[:, 3]) - np.maximum(ma[:, 1], mb[:, 1])
    # |A & B| <= I = min(area_a, area_b, box intersection) and |A | B| = a + b - |A & B|
    # >= a + b - I, so IoU <= I / (a + b - I): pairs below t are left at 0 (a tiny margin
    # keeps pairs at the bound for pycocotools' own rounding).
    inter = np.minimum(np.minimum(area_a[k], area_b[k]), np.clip(iw, 0, None) * np.clip(ih, 0, None))
    union = area_a[k] + area_b[k] - inter
    bound = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    k = k[bound >= t - 1e-9]
    if not k.size:
        return vals
    # Exact mask IoU for what is left: one compiled pass over all the pairs (pycocotools'
    # rleIou, bit-identical) where every mask involved has the same size and ASCII counts.
    ua, ia = np.unique(pi[k], return_inverse=True)
    ub, ib = np.unique(pj[k], return_inverse=True)
    rles = [a.rle[i] for i in ua.tolist()] + [b.rle[j] for j in ub.tolist()]
    if len({(r["size"][0], r["size"][1]) for r in rles}) == 1:
        try:
            vals[k] = rle_iou.pair_iou([r["counts"] for r in rles], ia, ib + len(ua))
            return vals
        except (TypeError, ValueError):
            pass  # pycocotools below
    # Else one pycocotools call per item of ``a`` (it words mixed sizes as -1: no duplicate).
    ks = k[np.argsort(pi[k], kind="stable")]
    if ks.size:
        bounds = np.flatnonzero(np.r_[True, pi[ks][1:] != pi[ks][:-1], True])
        for s, e in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            sel = ks[s:e]
            vals[sel] = rle_ops.iou_coco([a.coco(int(pi[sel[0]]))], [b.coco(j) for j in pj[sel].tolist()])[0]
    return vals
