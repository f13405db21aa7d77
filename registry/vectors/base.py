"""The vector index interface, and the input checks every implementation shares.

The registry keeps embeddings in SQLite (the source of truth) and mirrors them into a vector
index for similarity search. The index sits behind :class:`VectorIndex` so that embedded Chroma
can be swapped for exact numpy search (tests, benchmarks) or a server (Qdrant) later.

Conventions:
    * Vectors are float32 rows, shape ``(N, D)`` for adds and ``(D,)`` for a query. They need not
      be normalised: similarity is cosine, computed on the direction only.
    * Similarity is cosine similarity: 1.0 means the same direction, 0.0 orthogonal, -1.0 opposite.
      Results are ``(id, similarity)`` pairs, best first.
    * Metadata per vector holds exactly the keys in :data:`METADATA_KEYS`; a missing key and a
      ``None`` value mean the same thing ("unknown"), and an unknown value never matches a filter
      on that key (like SQL's NULL).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

METADATA_KEYS: tuple[str, ...] = ("category", "project", "confidence", "validation_status")
"""The metadata every vector carries, used for filtered search."""

FILTER_KEYS: tuple[str, ...] = ("category", "project", "min_confidence", "validation_status")
"""The keys a ``where`` dict may hold (see :func:`normalize_where`)."""


class DimensionMismatchError(ValueError):
    """A vector (or a stored collection) has another dimension than the index expects."""


@dataclass(frozen=True)
class Filter:
    """A validated ``where`` filter. ``None`` fields do not filter.

    Attributes:
        categories: keep vectors whose category is one of these (an empty tuple keeps none).
        project: keep vectors of this project.
        min_confidence: keep vectors whose confidence is known and ``>=`` this value.
        statuses: keep vectors whose validation status is one of these.
    """

    categories: tuple[str, ...] | None = None
    project: str | None = None
    min_confidence: float | None = None
    statuses: tuple[str, ...] | None = None

    @property
    def is_empty(self) -> bool:
        """True when nothing is filtered."""
        return (
            self.categories is None
            and self.project is None
            and self.min_confidence is None
            and self.statuses is None
        )

    @property
    def matches_nothing(self) -> bool:
        """True when an empty category or status list makes every vector fail the filter."""
        return self.categories == () or self.statuses == ()

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        """Whether one normalised metadata dict passes the filter."""
        if self.categories is not None and metadata.get("category") not in self.categories:
            return False
        if self.project is not None and metadata.get("project") != self.project:
            return False
        if self.min_confidence is not None:
            conf = metadata.get("confidence")
            if conf is None or conf < self.min_confidence:
                return False
        if self.statuses is not None and metadata.get("validation_status") not in self.statuses:
            return False
        return True


def _str_or_list(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence | set | frozenset) and all(isinstance(v, str) for v in value):
        return tuple(dict.fromkeys(value))  # de-duplicated, order kept
    raise ValueError(
        f"where[{key!r}] must be a string or a list of strings, got {value!r} "
        f"({type(value).__name__}); pass e.g. {key}='car' or {key}=['car', 'truck']"
    )


def normalize_where(where: Mapping[str, Any] | None) -> Filter:
    """Validates a ``where`` dict and turns it into a :class:`Filter`.

    Args:
        where: ``None`` or a dict with any of the keys ``category`` (str or list of str),
            ``project`` (str), ``min_confidence`` (float in [0, 1]) and ``validation_status``
            (str or list of str). Keys whose value is ``None`` are ignored, so callers can pass
            their optional arguments straight through.

    Raises:
        ValueError: for an unknown key or a value of the wrong type.
    """
    if where is None:
        return Filter()
    if not isinstance(where, Mapping):
        raise ValueError(f"where must be a dict or None, got {type(where).__name__}")
    unknown = sorted(set(where) - set(FILTER_KEYS))
    if unknown:
        raise ValueError(
            f"unknown filter key(s) {unknown}; expected a subset of {list(FILTER_KEYS)}"
        )
    categories = project = min_conf = statuses = None
    if where.get("category") is not None:
        categories = _str_or_list("category", where["category"])
    if where.get("project") is not None:
        project = where["project"]
        if not isinstance(project, str):
            raise ValueError(f"where['project'] must be a string, got {project!r}")
    if where.get("min_confidence") is not None:
        value = where["min_confidence"]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"where['min_confidence'] must be a finite number, got {value!r}")
        # Stored confidences lie in [0, 1]; clamping keeps "no lower bound" meaning the same in
        # every backend (a backend may encode an unknown confidence as a value below 0).
        min_conf = max(float(value), 0.0)
    if where.get("validation_status") is not None:
        statuses = _str_or_list("validation_status", where["validation_status"])
    return Filter(categories, project, min_conf, statuses)


def normalize_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Checks one vector's metadata and returns a dict with every key of :data:`METADATA_KEYS`.

    Missing keys become ``None``. ``category``, ``project`` and ``validation_status`` must be
    strings or ``None``; ``confidence`` a number in [0, 1] or ``None``.

    Raises:
        ValueError: for unknown keys or values of the wrong type or range.
    """
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise ValueError(f"metadata must be a dict or None, got {type(metadata).__name__}")
    unknown = sorted(set(metadata) - set(METADATA_KEYS))
    if unknown:
        raise ValueError(
            f"unknown metadata key(s) {unknown}; the index stores only {list(METADATA_KEYS)}"
        )
    out: dict[str, Any] = {}
    for key in ("category", "project", "validation_status"):
        value = metadata.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"metadata[{key!r}] must be a string or None, got {value!r}")
        out[key] = value
    conf = metadata.get("confidence")
    if conf is not None:
        if isinstance(conf, bool) or not isinstance(conf, int | float | np.floating | np.integer):
            raise ValueError(f"metadata['confidence'] must be a number or None, got {conf!r}")
        conf = float(conf)
        if not (0.0 <= conf <= 1.0):
            raise ValueError(f"metadata['confidence'] must lie in [0, 1], got {conf}")
    out["confidence"] = conf
    return {key: out[key] for key in METADATA_KEYS}


