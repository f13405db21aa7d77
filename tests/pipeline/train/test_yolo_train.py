"""Training with ultralytics' trainer on a tiny synthetic export, offline: per-epoch metrics to a
callable, and stop on request keeping the best weights so far."""
from __future__ import annotations

import threading

import pytest

from pipeline.train.yolo_train import TrainConfig, train
from registry.export import export_dataset
from tests.pipeline.train.helpers import seed_dataset, tiny_train_env
from tests.registry.export_helpers import open_registry


@pytest.fixture
def data_yaml(data_dir, tmp_path, monkeypatch):
    tiny_train_env(monkeypatch, tmp_path)
    built = seed_dataset(data_dir, tmp_path / "raw", n_images=8)
    with open_registry(data_dir) as reg:
        export_dataset(reg, built["dataset_id"], tmp_path / "export", "yolo", "detect")
    return tmp_path / "export" / "data.yaml"


def test_stop_on_request_keeps_best_weights(data_yaml, tmp_path):
    stop = threading.Event()
    seen: list[tuple[int, dict]] = []

    def on_epoch(epoch: int, metrics: dict) -> None:
        seen.append((epoch, metrics))
        stop.set()  # as the UI's Stop would, from another thread, during epoch 1

    cfg = TrainConfig(data_yaml, "yolo11n.yaml", tmp_path / "runs", "run_stoptest", epochs=5, imgsz=64, batch=4)
    result = train(cfg, on_epoch=on_epoch, stop=stop)
    assert result.status == "stopped"
    assert [e for e, _ in seen] == [1] and [e["epoch"] for e in result.epochs] == [1]
    m = seen[0][1]
    assert m["box_loss"] > 0 and 0.0 <= m["box_map50"] <= 1.0 and "val/box_loss" in m and "lr/pg0" in m
    assert result.best_weights == tmp_path / "runs" / "run_stoptest" / "weights" / "best.pt"
    assert result.best_weights.is_file() and result.best_metrics["best_epoch"] == 1

    from ultralytics import YOLO

    assert YOLO(str(result.best_weights)).names == {0: "red car", 1: "person/rider", 2: "Überzug"}


def test_bad_config_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        train(TrainConfig(tmp_path / "none.yaml", "yolo11n.yaml", tmp_path, "x"))
    (tmp_path / "data.yaml").write_text("names: [a]\n")
    with pytest.raises(ValueError, match="--epochs: expected an integer >= 1, got 0"):
        train(TrainConfig(tmp_path / "data.yaml", "yolo11n.yaml", tmp_path, "x", epochs=0))
    with pytest.raises(ValueError, match="--device"):
        train(TrainConfig(tmp_path / "data.yaml", "yolo11n.yaml", tmp_path, "x", device="tpu"))
