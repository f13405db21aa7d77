"""Synthetic data for the quality-score tests: quality depends on the embedding.

Objects in 8 class clusters (unit vectors, ``dim``-d); a bad crop (blurred, cut off) carries a
defect along a fixed direction orthogonal to the class centres (either sign), a third of the bad
ones also a wrong label; the confidence is only weakly lower for bad ones. Objects lie on
``n_images`` images at random.
"""
from __future__ import annotations

import numpy as np


def quality_set(seed: int = 0, n: int = 1500, n_images: int = 200, dim: int = 32) -> dict:
    """``{"x" (n, dim) float32, "good" (n,) 0/1, "label" (n,) class ids, "conf" (n,), "image" (n,)}``."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    u = rng.standard_normal(dim)
    u -= centres.T @ np.linalg.lstsq(centres.T, u, rcond=None)[0]  # orthogonal to the class centres
    u /= np.linalg.norm(u)
    cls = rng.integers(0, 8, n)
    bad = rng.random(n) < 0.35
    x = centres[cls] + 0.4 * rng.standard_normal((n, dim)) / np.sqrt(dim)
    x += (bad * rng.choice([-1.0, 1.0], n) * rng.uniform(0.1, 0.4, n))[:, None] * u
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    label = np.where(bad & (rng.random(n) < 0.33), (cls + rng.integers(1, 8, n)) % 8, cls)
    conf = np.clip(np.where(bad, rng.normal(0.62, 0.15, n), rng.normal(0.68, 0.15, n)), 0, 1)
    return {"x": x, "good": (~bad).astype(int), "label": label, "conf": conf, "image": rng.integers(0, n_images, n)}
