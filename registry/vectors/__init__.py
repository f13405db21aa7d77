"""Vector indexes behind one interface (:class:`VectorIndex`), and a factory to open one.

    from registry.vectors import open_index
    index = open_index("chroma", data_dir, version="dinov2-base", dim=768)
    index.add(ids, vectors, metadatas)
    index.query(vector, k=10, where={"category": "car", "min_confidence": 0.5})

Kinds:
    ``"chroma"``: embedded Chroma under ``<data>/chroma``, one collection per embedding version.
    ``"exact"``: in-memory exact numpy search (tests, benchmarks; not persisted).
    ``"hnsw"``: hnswlib with numpy metadata filters under ``<data>/hnsw/<collection>``; fast
    filtered search where Chroma's SQLite-side filtering is slow (see bench_search).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from registry.vectors.base import (
    FILTER_KEYS,
    METADATA_KEYS,
    DimensionMismatchError,
    Filter,
    VectorIndex,
    normalize_metadata,
    normalize_where,
)
from registry.vectors.exact_index import ExactIndex

INDEX_KINDS: tuple[str, ...] = ("chroma", "exact", "hnsw")

__all__ = [
    "FILTER_KEYS",
    "INDEX_KINDS",
    "METADATA_KEYS",
    "DimensionMismatchError",
    "ExactIndex",
    "Filter",
    "VectorIndex",
    "chroma_dir",
    "normalize_metadata",
    "normalize_where",
    "open_index",
]


def chroma_dir(data_dir: Path) -> Path:
    """The Chroma folder inside a data folder (``<data>/chroma``)."""
    return Path(data_dir) / "chroma"


def open_index(
    kind: str,
    data_dir: Path,
    version: str,
    dim: int,
    *,
    hnsw: Mapping[str, Any] | None = None,
) -> VectorIndex:
    """Opens (creating when needed) the vector index for one embedding model version.

    Args:
        kind: one of :data:`INDEX_KINDS`.
        data_dir: the data folder; Chroma keeps its files in ``<data_dir>/chroma``.
        version: embedding model version, e.g. ``"dinov2-base"``; names the collection.
        dim: vector dimension (768 for DINOv2-base, 384 for -small).
        hnsw: optional HNSW settings: for Chroma see :class:`ChromaIndex`; for ``"hnsw"`` the
            keyword arguments of :class:`HnswIndex` (``max_neighbors``, ``ef_search``, ...).

    Raises:
        ValueError: for an unknown kind, or a stored collection of another dimension.
        RuntimeError: when the stored index cannot be opened (corrupt); rebuild it.
    """
    if kind == "exact":
        return ExactIndex(dim)
    if kind == "chroma":
        from registry.vectors.chroma_index import ChromaIndex, collection_name_for

        return ChromaIndex(chroma_dir(data_dir), collection_name_for(version), dim, hnsw=hnsw)
    if kind == "hnsw":
        from registry.vectors.chroma_index import collection_name_for
        from registry.vectors.hnsw_index import HnswIndex

        folder = Path(data_dir) / "hnsw" / collection_name_for(version)
        return HnswIndex(folder, dim, **dict(hnsw or {}))
    raise ValueError(f"unknown vector index kind {kind!r}; expected one of {list(INDEX_KINDS)}")
