"""What to review next: uncertainty scores and selection strategies (pure numpy).

Inputs are parallel arrays over N candidate objects:

- ``confidence``: (N,) float in [0, 1], the detector's (derived) confidence of the object.
- ``class_scores``: optional, one entry per object: None, or a (K,) float array of per-class
  scores (any scale >= 0; normalised to sum 1 here). Where it is None the object is treated as a
  two-way decision "this label" (p = confidence) vs "not this label" (1 - p).
- ``embeddings``: (N, D) float32, L2-normalised (DINOv2 crops); distances are Euclidean.

Every uncertainty score is "higher = more uncertain = review first", in [0, 1].
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.al.kcenter import k_center_greedy

UNCERTAINTY = ("least-confident", "margin", "entropy")
STRATEGIES = (*UNCERTAINTY, "diversity", "hybrid", "random")


def check_strategy(strategy: str) -> str:
    """The strategy name, or ValueError naming the allowed ones."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")
    return strategy


def _probabilities(conf: float, scores: np.ndarray | None) -> np.ndarray:
    """(K,) probabilities summing to 1: normalised class scores, else [p, 1 - p]."""
    if scores is not None:
        s = np.clip(np.asarray(scores, np.float64).ravel(), 0.0, None)
        if s.size >= 2 and s.sum() > 0:
            return s / s.sum()
        if s.size == 1:
            p = float(np.clip(s[0], 0.0, 1.0))
            return np.array([p, 1.0 - p])
    p = float(np.clip(conf, 0.0, 1.0))
    return np.array([p, 1.0 - p])


def uncertainty(method: str, confidence: np.ndarray, class_scores: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
    """(N,) float64 uncertainty in [0, 1], higher = review first.

    Args:
        method: "least-confident" (1 - top probability; from confidence alone this is
            1 - confidence, the SQL ordering), "margin" (1 - (p1 - p2); from confidence alone
            1 - |2p - 1|, i.e. closest to 0.5 first) or "entropy" (Shannon entropy / log K).
        confidence: (N,) floats in [0, 1]; NaN (unknown) counts as 0.5.
        class_scores: None or a sequence of N entries, each None or (K,) per-class scores.

    Raises:
        ValueError: unknown method, or ``class_scores`` of another length than ``confidence``.
    """
    if method not in UNCERTAINTY:
        raise ValueError(f"uncertainty method: expected one of {UNCERTAINTY}, got {method!r}")
    conf = np.asarray(confidence, np.float64).ravel()
    conf = np.where(np.isfinite(conf), conf, 0.5)
    n = conf.size
    if class_scores is not None and len(class_scores) != n:
        raise ValueError(f"class_scores: expected one entry per object ({n}), got {len(class_scores)}")
    if class_scores is None or all(s is None for s in class_scores):
        p = np.clip(conf, 0.0, 1.0)
        if method == "least-confident":
            return 1.0 - p
        if method == "margin":
            return 1.0 - np.abs(2.0 * p - 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -(np.where(p > 0, p * np.log(p), 0.0) + np.where(p < 1, (1 - p) * np.log(1 - p), 0.0))
        return h / np.log(2.0)
    out = np.empty(n, np.float64)
    for i in range(n):
        probs = np.sort(_probabilities(conf[i], class_scores[i]))[::-1]
        if method == "least-confident":
            out[i] = 1.0 - probs[0]
        elif method == "margin":
            out[i] = 1.0 - (probs[0] - probs[1])
        else:
            nz = probs[probs > 0]
            out[i] = float(-(nz * np.log(nz)).sum() / np.log(len(probs)))
    return np.clip(out, 0.0, 1.0)


def top_uncertain(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` highest scores, highest first (ties: lower index first)."""
    scores = np.asarray(scores, np.float64).ravel()
    n = max(0, min(int(n), scores.size))
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((np.arange(scores.size), -scores))
    return order[:n].astype(np.int64)


def select(
    strategy: str,
    n: int,
    *,
    confidence: np.ndarray,
    class_scores: Sequence[np.ndarray | None] | None = None,
    embeddings: np.ndarray | None = None,
    seed_min_dist: np.ndarray | None = None,
    pool_factor: int = 3,
    rng: np.random.Generator | int | None = 0,
) -> np.ndarray:
    """Indices (into the N candidates) of the ``n`` objects to review first, in review order.

    Args:
        strategy: one of :data:`STRATEGIES`. "diversity" is k-center greedy on ``embeddings``
            (seeded by ``seed_min_dist``: each candidate's distance to the nearest object
            already reviewed); "hybrid" takes the ``pool_factor * n`` most uncertain (least
            confident) and then k-center among them; "random" is the baseline.
        n: how many to pick (fewer when there are fewer candidates).
        confidence: (N,) floats in [0, 1].
        class_scores: see :func:`uncertainty`.
        embeddings: (N, D) float32, needed by "diversity" and "hybrid".
        seed_min_dist: (N,) distances to the reviewed set (None: nothing reviewed yet).
        pool_factor: the hybrid's uncertain pool size, as a multiple of ``n``.
        rng: seed or generator for "random" and for k-center's first pick without seeds.

    Raises:
        ValueError: unknown strategy, ``n`` < 0, missing or misshapen embeddings.
    """
    check_strategy(strategy)
    if int(n) < 0:
        raise ValueError(f"n: expected a count >= 0, got {n}")
    conf = np.asarray(confidence, np.float64).ravel()
    total = conf.size
    n = min(int(n), total)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if strategy in UNCERTAINTY:
        return top_uncertain(uncertainty(strategy, conf, class_scores), n)
    if strategy == "random":
        return gen.permutation(total)[:n].astype(np.int64)
    if embeddings is None:
        raise ValueError(f"strategy {strategy!r} needs stored embeddings; label with an embedder or pick "
                         "least-confident/margin/entropy")
    emb = np.asarray(embeddings, np.float32)
    if emb.ndim != 2 or emb.shape[0] != total:
        raise ValueError(f"embeddings: expected shape ({total}, D), got {emb.shape}")
    seeds = None if seed_min_dist is None else np.asarray(seed_min_dist, np.float64).ravel()
    if strategy == "diversity":
        return k_center_greedy(emb, n, min_dist=seeds, rng=gen)
    pool = top_uncertain(uncertainty("least-confident", conf, class_scores), max(n, int(pool_factor) * n))
    picked = k_center_greedy(emb[pool], n, min_dist=None if seeds is None else seeds[pool], rng=gen)
    return pool[picked]
