"""Training runs in the registry: schema v3 tables, the 2 -> 3 upgrade, run and epoch records."""
from __future__ import annotations

import sqlite3

import pytest

from registry.facade import ObjectIn, Registry
from registry.schema import SCHEMA_VERSION


def test_run_lifecycle_and_epochs(reg):
    run_id = reg.create_run(model="yolo11n.yaml", task="detect", params={"epochs": 2, "imgsz": 64},
                            dataset_id="ds_x", dataset_name="cats", dataset_version="1.0", export_path="/e")
    assert run_id.startswith("run_")
    run = reg.get_run(run_id)
    assert run["status"] == "queued" and run["params"] == {"epochs": 2, "imgsz": 64} and run["started_at"] is None
    assert reg.update_run(run_id, status="running")["started_at"]
    reg.record_epoch(run_id, 1, {"box_loss": 1.5, "box_map50": 0.25, "box_map50_95": float("nan"), "lr/pg0": 0.01})
    reg.record_epoch(run_id, 2, {"box_loss": 1.2, "box_map50": 0.5, "mask_map50": None})
    reg.record_epoch(run_id, 2, {"box_loss": 1.1, "box_map50": 0.55})  # replaces epoch 2
    epochs = reg.run_epochs(run_id)
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert epochs[0]["box_map50"] == 0.25 and epochs[0]["box_map50_95"] is None  # NaN -> NULL
    assert epochs[0]["extras"] == {"lr/pg0": 0.01} and epochs[1]["box_loss"] == 1.1
    done = reg.update_run(run_id, status="finished", best_weights="/w/best.pt", best_metrics={"box_map50": 0.55})
    assert done["finished_at"] and done["best_metrics"] == {"box_map50": 0.55} and done["best_weights"] == "/w/best.pt"
    assert [r["run_id"] for r in reg.list_runs()] == [run_id]


def test_bad_run_input_names_the_fix(reg):
    with pytest.raises(ValueError, match="task"):
        reg.create_run(model="m.pt", task="classify")
    run_id = reg.create_run(model="m.pt", task="segment")
    with pytest.raises(ValueError, match="run status: expected one of"):
        reg.update_run(run_id, status="paused")
    with pytest.raises(ValueError, match="run fields"):
        reg.update_run(run_id, model="other.pt")
    with pytest.raises(ValueError, match="no training run 'run_nope'"):
        reg.get_run("run_nope")
    with pytest.raises(ValueError, match="1-based"):
        reg.record_epoch(run_id, 0, {})
    with pytest.raises(ValueError, match="box_loss"):
        reg.record_epoch(run_id, 1, {"box_loss": "high"})
    assert reg.run_epochs(run_id) == [] and reg.get_run(run_id)["status"] == "queued"
    with pytest.raises(sqlite3.IntegrityError):
        with reg.transaction() as tx:
            tx.execute("INSERT INTO runs (run_id, model, task) VALUES ('x1', 'm', 'detect')")  # no run_ prefix


def test_upgrade_from_version_2_adds_run_tables(data_dir, image):
    with Registry(data_dir, embedding_dim=8, index="exact") as reg:
        sid = reg.register_source(image)
        reg.register_objects(sid, [ObjectIn("cat", (0, 0, 5, 5))])
    db = sqlite3.connect(data_dir / "registry.db")  # turn it back into a version-2 database
    db.executescript("DROP TABLE run_epochs; DROP TABLE runs; DELETE FROM schema_version WHERE version > 2;")
    db.close()
    with Registry(data_dir, embedding_dim=8, index="exact") as reg:
        assert SCHEMA_VERSION == 3 and reg.schema_version == 3
        assert reg.connection.scalar("SELECT max(version) FROM schema_version") == 3
        assert reg.count_objects() == 1
        run_id = reg.create_run(model="yolo11n.pt", task="detect")
        reg.record_epoch(run_id, 1, {"box_map50": 0.1})
        assert reg.run_epochs(run_id)[0]["box_map50"] == 0.1
