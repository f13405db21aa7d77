"""Fixtures for the REST API tests: a TestClient on the API mounted at /api as the server
mounts it, over a real registry with the test doubles (tests/app/fakes.py), and seeding helpers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.app.fakes import write_scene

AUTH = ("alice", "s3cret")
TOKEN = "tok-123"


def mount(ctx, **kwargs) -> TestClient:
    """A TestClient for ``create_api(ctx, **kwargs)`` mounted at /api (as app.server mounts it)."""
    from app.api import API_PREFIX, create_api

    root = FastAPI()
    root.mount(API_PREFIX, create_api(ctx, **kwargs))
    return TestClient(root, raise_server_exceptions=False)


@pytest.fixture
def client(ctx) -> TestClient:
    with mount(ctx) as c:
        yield c


def box_mask(hw: tuple[int, int], xyxy: tuple[int, int, int, int]) -> np.ndarray:
    m = np.zeros(hw, bool)
    x0, y0, x1, y1 = xyxy
    m[y0:y1, x0:x1] = True
    return m


def unit(dim: int, hot: int, other: int | None = None) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    v[hot] = 1.0
    if other is not None:
        v[other] = 0.3
    return v / np.linalg.norm(v)


def seed(reg, tmp_path: Path, *, seed_no: int = 0, project: str = "p1") -> dict:
    """One source (240x320 scene) with a 'cat' (conf 0.9, mask, embedding e0) and a 'dog'
    (conf 0.4, box only, embedding e5). Returns ids and vectors."""
    from registry.facade import ObjectIn

    path = write_scene(tmp_path / "seed" / f"scene_{seed_no}.png", seed=seed_no)
    sid = reg.register_source(path, project=project)
    dim = reg.embedding_dim
    cat_v, dog_v = unit(dim, 0), unit(dim, 5)
    res = reg.register_objects(sid, [
        ObjectIn(category="cat", xyxy=(10, 20, 60, 80), mask=box_mask((240, 320), (10, 20, 60, 80)),
                 confidence=0.9, embedding=cat_v, detection_model="test"),
        ObjectIn(category="dog", xyxy=(200, 100, 300, 200), confidence=0.4, embedding=dog_v),
    ], project=project)
    cat_id, dog_id = res.object_ids
    return {"source_id": sid, "cat": cat_id, "dog": dog_id, "cat_v": cat_v, "dog_v": dog_v, "path": path}
