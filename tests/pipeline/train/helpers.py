"""A small registry with a built dataset version, for the training / evaluation tests.

Reuses the export tests' registry (``tests.registry.export_helpers.populate``: random 64x48
images, three masked objects each, classes "red car", "person/rider", "Überzug").
"""
from __future__ import annotations

from pathlib import Path

from registry.datasets import build_dataset
from tests.registry.export_helpers import CLASSES, open_registry, populate

__all__ = ["CLASSES", "seed_dataset", "tiny_train_env"]


def seed_dataset(data_dir: Path, raw_dir: Path, *, n_images: int = 10, name: str = "shapes") -> dict:
    """Registers ``n_images`` images and builds dataset ``name`` (split 0.6/0.2/0.2, seed 0).

    Returns the ``build_dataset`` result (``dataset_id``, ``name``, ``version``, ...).
    """
    with open_registry(data_dir) as reg:
        populate(reg, raw_dir, n_images)
        return build_dataset(reg, name, None, [0.6, 0.2, 0.2], 0)


def tiny_train_env(monkeypatch, tmp_path: Path) -> None:
    """ultralytics settings in a temporary folder and offline (no hub checks, no downloads)."""
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics-config"))
