"""Embedded Chroma (``chromadb.PersistentClient``) behind the :class:`VectorIndex` interface.

One collection per embedding model version (``objects_<version>``), cosine space, no embedding
function (the pipeline computes embeddings), telemetry off. Chroma is a mirror of the
``embeddings`` table in SQLite: anything that goes wrong with it is reported as a
``RuntimeError`` that says to rebuild it (``launch.py doctor --repair``), never repaired here.

Metadata: every write sends all four keys of :data:`METADATA_KEYS`. Chroma rejects an empty
metadata dict but accepts ``None`` values, and on an upsert of an existing id a ``None`` value
removes that key while absent keys would be kept from the old record. Sending every key (``None``
for unknown) therefore replaces the old metadata exactly, which keeps upserts idempotent, and an
unknown value is simply absent, so no filter on that key matches it (as in SQL and ExactIndex).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from registry.vectors.base import (
    METADATA_KEYS,
    DimensionMismatchError,
    Filter,
    VectorIndex,
    check_add,
    check_ids,
    check_query,
    normalize_where,
)

REPAIR_HINT = "run `python launch.py doctor --data DIR --repair` to rebuild it from SQLite"
_PAGE = 5000  # ids per page when listing the collection


def collection_name_for(version: str, prefix: str = "objects") -> str:
    """Chroma collection name for an embedding model version, e.g. ``objects_dinov2-base``.

    Chroma allows 3-512 characters from ``[a-zA-Z0-9._-]`` that start and end with a letter or
    digit; anything else in ``version`` becomes ``-``.

    Raises:
        ValueError: when ``version`` has no letter or digit at all.
    """
    cleaned = re.sub(r"[^a-zA-Z0-9._-]+", "-", str(version)).strip("._-")
    if not cleaned:
        raise ValueError(
            f"embedding version {version!r} has no letters or digits; pass e.g. 'dinov2-base'"
        )
    return f"{prefix}_{cleaned}"[:512].rstrip("._-")


def to_chroma_where(flt: Filter) -> dict[str, Any] | None:
    """Translates a :class:`Filter` into a Chroma ``where`` clause (``None`` = no filter)."""
    clauses: list[dict[str, Any]] = []
    if flt.categories is not None:
        if len(flt.categories) == 1:
            clauses.append({"category": {"$eq": flt.categories[0]}})
        else:
            clauses.append({"category": {"$in": list(flt.categories)}})
    if flt.project is not None:
        clauses.append({"project": {"$eq": flt.project}})
    if flt.min_confidence is not None:
        clauses.append({"confidence": {"$gte": float(flt.min_confidence)}})
    if flt.statuses is not None:
        if len(flt.statuses) == 1:
            clauses.append({"validation_status": {"$eq": flt.statuses[0]}})
        else:
            clauses.append({"validation_status": {"$in": list(flt.statuses)}})
    if not clauses:
        return None
    if len(clauses) == 1:
        return clauses[0]
    return {"$and": clauses}


class ChromaIndex(VectorIndex):
    """Vectors in a persistent Chroma collection.

    Args:
        path: the Chroma folder (``<data>/chroma``); created when missing.
        collection_name: Chroma collection name, see :func:`collection_name_for`.
        dim: vector dimension; checked against the dimension recorded in the collection.
        hnsw: optional HNSW settings for a NEW collection (``ef_construction``, ``max_neighbors``,
            ``ef_search``, ``num_threads``, ``batch_size``, ``sync_threshold``,
            ``resize_factor``); ``space`` is always cosine. For an existing collection only
            ``ef_search`` (and the other runtime settings) can change; they are applied.

    Raises:
        ValueError: for a bad name/dim, or an existing collection of another dimension.
        RuntimeError: when the Chroma folder cannot be opened (corrupt files).
    """

    def __init__(
        self, path: Path, collection_name: str, dim: int, hnsw: Mapping[str, Any] | None = None
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        hnsw = dict(hnsw or {})
        space = hnsw.pop("space", "cosine")
        if space != "cosine":
            raise ValueError(f"the index compares embeddings by cosine; got space={space!r}")
        self.dim = dim
        self.path = Path(path).expanduser().resolve()
        self.collection_name = collection_name
        self._closed = False
        self._client = None
        self._system = None
        self.path.mkdir(parents=True, exist_ok=True)
        self._hnsw = {"space": "cosine", **hnsw}
        self._forget_stale_system()
        try:
            self._connect()
            if self._apply_runtime_settings():
                # chromadb reads the HNSW runtime settings when it loads the index, so a
                # changed ef_search only applies after the client is reopened.
                self._release_client()
                self._connect()
        except DimensionMismatchError:
            self.close()
            raise
        except Exception as exc:  # chromadb raises many types for broken files
            self.close()
            raise self._storage_error("cannot be opened", exc) from exc

    # -- opening ---------------------------------------------------------------------------
    def _forget_stale_system(self) -> None:
        """Drops chromadb's cached client state for this path if the folder was deleted.

        chromadb shares one ``System`` per path within a process. If the folder was removed
        (e.g. by the doctor's tests or a user) while that System is cached, a new client would
        silently keep using the deleted files; forgetting it makes the reopen see the truth.
        """
        from chromadb.api.shared_system_client import SharedSystemClient

        if (self.path / "chroma.sqlite3").exists():
            return
        key = str(self.path)
        system = SharedSystemClient._identifier_to_system.pop(key, None)
        SharedSystemClient._identifier_to_refcount.pop(key, None)
        if system is not None:
            try:
                system.stop()
            except Exception:  # the files are gone; stopping is best effort
                pass

    def _connect(self) -> None:
        import chromadb
        from chromadb.config import Settings

        self._client = chromadb.PersistentClient(
            path=str(self.path), settings=Settings(anonymized_telemetry=False)
        )
        self._system = self._client._system
        self._max_batch = int(self._client.get_max_batch_size())
        self._collection = self._open_collection()

    def _release_client(self) -> None:
        """Closes our chromadb client unless its System was already replaced (folder deleted)."""
        from chromadb.api.shared_system_client import SharedSystemClient

        if self._client is None:
            return
        # If the folder was deleted and reopened meanwhile, chromadb's cache now holds a new
        # System for this path; releasing ours would stop the one the new index uses.
        current = SharedSystemClient._identifier_to_system.get(str(self.path))
        if current is self._system:
            try:
                self._client.close()
            except Exception:
                pass
        self._client = None
        self._system = None

    def _apply_runtime_settings(self) -> bool:
        """Writes changed runtime HNSW settings (e.g. ef_search) to the collection.

        Returns:
            True when something changed (the client must be reopened for it to apply).
        """
        runtime = {k: v for k, v in self._hnsw.items() if k in _RUNTIME_HNSW_KEYS}
        current = (self._collection.configuration or {}).get("hnsw") or {}
        changed = {k: v for k, v in runtime.items() if current.get(k) != v}
        if changed:
            self._collection.modify(configuration={"hnsw": changed})
        return bool(changed)

    def _open_collection(self):
        config = {"hnsw": dict(self._hnsw)}
        col = self._client.get_or_create_collection(
            self.collection_name,
            embedding_function=None,
            configuration=config,
            metadata={"dim": self.dim},
        )
        stored_dim = (col.metadata or {}).get("dim")
        if stored_dim is not None and int(stored_dim) != self.dim:
            raise DimensionMismatchError(
                f"embedding dimension mismatch: collection {self.collection_name!r} in {self.path} "
                f"holds {stored_dim}-d vectors, the index was opened with dim={self.dim}; use the "
                f"collection of the matching embedding version, or reset/rebuild this one"
            )
        return col

    def _storage_error(self, what: str, exc: BaseException) -> RuntimeError:
        return RuntimeError(
            f"Chroma index at {self.path} (collection {self.collection_name!r}) {what}: "
            f"{type(exc).__name__}: {exc}; {REPAIR_HINT}"
        )

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Turns backend failures into one RuntimeError the doctor and the UI can show."""
        if self._closed:
            raise RuntimeError(f"this ChromaIndex ({self.path}) was closed; open a new index")
        try:
            yield
        except Exception as exc:
            raise self._storage_error(f"failed to {what}", exc) from exc

    # -- VectorIndex -----------------------------------------------------------------------
    def add(
        self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[Mapping[str, Any] | None]
    ) -> None:
        # validate everything before changing anything
        id_list, arr, metas = check_add(ids, vectors, metadatas, self.dim)
        if not id_list:
            return
        with self._guard("add vectors"):
            for start in range(0, len(id_list), self._max_batch):
                end = start + self._max_batch
                self._collection.upsert(
                    ids=id_list[start:end],
                    embeddings=arr[start:end],
                    # Every key, None for unknown: see the module docstring.
                    metadatas=[{k: m[k] for k in METADATA_KEYS} for m in metas[start:end]],
                )

    def delete(self, ids: Sequence[str]) -> None:
        id_list = check_ids(ids)
        if not id_list:
            return
        with self._guard("delete vectors"):
            for start in range(0, len(id_list), self._max_batch):
                self._collection.delete(ids=id_list[start : start + self._max_batch])

    def query(
        self, vector: np.ndarray, k: int, where: Mapping[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        q = check_query(vector, self.dim, k)
        flt = normalize_where(where)
        if flt.matches_nothing:
            return []
        with self._guard("query"):
            # An empty collection answers with empty lists; no count() round trip needed.
            res = self._collection.query(
                query_embeddings=q[None, :],
                n_results=int(k),
                where=to_chroma_where(flt),
                include=["distances"],
            )
        ids = res["ids"][0]
        dists = res["distances"][0]
        # Chroma's cosine distance is 1 - cos; clamp rounding (identical -> 1.0, not 1.0000001).
        return [(i, float(min(1.0, 1.0 - d))) for i, d in zip(ids, dists, strict=True)]

    def fetch(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        id_list = check_ids(ids)
        out: dict[str, np.ndarray] = {}
        with self._guard("fetch vectors"):
            for start in range(0, len(id_list), self._max_batch):
                got = self._collection.get(ids=id_list[start:start + self._max_batch], include=["embeddings"])
                embs = got.get("embeddings")
                for i, oid in enumerate(got["ids"]):
                    if embs is not None and len(embs) > i and embs[i] is not None:
                        out[oid] = np.asarray(embs[i], dtype=np.float32)
        return out

    def count(self) -> int:
        with self._guard("count vectors"):
            return int(self._collection.count())

    def ids(self) -> set[str]:
        out: set[str] = set()
        with self._guard("list ids"):
            offset = 0
            while True:
                page = self._collection.get(include=[], limit=_PAGE, offset=offset)["ids"]
                out.update(page)
                if len(page) < _PAGE:
                    break
                offset += _PAGE
        return out

    def reset(self) -> None:
        with self._guard("reset"):
            try:
                self._client.delete_collection(self.collection_name)
            except Exception:
                pass  # already gone: recreating is all that is needed
            self._collection = self._open_collection()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._release_client()

    def check(self) -> None:
        """Raises ``RuntimeError`` when the folder, the collection or its HNSW files are broken.

        Checks the folder is there, counts, and runs one query with a stored vector so that a
        missing or damaged HNSW segment shows up here rather than in the UI.
        """
        if not (self.path / "chroma.sqlite3").exists():
            raise RuntimeError(
                f"Chroma index at {self.path} is missing (no chroma.sqlite3); {REPAIR_HINT}"
            )
        with self._guard("pass the health check"):
            self._client.get_collection(self.collection_name)
            n = self._collection.count()
            if n:
                got = self._collection.get(limit=1, include=["embeddings"])
                emb = np.asarray(got["embeddings"], dtype=np.float32)
                res = self._collection.query(query_embeddings=emb, n_results=1, include=[])
                if not res["ids"] or not res["ids"][0]:
                    raise RuntimeError("a stored vector is not found by a query for itself")

    def set_ef_search(self, ef_search: int) -> None:
        """Changes the HNSW search breadth (recall vs latency) and reopens the client.

        chromadb applies it when it loads the index; if another open index in this process
        shares the folder, the loaded index keeps the old value until both are reopened.
        """
        with self._guard("set ef_search"):
            self._hnsw["ef_search"] = int(ef_search)
            if self._apply_runtime_settings():
                self._release_client()
                self._connect()


_RUNTIME_HNSW_KEYS = ("ef_search", "num_threads", "batch_size", "sync_threshold", "resize_factor")
