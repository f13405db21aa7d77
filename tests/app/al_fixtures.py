"""Seeds a registry for the active-learning, quality-score and auto-label-evaluation tests:
small grey images and objects with known boxes (xyxy absolute pixels), confidences, review
outcomes and small embeddings (``DIM``-d float32, L2-normalised, version ``VERSION``)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from registry.facade import ObjectIn, Registry

DIM = 8
VERSION = "tiny-al"


def open_registry(data_dir: Path, dim: int = DIM) -> Registry:
    """The registry of ``data_dir`` with the tests' embedding size and version."""
    return Registry(data_dir, embedding_dim=dim, embedding_version=VERSION, index="exact", sync_on_write=False)


def add_image(reg: Registry, folder: Path, seed: int, size: tuple[int, int] = (64, 96)) -> str:
    """Registers a distinct (H, W) = ``size`` PNG (its bytes depend on ``seed``); returns its id."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    path = folder / f"img_{seed}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return reg.register_source(path)


def unit(v) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def add_objects(reg: Registry, source_id: str, rows: list[dict]) -> list[str]:
    """Registers ``rows`` (``category``, ``xyxy``, optional ``confidence``, ``embedding``,
    ``status``, ``detection_model``, ``metadata``) without dedupe; returns their ids in order."""
    objs = [ObjectIn(category=r["category"], xyxy=tuple(r.get("xyxy", (1, 1, 10, 10))), confidence=r.get("confidence"),
                     embedding=None if r.get("embedding") is None else unit(r["embedding"]),
                     detection_model=r.get("detection_model", "florence-2"), metadata=r.get("metadata"),
                     validation_status=r.get("status", "pending"),
                     validated_by="tester" if r.get("status", "pending") != "pending" else None)
            for r in rows]
    return list(reg.register_objects(source_id, objs, dedupe=False).object_ids)
