"""k-center greedy (core-set selection, Sener & Savarese 2018) with memory-bounded distances.

Embeddings are (N, D) float32 rows (L2-normalised DINOv2 vectors); distances are Euclidean.
Memory is O(P·D) for the P candidates plus one (P, B) block per batch of B seeds, so the set
already reviewed can be streamed in batches of any total size.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def pairwise_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) float32 Euclidean distances between the rows of ``a`` and ``b``."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.clip(sq, 0.0, None))


def min_dist_to(candidates: np.ndarray, seed_batches: Iterable[np.ndarray], *, block: int = 1024) -> np.ndarray | None:
    """Each candidate's distance to its nearest seed, seeds streamed batch by batch.

    Args:
        candidates: (P, D) float32.
        seed_batches: an iterable of (B_i, D) float32 arrays (e.g. reviewed objects' vectors,
            read from the registry page by page).
        block: candidates per distance block (bounds the (block, B) temporary).

    Returns:
        (P,) float64 distances, or None when no seed came.

    Raises:
        ValueError: a seed batch of another dimension than the candidates.
    """
    cand = np.asarray(candidates, np.float32)
    out: np.ndarray | None = None
    for batch in seed_batches:
        seeds = np.asarray(batch, np.float32)
        if seeds.size == 0:
            continue
        if seeds.ndim != 2 or seeds.shape[1] != cand.shape[1]:
            raise ValueError(f"seed embeddings: expected shape (B, {cand.shape[1]}), got {seeds.shape}")
        if out is None:
            out = np.full(cand.shape[0], np.inf)
        for s in range(0, cand.shape[0], block):
            d = pairwise_dist(cand[s:s + block], seeds).min(1)
            out[s:s + block] = np.minimum(out[s:s + block], d)
    return out


def k_center_greedy(
    embeddings: np.ndarray, n: int, *, min_dist: np.ndarray | None = None, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Greedy 2-approximate k-center: repeatedly take the candidate farthest from everything
    chosen (and from the seeds), so ``n`` picks cover the embedding space.

    Args:
        embeddings: (P, D) float32 candidates.
        n: picks (at most P).
        min_dist: (P,) distance of each candidate to the nearest seed (objects already reviewed;
            see :func:`min_dist_to`), or None for no seeds: the first pick is then the candidate
            nearest the mean (a typical object), so the result is deterministic.
        rng: unused for the choice itself (kept for a common signature).

    Returns:
        (min(n, P),) int64 indices into ``embeddings`` in pick order.
    """
    del rng
    emb = np.asarray(embeddings, np.float32)
    p = emb.shape[0]
    n = max(0, min(int(n), p))
    if n == 0:
        return np.zeros(0, np.int64)
    picks: list[int] = []
    if min_dist is None or not np.isfinite(np.asarray(min_dist)).any():
        first = int(np.argmin(pairwise_dist(emb, emb.mean(0, keepdims=True))[:, 0]))
        dist = pairwise_dist(emb, emb[first:first + 1])[:, 0].astype(np.float64)
        picks.append(first)
    else:
        dist = np.asarray(min_dist, np.float64).copy()
        if dist.shape != (p,):
            raise ValueError(f"min_dist: expected shape ({p},), got {dist.shape}")
    while len(picks) < n:
        nxt = int(np.argmax(dist))
        if dist[nxt] < 0:  # everything picked already
            break
        picks.append(nxt)
        dist = np.minimum(dist, pairwise_dist(emb, emb[nxt:nxt + 1])[:, 0])
        dist[picks] = -1.0
    return np.asarray(picks[:n], np.int64)
