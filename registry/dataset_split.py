"""Leak-free, deterministic train/val/test assignment of source groups (see :mod:`registry.datasets`).

Sources are joined into groups by union-find (:class:`_Groups`); groups are ordered by
``blake2b(f"{seed}:{group key}")`` (:func:`_order_key`), never by Python's salted ``hash()``,
and each goes to the split furthest below its target (:func:`_assign`). No SQL here.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "val", "test")
DEFAULT_SPLIT = (0.8, 0.1, 0.1)


@dataclass
class _Groups:
    """Union-find over source ids."""

    parent: dict[str, str] = field(default_factory=dict)

    def add(self, item: str) -> None:
        self.parent.setdefault(item, item)

    def find(self, item: str) -> str:
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:  # path compression
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The smaller id is the root: the group key is then independent of merge order.
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra


def parse_split(split: str | Sequence[float] | dict | None) -> dict[str, float]:
    """Split ratios as ``{"train": a, "val": b, "test": c}`` summing to 1.

    Accepts ``"0.8,0.1,0.1"``, a 2- or 3-sequence (missing test = 0), or a dict. Ratios are
    normalised when they sum to something else (e.g. ``"8,1,1"``).
    """
    if split is None:
        split = DEFAULT_SPLIT
    if isinstance(split, dict):
        values = [float(split.get(name, 0.0)) for name in SPLITS]
    else:
        if isinstance(split, str):
            try:
                values = [float(v) for v in split.split(",") if v.strip()]
            except ValueError as exc:
                raise ValueError(f"expected split ratios like '0.8,0.1,0.1', got {split!r}") from exc
        else:
            values = [float(v) for v in split]
        if len(values) not in (2, 3):
            raise ValueError(f"expected 2 or 3 split ratios (train,val[,test]), got {len(values)}: {split!r}")
        values = (values + [0.0])[:3]
    if any(v < 0 for v in values) or sum(values) <= 0 or values[0] <= 0:
        raise ValueError(
            f"expected non-negative split ratios with train > 0, got {values}; e.g. '0.8,0.1,0.1'"
        )
    total = sum(values)
    return {name: v / total for name, v in zip(SPLITS, values, strict=True)}


def _order_key(seed: int, key: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=16).digest()


def _near_duplicate_pairs(
    source_ids: list[str], means: np.ndarray, threshold: float, chunk: int = 1024
) -> Iterable[tuple[str, str]]:
    """Pairs of sources whose mean embeddings have cosine ≥ threshold (upper triangle only)."""
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    unit = (means / np.maximum(norms, 1e-12)).astype(np.float32)
    for start in range(0, len(unit), chunk):
        block = unit[start : start + chunk] @ unit.T  # (chunk, n): bounded memory
        rows, cols = np.nonzero(block >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if c > i:
                yield source_ids[i], source_ids[c]


def _assign(groups: list[tuple[bytes, str, int]], ratios: dict[str, float]) -> dict[str, str]:
    """Greedy deterministic assignment of (order key, group key, image count) to splits."""
    active = [s for s in SPLITS if ratios[s] > 0]
    counts = dict.fromkeys(SPLITS, 0)
    members: dict[str, list[tuple[bytes, str, int]]] = {s: [] for s in SPLITS}
    assigned = 0
    for item in sorted(groups):
        size = item[2]
        total = assigned + size
        # The split furthest below its target after adding this group; ties: SPLITS order.
        best = max(active, key=lambda s: (ratios[s] * total - counts[s], -SPLITS.index(s)))
        counts[best] += size
        members[best].append(item)
        assigned = total
    # Every non-zero split gets at least one group when there are enough groups.
    if len(groups) >= len(active):
        for split in active:
            if not members[split]:
                donor = max(
                    (s for s in active if len(members[s]) > 1), key=lambda s: counts[s], default=None
                )
                if donor is None:
                    continue
                item = min(members[donor], key=lambda g: (g[2], g[0]))  # the smallest group
                members[donor].remove(item)
                counts[donor] -= item[2]
                members[split].append(item)
                counts[split] += item[2]
    return {g[1]: split for split in SPLITS for g in members[split]}