def check_vectors(vectors: Any, dim: int, n: int | None = None) -> np.ndarray:
    """Returns ``vectors`` as a C-contiguous float32 ``(N, dim)`` array after checking it.

    Raises:
        ValueError: for the wrong shape or dimension, a count that differs from ``n``,
            non-finite values, or an all-zero row (cosine similarity is undefined for it).
    """
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"vectors must have shape (N, {dim}), got shape {arr.shape}")
    if arr.shape[1] != dim:
        raise DimensionMismatchError(
            f"embedding dimension mismatch: the index holds {dim}-d vectors, got {arr.shape[1]}-d; "
            f"use an index for this embedding model version (or rebuild it with dim={arr.shape[1]})"
        )
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"got {arr.shape[0]} vectors for {n} ids; pass one vector per id")
    if arr.size and not np.isfinite(arr).all():
        raise ValueError("vectors contain NaN or infinite values; embeddings must be finite")
    if arr.size and (np.abs(arr).max(axis=1) == 0).any():
        raise ValueError("a vector is all zeros; cosine similarity is undefined for it")
    return np.ascontiguousarray(arr)


def check_query(vector: Any, dim: int, k: int) -> np.ndarray:
    """Returns the query as a float32 ``(dim,)`` array after checking it and ``k``.

    Raises:
        ValueError: for a wrong shape/dimension, non-finite or zero vector, or ``k < 1``.
    """
    arr = np.asarray(vector, dtype=np.float32)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise ValueError(f"the query must have shape ({dim},), got shape {arr.shape}")
    check_vectors(arr[None, :], dim)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return arr


