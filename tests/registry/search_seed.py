"""Seeded registries for the search tests: clustered vectors, known categories and statuses."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from registry.facade import ObjectIn, Registry
from tests.registry.conftest import make_image

DIM = 16


def seeded(data_dir: Path, counts: dict[str, int], *, index: str = "exact", seed: int = 0,
           sync_on_write: bool = True) -> tuple[Registry, dict[str, np.ndarray]]:
    """A registry holding ``counts[category]`` objects per category.

    Vectors: one random centre per category plus noise (so a category filter and the query's
    neighbourhood agree in part); statuses cycle pending / approved / rejected; confidence
    rises with the object's index. Returns the registry and ``object_id -> vector``.
    """
    rng = np.random.default_rng(seed)
    reg = Registry(data_dir, embedding_dim=DIM, embedding_version="search-test", index=index,
                   sync_on_write=sync_on_write)
    img = make_image(data_dir.parent / f"seed-{seed}.png", 64, 48, seed=seed)
    sid = reg.register_source(img, copy=False)
    statuses = ("pending", "approved", "rejected")
    vectors: dict[str, np.ndarray] = {}
    for c, (name, n) in enumerate(counts.items()):
        centre = rng.standard_normal(DIM).astype(np.float32)
        vecs = centre + 0.8 * rng.standard_normal((n, DIM)).astype(np.float32)
        objs = [ObjectIn(name, (1, 1, 20, 20), confidence=float((i + 1) / (n + 1)), embedding=vecs[i],
                         validation_status=statuses[(i + c) % 3],
                         validated_by=None if (i + c) % 3 == 0 else "seed")
                for i in range(n)]
        res = reg.register_objects(sid, objs, dedupe=False)
        vectors.update(zip(res.object_ids, vecs, strict=True))
    return reg, vectors


def exact_top(reg: Registry, vectors: dict[str, np.ndarray], query: np.ndarray, k: int, **filters) -> list[str]:
    """The true top-k ids by cosine over the objects passing ``filters`` (read from SQLite)."""
    keep = {o["object_id"] for o in reg.iter_objects(**filters)} if filters else set(vectors)
    q = query / np.linalg.norm(query)
    scored = sorted(((-float(v @ q / np.linalg.norm(v)), oid) for oid, v in vectors.items() if oid in keep))
    return [oid for _, oid in scored[:k]]
