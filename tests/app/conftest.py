"""Fixtures for the UI tests: a context on a real registry with the test doubles, sample images."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.fakes import make_context, write_scene


@pytest.fixture
def ctx(data_dir: Path):
    c = make_context(data_dir)
    yield c
    c.registry.close()


@pytest.fixture
def scenes(tmp_path: Path) -> list[Path]:
    """Three distinct synthetic images (JPEG) outside the data folder, like user uploads."""
    return [write_scene(tmp_path / "uploads" / f"scene_{i}.jpg", seed=i) for i in range(3)]
