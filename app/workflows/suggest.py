"""Which pending objects to review next: uncertainty, diversity (k-center greedy on the stored
embeddings, seeded by what was already reviewed) and a hybrid, over a registry of any size.

Memory stays bounded for 100k+ objects: objects are streamed page by page; uncertainty keeps a
running top-k; diversity runs k-center over a candidate pool of at most ``pool_size`` objects
(a uniform reservoir sample when there are more) and streams the reviewed objects' vectors in
batches to seed it. Embeddings are the registry's ``(embedding_dim,)`` float32 vectors
(L2-normalised DINOv2 crops); objects without one take part in the uncertainty strategies only.

Per-class scores, where an object has them, come from its metadata: ``metadata.class_scores``
(``{class: score}`` or a list of scores) or ``metadata.classification`` (``top_k``/``topk``/
``scores`` as ``[{"class"|"category"|"label", "score"|"similarity"|"confidence"}]``, as
``classify`` writes). Without them margin and entropy use the two-way split (confidence,
1 - confidence).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.al.kcenter import min_dist_to
from pipeline.al.strategies import STRATEGIES, UNCERTAINTY, check_strategy, select, uncertainty

REVIEWED = ("approved", "rejected")
DEFAULT_VERSION = "dinov2-base"


def class_scores_of(meta: Any) -> np.ndarray | None:
    """(K,) float64 per-class scores from an object's metadata (see module docstring), or None."""
    if not isinstance(meta, dict):
        return None
    raw = meta.get("class_scores")
    if raw is None and isinstance(meta.get("classification"), dict):
        c = meta["classification"]
        raw = next((c[k] for k in ("top_k", "topk", "scores") if isinstance(c.get(k), list | dict)), None)
    if isinstance(raw, dict):
        vals = list(raw.values())
    elif isinstance(raw, list):
        vals = [next((v[k] for k in ("score", "similarity", "confidence") if k in v), None) if isinstance(v, dict)
                else v for v in raw]
    else:
        return None
    try:
        arr = np.asarray([float(v) for v in vals if v is not None], np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.size >= 2 and np.isfinite(arr).all() else None


def open_registry(data_dir: str | Path, version: str | None = None) -> Any:
    """A registry opened on the stored embeddings' version and size (no index sync at open).

    ``version`` None picks ``dinov2-base`` when stored, else the version with the most vectors
    (a folder labelled with DINOv2-small holds 384-d ones, the tests' tiny model 32-d).

    Raises:
        ValueError: ``version`` given but no embeddings of it are stored (names those that are).
    """
    from registry.facade import Registry
    from registry.queries import embedding_versions

    reg = Registry(data_dir, sync_on_write=False)
    versions = embedding_versions(reg.connection)
    if version is not None and not any(v["version"] == version for v in versions):
        reg.close()
        have = ", ".join(f"{v['version']} ({v['dim']}-d, {v['count']})" for v in versions) or "none"
        raise ValueError(f"--embedding-version: no stored embeddings of {version!r}; stored: {have}")
    pick = next((v for v in versions if v["version"] == (version or DEFAULT_VERSION)), versions[0] if versions else None)
    if pick is None or (pick["version"], pick["dim"]) == (reg.embedding_version, reg.embedding_dim):
        return reg
    reg.close()
    return Registry(data_dir, embedding_dim=int(pick["dim"]), embedding_version=pick["version"], sync_on_write=False)


def _filters(category: str | None, project: str | None) -> dict:
    return {"category": category or None, "project": project or None}


def _top_k(keep: tuple[list, np.ndarray], ids: list, scores: np.ndarray, k: int) -> tuple[list, np.ndarray]:
    """Merges a batch into a running top-k (highest scores; ties keep the earlier object)."""
    all_ids = keep[0] + ids
    all_scores = np.concatenate([keep[1], scores])
    order = np.lexsort((np.arange(len(all_ids)), -all_scores))[:k]
    return [all_ids[i] for i in order], all_scores[order]


def _reviewed_vectors(reg: Any, filters: dict, batch_size: int, counter: list[int]) -> Iterator[np.ndarray]:
    """The reviewed objects' vectors, one (B, D) array per page (counts them into ``counter``)."""
    page: list[str] = []
    for obj in reg.iter_objects(batch_size=batch_size, status=list(REVIEWED), **filters):
        if obj["has_embedding"]:
            page.append(obj["object_id"])
        if len(page) >= batch_size:
            _, vec = reg.get_embeddings(page)
            counter[0] += len(vec)
            yield vec
            page = []
    if page:
        _, vec = reg.get_embeddings(page)
        counter[0] += len(vec)
        yield vec


def suggest(
    reg: Any,
    *,
    n: int = 100,
    strategy: str = "least-confident",
    category: str | None = None,
    project: str | None = None,
    exclude: Sequence[str] = (),
    pool_size: int = 20_000,
    pool_factor: int = 3,
    batch_size: int = 2000,
    seed: int = 0,
) -> dict:
    """The ``n`` pending objects to review first under ``strategy``, in review order.

    Args:
        reg: a ``registry.facade.Registry`` (its embedding version is the one used).
        n: how many to suggest (>= 1).
        strategy: least-confident | margin | entropy | diversity | hybrid | random.
        category, project: restrict candidates (and the reviewed seeds) to these.
        exclude: ids never suggested (e.g. those a review queue has shown already).
        pool_size: most candidates k-center looks at (a uniform sample when there are more).
        pool_factor: hybrid's uncertain pool = ``pool_factor * n``.
        batch_size: objects (and vectors) read per page.
        seed: seed of the reservoir sample and of "random".

    Returns:
        ``{"strategy", "n", "ids", "scores" (uncertainty of each pick, least-confident for
        diversity), "candidates" (pending objects seen), "pool" (objects the strategy chose
        among), "without_embedding", "reviewed_seeds"}``.

    Raises:
        ValueError: bad ``n``/strategy, or diversity/hybrid with no stored embeddings.
    """
    check_strategy(strategy)
    if int(n) < 1:
        raise ValueError(f"n: expected at least 1 object to suggest, got {n}")
    if int(pool_size) < int(n):
        raise ValueError(f"pool_size: expected at least n ({n}), got {pool_size}")
    n = int(n)
    filters = _filters(category, project)
    skip = set(exclude)
    rng = np.random.default_rng(seed)
    need_emb = strategy in ("diversity", "hybrid")
    keep_k = n if strategy in UNCERTAINTY else (max(n, pool_factor * n) if strategy == "hybrid" else 0)
    top: tuple[list, np.ndarray] = ([], np.zeros(0))
    reservoir: list[tuple[str, float]] = []
    seen = without_emb = 0
    rank_by = strategy if strategy in UNCERTAINTY else "least-confident"
    page: list[dict] = []

    def flush(objs: list[dict]) -> None:
        nonlocal top, seen
        if not objs:
            return
        conf = np.array([o["confidence"] if o["confidence"] is not None else np.nan for o in objs], np.float64)
        scores = uncertainty(rank_by, conf, [class_scores_of(o.get("metadata")) for o in objs])
        ids = [o["object_id"] for o in objs]
        if keep_k:
            top = _top_k(top, ids, scores, keep_k)
        else:  # diversity / random: a uniform reservoir sample (Algorithm R)
            cap = pool_size if strategy == "diversity" else n
            for oid, s in zip(ids, scores, strict=True):
                seen += 1
                if len(reservoir) < cap:
                    reservoir.append((oid, float(s)))
                else:
                    j = int(rng.integers(0, seen))
                    if j < cap:
                        reservoir[j] = (oid, float(s))
            return
        seen += len(objs)

    for obj in reg.iter_objects(batch_size=batch_size, status="pending", **filters):
        if obj["object_id"] in skip:
            continue
        if need_emb and not obj["has_embedding"]:
            without_emb += 1
            continue
        page.append(obj)
        if len(page) >= batch_size:
            flush(page)
            page = []
    flush(page)
    seeds = [0]
    if keep_k:
        pool_ids, pool_scores = top
    else:
        pool_ids = [r[0] for r in reservoir]
        pool_scores = np.array([r[1] for r in reservoir])
    if strategy == "random":
        order = rng.permutation(len(pool_ids))[:n]
    elif strategy in UNCERTAINTY:
        order = np.arange(len(pool_ids))
    else:
        if not pool_ids:
            if without_emb:
                raise ValueError(f"strategy {strategy!r}: none of the {without_emb} pending objects has a stored "
                                 f"embedding of {reg.embedding_version!r}; label with an embedder (DINOv2) or use "
                                 "least-confident/margin/entropy")
            order = np.zeros(0, np.int64)
        else:
            got, emb = reg.get_embeddings(pool_ids)
            keep = {oid: k for k, oid in enumerate(pool_ids)}
            pool_scores = pool_scores[[keep[o] for o in got]]
            pool_ids = got
            dist = min_dist_to(emb, _reviewed_vectors(reg, filters, batch_size, seeds))
            # the pool already holds the most uncertain (hybrid) or a sample (diversity): 1 - score
            # gives select() back the same least-confident ranking
            order = select(strategy, n, confidence=1.0 - pool_scores, embeddings=emb, seed_min_dist=dist,
                           pool_factor=pool_factor)
    picks = [pool_ids[i] for i in order]
    return {"strategy": strategy, "n": n, "ids": picks, "scores": [float(pool_scores[i]) for i in order],
            "candidates": seen + without_emb, "pool": len(pool_ids), "without_embedding": without_emb,
            "reviewed_seeds": seeds[0]}


__all__ = ["STRATEGIES", "class_scores_of", "open_registry", "suggest"]
