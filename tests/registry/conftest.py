"""Fixtures for registry tests: small images on disk, a registry on an exact index."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from registry.facade import Registry


def make_image(path: Path, width: int = 64, height: int = 48, seed: int = 0) -> Path:
    """Writes a random RGB PNG of ``width`` x ``height`` (different seeds give different bytes)."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def box_mask(height: int, width: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """(H, W) bool mask, True inside the xyxy box [x0, x1) x [y0, y1)."""
    m = np.zeros((height, width), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def unit(dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def reg(data_dir: Path):
    r = Registry(data_dir, embedding_dim=8, embedding_version="test-v1", index="exact")
    yield r
    r.close()


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return make_image(tmp_path / "img.png", 64, 48, seed=1)
