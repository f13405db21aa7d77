"""Baselines the learned quality score is measured against (pure numpy).

Both return a quality in [0, 1], higher = better (the learned score's direction):

- :func:`confidence_quality`: the detector's confidence, i.e. "1 - confidence" as error score.
- :func:`knn_label_quality`: 0 where an object's label differs from the majority label of its
  k nearest neighbours (cosine on L2-normalised embeddings, itself excluded), else 1.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confidence_quality(confidence: Sequence[float | None]) -> np.ndarray:
    """(N,) float64: the confidence itself (unknown = 0.5)."""
    c = np.array([np.nan if v is None else float(v) for v in confidence], np.float64)
    return np.where(np.isfinite(c), c, 0.5)


def knn_label_quality(embeddings: np.ndarray, labels: Sequence, k: int = 10, *, block: int = 2048) -> np.ndarray:
    """(N,) float64: 1.0 where the label agrees with the majority of its ``k`` nearest
    neighbours (ties: agreement), else 0.0; neighbours by cosine similarity, computed in blocks
    of ``block`` rows so memory is O(block · N).

    Raises:
        ValueError: embeddings not (N, D) or a label count other than N.
    """
    x = np.asarray(embeddings, np.float32)
    if x.ndim != 2 or x.shape[0] != len(labels):
        raise ValueError(f"expected embeddings (N, D) and N labels, got {x.shape} and {len(labels)} labels")
    _, lab = np.unique(np.asarray([str(v) for v in labels]), return_inverse=True)
    n = len(x)
    k = max(1, min(int(k), n - 1)) if n > 1 else 0
    out = np.ones(n, np.float64)
    if k == 0:
        return out
    norm = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n_labels = int(lab.max()) + 1
    for s in range(0, n, block):
        sim = norm[s:s + block] @ norm.T
        rows = np.arange(sim.shape[0])
        sim[rows, s + rows] = -np.inf  # not its own neighbour
        nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        votes = np.zeros((sim.shape[0], n_labels), np.int64)
        np.add.at(votes, (np.repeat(rows, k), lab[nn].ravel()), 1)
        own = votes[rows, lab[s:s + block]]
        out[s:s + block] = (own >= votes.max(1)).astype(np.float64)
    return out