def check_ids(ids: Sequence[str]) -> list[str]:
    """Returns ``ids`` as a list after checking they are non-empty, unique strings.

    Raises:
        ValueError: for a non-string or empty id, or an id given twice in one call.
    """
    if isinstance(ids, str):
        raise ValueError(f"ids must be a sequence of strings, got a single string {ids!r}")
    out = list(ids)
    for i in out:
        if not isinstance(i, str) or not i:
            raise ValueError(f"every id must be a non-empty string, got {i!r}")
    if len(set(out)) != len(out):
        seen: set[str] = set()
        for i in out:
            if i in seen:
                raise ValueError(f"id {i!r} appears twice in one call; pass each id once")
            seen.add(i)
    return out


def check_add(
    ids: Sequence[str], vectors: Any, metadatas: Sequence[Mapping[str, Any] | None], dim: int
) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """Validates the arguments of :meth:`VectorIndex.add` before anything is changed.

    Returns:
        (ids as a list, vectors as (N, dim) float32, normalised metadata dicts).

    Raises:
        ValueError: bad ids, vectors of the wrong shape/dimension, or a metadata count that
            differs from the id count.
    """
    id_list = check_ids(ids)
    arr = check_vectors(vectors, dim, n=len(id_list))
    metas = list(metadatas)
    if len(metas) != len(id_list):
        raise ValueError(f"got {len(metas)} metadata dicts for {len(id_list)} ids")
    return id_list, arr, [normalize_metadata(m) for m in metas]


class VectorIndex(ABC):
    """A similarity index of vectors keyed by string ids, with metadata filters.

    Implementations must be idempotent: adding an id again replaces its vector and metadata,
    deleting a missing id is a no-op. That lets an outbox relay retry batches blindly.
    """

    dim: int

    @abstractmethod
    def add(
        self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[Mapping[str, Any] | None]
    ) -> None:
        """Inserts or replaces vectors (upsert).

        Args:
            ids: unique, non-empty string ids (e.g. ``"obj_…"``).
            vectors: ``(N, dim)`` float32, one row per id; need not be normalised.
            metadatas: one dict per id with keys from :data:`METADATA_KEYS` (missing = None).

        Raises:
            ValueError: for a dimension mismatch or malformed ids/vectors/metadata.
            RuntimeError: when the backend's storage is unusable (corrupt or missing).
        """

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> None:
        """Removes vectors by id; ids not in the index are ignored."""

    @abstractmethod
    def query(
        self, vector: np.ndarray, k: int, where: Mapping[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """Finds the ``k`` most similar vectors that pass ``where``.

        Args:
            vector: ``(dim,)`` float32 query.
            k: how many results at most.
            where: optional filter, see :func:`normalize_where`.

        Returns:
            ``[(id, cosine similarity), ...]`` best first; fewer than ``k`` when fewer match.
        """

    @abstractmethod
    def count(self) -> int:
        """Number of vectors in the index."""

    @abstractmethod
    def ids(self) -> set[str]:
        """Every id in the index (for consistency checks against SQLite)."""

    @abstractmethod
    def reset(self) -> None:
        """Drops every vector (the index stays usable, empty)."""

    @abstractmethod
    def close(self) -> None:
        """Releases the backend's resources; the object is unusable afterwards."""

    def fetch(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of ``ids`` that the index can return, ``id -> (dim,) float32``.

        For consistency checks (the doctor compares them with SQLite). Ids the index does not
        hold, or cannot read back, are absent from the result.

        Raises:
            NotImplementedError: the backend cannot return stored vectors.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot return stored vectors")

    def flush(self) -> None:
        """Makes written vectors durable. No-op where every write already is (Chroma).

        In-memory backends that persist by snapshot (``HnswIndex``) write their files here;
        call it after a sync, not after every add: a snapshot of 1M × 768 is ~3 GB.
        """
        return None  # durable on write by default; snapshot backends override

    def check(self) -> None:
        """Raises ``RuntimeError`` naming the problem when the index is unusable.

        The default exercises :meth:`count`; backends add what can break in their storage.
        """
        self.count()

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
