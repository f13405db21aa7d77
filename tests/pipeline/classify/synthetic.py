"""Synthetic clustered embeddings for the classification tests (numpy only).

Every vector shares a common component (as a backbone's embeddings of unrelated objects do:
DINOv2 cosines of unrelated crops are ~0.3-0.6); each class is a cluster with two modes (a
prototype mean of two modes lies between them); out-of-domain clusters have their own
directions. Vectors are (N, D) float32, not normalised.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Synthetic:
    support: np.ndarray
    support_labels: list[str]
    queries: np.ndarray
    query_labels: list[str]
    ood: np.ndarray


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_synthetic(*, dim: int = 768, n_classes: int = 8, shots: int = 5, queries_per_class: int = 60,
                   n_ood: int = 4, ood_per_cluster: int = 60, common: float = 1.0, class_w: float = 0.7,
                   mode_w: float = 0.55, noise: float = 0.03, seed: int = 0) -> Synthetic:
    """Support (``shots`` per class), in-domain queries and out-of-domain queries.

    A point of class c, mode m: ``common * g + class_w * a_c + mode_w * b_cm + noise * N(0, I)``
    (``g``, ``a_c``, ``b_cm`` random unit vectors); an out-of-domain point uses its own ``a``.
    Support shots alternate between the two modes.
    """
    rng = np.random.default_rng(seed)
    g = unit_rows(rng, 1, dim)[0]
    a = unit_rows(rng, n_classes + n_ood, dim)
    b = unit_rows(rng, 2 * (n_classes + n_ood), dim).reshape(n_classes + n_ood, 2, dim)

    def draw(c: int, n: int, modes: np.ndarray) -> np.ndarray:
        base = common * g + class_w * a[c]
        return (base + mode_w * b[c, modes] + noise * rng.standard_normal((n, dim))).astype(np.float32)

    names = [f"class_{i}" for i in range(n_classes)]
    sup, sup_y, q, q_y = [], [], [], []
    for c in range(n_classes):
        sup.append(draw(c, shots, np.arange(shots) % 2))
        sup_y += [names[c]] * shots
        q.append(draw(c, queries_per_class, rng.integers(0, 2, queries_per_class)))
        q_y += [names[c]] * queries_per_class
    ood = [draw(n_classes + j, ood_per_cluster, rng.integers(0, 2, ood_per_cluster)) for j in range(n_ood)]
    return Synthetic(np.concatenate(sup), sup_y, np.concatenate(q), q_y, np.concatenate(ood))


def nearest_prototype_baseline(support: np.ndarray, labels: list[str], queries: np.ndarray) -> list[str]:
    """Plain nearest prototype: L2-normalised raw vectors, class means, argmax cosine, no
    centring, no kNN, no unknown rejection."""
    classes = sorted(set(labels))
    x = support / np.linalg.norm(support, axis=1, keepdims=True)
    protos = np.stack([x[[lab == c for lab in labels]].mean(0) for c in classes])
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return [classes[i] for i in np.argmax(qn @ protos.T, axis=1)]
