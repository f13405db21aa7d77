"""Fixtures shared by the model-runtime tests of this folder."""
from __future__ import annotations

import pytest

from tests.chain_models import build_chain_models


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The tiny random Florence-2 / SAM2 / DINOv2 folders, built once per test module."""
    return build_chain_models(tmp_path_factory.mktemp("chain"))


@pytest.fixture
def ov_cache(tmp_path, monkeypatch):
    """An empty OpenVINO IR cache of this test's own (``$AGL_OV_CACHE``)."""
    cache = tmp_path / "ov-cache"
    monkeypatch.setenv("AGL_OV_CACHE", str(cache))
    return cache
