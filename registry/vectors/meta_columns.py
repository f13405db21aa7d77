"""Vector metadata as dense numpy columns, so filters are vectorised comparisons.

Strings (category, project, validation status) are interned to int32 codes (-1 = unknown);
confidence is float64 with NaN for unknown (NaN >= x is False, so an unknown confidence never
passes ``min_confidence``). Rows are addressed by an integer slot chosen by the caller.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from registry.vectors.base import Filter

UNKNOWN = -1
_NO_MATCH = -2  # a code no row has: filtering on a value never stored matches nothing


class MetaColumns:
    """Growable metadata columns indexed by slot."""

    def __init__(self, capacity: int = 1024) -> None:
        cap = max(int(capacity), 1)
        self.category = np.full(cap, UNKNOWN, dtype=np.int32)
        self.project = np.full(cap, UNKNOWN, dtype=np.int32)
        self.status = np.full(cap, UNKNOWN, dtype=np.int32)
        self.confidence = np.full(cap, np.nan, dtype=np.float64)
        self.vocab: list[str] = []
        self._codes: dict[str, int] = {}

    @property
    def capacity(self) -> int:
        return int(self.category.shape[0])

    def code(self, value: str | None) -> int:
        """The code of a string, interning it on first sight (``None`` -> :data:`UNKNOWN`)."""
        if value is None:
            return UNKNOWN
        code = self._codes.get(value)
        if code is None:
            code = self._codes[value] = len(self.vocab)
            self.vocab.append(value)
        return code

    def grow(self, needed: int) -> None:
        """Makes room for slots ``0 .. needed-1`` (doubling, so appends stay amortised O(1))."""
        cap = self.capacity
        if needed <= cap:
            return
        new_cap = max(needed, cap * 2)
        for name, fill in (
            ("category", UNKNOWN),
            ("project", UNKNOWN),
            ("status", UNKNOWN),
            ("confidence", np.nan),
        ):
            old = getattr(self, name)
            new = np.full(new_cap, fill, dtype=old.dtype)
            new[:cap] = old
            setattr(self, name, new)

    def set(self, slot: int, meta: dict[str, Any]) -> None:
        """Stores one normalised metadata dict (see ``normalize_metadata``) at ``slot``."""
        self.category[slot] = self.code(meta["category"])
        self.project[slot] = self.code(meta["project"])
        self.status[slot] = self.code(meta["validation_status"])
        conf = meta["confidence"]
        self.confidence[slot] = np.nan if conf is None else conf

    def clear(self, slot: int) -> None:
        self.category[slot] = self.project[slot] = self.status[slot] = UNKNOWN
        self.confidence[slot] = np.nan

    def copy_row(self, src: int, dst: int) -> None:
        for col in (self.category, self.project, self.status, self.confidence):
            col[dst] = col[src]

    def mask(self, flt: Filter, n: int) -> np.ndarray | None:
        """Boolean mask over slots ``0 .. n-1``, or ``None`` when nothing is filtered."""
        if flt.is_empty:
            return None
        mask = np.ones(n, dtype=bool)
        if flt.categories is not None:
            mask &= self._isin(self.category[:n], flt.categories)
        if flt.project is not None:
            mask &= self.project[:n] == self._codes.get(flt.project, _NO_MATCH)
        if flt.min_confidence is not None:
            with np.errstate(invalid="ignore"):
                mask &= self.confidence[:n] >= flt.min_confidence
        if flt.statuses is not None:
            mask &= self._isin(self.status[:n], flt.statuses)
        return mask

    def _isin(self, column: np.ndarray, values: tuple[str, ...]) -> np.ndarray:
        codes = [self._codes[v] for v in values if v in self._codes]
        if len(codes) == 1:
            return column == codes[0]  # much faster than isin for the common single value
        return np.isin(column, codes)

    # -- persistence -------------------------------------------------------------------------
    def arrays(self, n: int) -> dict[str, np.ndarray]:
        """The first ``n`` slots and the vocabulary, for ``np.savez``."""
        return {
            "category": self.category[:n],
            "project": self.project[:n],
            "status": self.status[:n],
            "confidence": self.confidence[:n],
            "vocab": np.asarray(self.vocab, dtype=np.str_),  # no pickle needed to load
        }

    @classmethod
    def from_arrays(cls, arrays: Any, capacity: int) -> MetaColumns:
        cols = cls(max(capacity, len(arrays["category"])))
        n = len(arrays["category"])
        cols.category[:n] = arrays["category"]
        cols.project[:n] = arrays["project"]
        cols.status[:n] = arrays["status"]
        cols.confidence[:n] = arrays["confidence"]
        for value in arrays["vocab"].tolist():
            cols.code(str(value))
        return cols
