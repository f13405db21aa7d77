"""Small registries with known images and masks for the dataset/export/import tests."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from registry.facade import ObjectIn, Registry

H, W = 48, 64
CLASSES = ("red car", "person/rider", "Überzug")  # a space, a slash, a non-ASCII letter


def open_registry(data_dir: Path, dim: int = 8) -> Registry:
    return Registry(data_dir, embedding_dim=dim, embedding_version="test-v1", index="exact")


def write_image(path: Path, seed: int, size: tuple[int, int] = (W, H)) -> Path:
    """A random RGB image (distinct bytes per seed)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def shape_masks(seed: int, h: int = H, w: int = W) -> list[np.ndarray]:
    """Three masks: a blob, a ring (hole), two separate parts (multi-part)."""
    rng = np.random.default_rng(seed)
    blob = np.zeros((h, w), np.uint8)
    cv2.ellipse(blob, (int(rng.integers(12, 20)), int(rng.integers(12, 20))),
                (int(rng.integers(5, 9)), int(rng.integers(4, 8))), int(rng.integers(0, 180)), 0, 360, 1, -1)
    ring = np.zeros((h, w), np.uint8)
    cv2.rectangle(ring, (36, 4), (58, 24), 1, -1)
    cv2.rectangle(ring, (42, 10), (50, 17), 0, -1)
    parts = np.zeros((h, w), np.uint8)
    cv2.rectangle(parts, (4, 32), (16, 44), 1, -1)
    cv2.circle(parts, (40, 38), 6, 1, -1)
    return [m.astype(bool) for m in (blob, ring, parts)]


def box_of(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def populate(reg: Registry, root: Path, n_images: int = 12, *, embeddings: bool = False,
             statuses: tuple[str, ...] = ("pending", "approved")) -> list[str]:
    """Registers ``n_images`` random images with three masked objects each; returns source ids."""
    ids = []
    for i in range(n_images):
        src = reg.register_source(write_image(root / f"img_{i}.png", seed=i))
        objs = []
        for k, m in enumerate(shape_masks(i)):
            emb = None
            if embeddings:
                emb = np.random.default_rng(1000 * i + k).normal(size=reg.embedding_dim).astype(np.float32)
            objs.append(ObjectIn(category=CLASSES[k], xyxy=box_of(m), mask=m,
                                 confidence=0.5 + 0.04 * (i % 10), embedding=emb,
                                 validation_status=statuses[(i + k) % len(statuses)]))
        reg.register_objects(src, objs, dedupe=False)
        ids.append(src)
    return ids
