"""``launch.py train`` on a tiny synthetic export (offline, 2 epochs at 64 px), then the trained
run as the detector of ``launch.py label --detector run:ID``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli.main import main
from registry.facade import Registry
from tests.pipeline.train.helpers import CLASSES, seed_dataset

TRAIN = ["--model", "yolo11n.yaml", "--epochs", "2", "--imgsz", "64", "--batch", "4", "--workers", "0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """One 2-epoch detection run (module-scoped: the label test reuses its weights)."""
    root = tmp_path_factory.mktemp("train-cli")
    data = root / "data"
    built = seed_dataset(data, root / "raw", n_images=10)
    return {"data": data, "raw": root / "raw", "built": built}


def _train_json(capsys, data: Path, *extra: str) -> dict:
    capsys.readouterr()
    assert main(["train", "--data", str(data), "--dataset", "shapes", *TRAIN, *extra, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def run_row(trained) -> dict:
    from app.workflows.train import TrainRequest, train_run

    with Registry(trained["data"], sync_on_write=False) as reg:
        return train_run(reg, trained["data"], TrainRequest("shapes", "yolo11n.yaml", epochs=2, imgsz=64, batch=4),
                         quiet=True)


def test_train_cli_records_run_epochs_and_best_weights(trained, capsys):
    out = _train_json(capsys, trained["data"])
    run, epochs = out["run"], out["epochs"]
    assert run["run_id"].startswith("run_") and run["status"] == "finished" and run["task"] == "detect"
    assert run["dataset_name"] == "shapes" and run["dataset_id"] == trained["built"]["dataset_id"]
    assert run["params"]["epochs"] == 2 and run["params"]["imgsz"] == 64 and run["started_at"] <= run["finished_at"]
    assert Path(run["best_weights"]).is_file() and Path(run["best_weights"]).name == "best.pt"
    assert Path(run["best_weights"]).is_relative_to(trained["data"] / "runs" / run["run_id"])
    assert (Path(run["export_path"]) / "data.yaml").is_file()
    assert [e["epoch"] for e in epochs] == [1, 2]
    for e in epochs:
        assert e["box_loss"] > 0 and e["cls_loss"] > 0 and 0.0 <= e["box_map50"] <= 1.0
        assert e["mask_map50"] is None and "lr/pg0" in e["extras"]  # a detection run has no mask metrics
    assert run["best_metrics"]["best_epoch"] in (1, 2) and "box_map50_95" in run["best_metrics"]
    with Registry(trained["data"], sync_on_write=False) as reg:
        assert reg.get_run(run["run_id"])["status"] == "finished" and len(reg.run_epochs(run["run_id"])) == 2
        from app.workflows.train import TrainRequest, start_run

        again = reg.get_run(start_run(reg, trained["data"], TrainRequest("shapes", "yolo11n.yaml")))
        assert again["params"]["export_reused"] is True and again["export_path"] == run["export_path"]
        edited = reg.list_objects(limit=1)[0]["object_id"]
        reg.update_object(edited, status="rejected", validated_by="t1")  # labels changed since the export
        fresh = reg.get_run(start_run(reg, trained["data"], TrainRequest("shapes", "yolo11n.yaml")))
        assert fresh["params"]["export_reused"] is False and fresh["export_path"] == run["export_path"]


def test_train_cli_bad_input_is_one_clear_line(trained, capsys):
    capsys.readouterr()
    assert main(["train", "--data", str(trained["data"]), "--dataset", "nope", *TRAIN]) == 2
    err = capsys.readouterr().err
    assert "no dataset 'nope'" in err and "shapes" in err and "Traceback" not in err
    assert main(["train", "--data", str(trained["data"]), "--dataset", "shapes", "--model", "yolo11q-missing.pt"]) == 2
    assert "copy it there" in capsys.readouterr().err


def test_label_with_a_trained_run_as_detector(trained, run_row, capsys, tmp_path):
    run_id = run_row["run_id"]
    images = tmp_path / "new"
    images.mkdir()
    for i in range(2):
        (images / f"n{i}.png").write_bytes((trained["raw"] / f"img_{i}.png").read_bytes())
    capsys.readouterr()
    rc = main(["label", "--data", str(trained["data"]), "--detector", f"run:{run_id}", "--segmenter", "grabcut",
               "--no-embed", "--confidence", "0.002", "--classes", ",".join(CLASSES), str(images), "--json"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["failed"] == [] and report["labeled"] == 2 and report["objects"] >= 2
    with Registry(trained["data"], sync_on_write=False) as reg:
        objs = [o for o in reg.list_objects(limit=1000) if o["detection_model"] == f"run:{run_id}"]
        assert objs, "the run's boxes were stored"
        assert all(o["category"] in CLASSES and 0.002 <= o["confidence"] <= 1.0 for o in objs)
    capsys.readouterr()
    assert main(["label", "--data", str(trained["data"]), "--detector", "run:run_nothere", "--segmenter", "grabcut",
                 "--no-embed", "--classes", "a", str(images)]) == 2
    assert "no training run 'run_nothere'" in capsys.readouterr().err


def test_autolabel_tab_detector_choice_labels_with_the_run(trained, run_row, tmp_path):
    """The Auto-label tab's Detector dropdown offers the run; its labeler is what on_run uses."""
    from app.workflows import autolabel_session as al
    from app.workflows import train as train_wf
    from tests.app.fakes import make_context

    ctx = make_context(trained["data"])
    try:
        spec = f"run:{run_row['run_id']}"
        choices = train_wf.detector_choices(ctx.registry)
        assert choices[0] == train_wf.FLORENCE_CHOICE and spec in [v for _, v in choices]
        labeler = train_wf.ui_labeler(ctx, spec)
        assert labeler is train_wf.ui_labeler(ctx, spec)  # loaded once per run
        assert train_wf.ui_labeler(ctx, "") is ctx.labeler()  # the built-in detector otherwise
        image = tmp_path / "tab.png"
        image.write_bytes((trained["raw"] / "img_3.png").read_bytes())
        images, bad = al.load_uploads([str(image)])
        assert not bad and not al.label_images(labeler, images, list(CLASSES), confidence=0.002)
        det = images[0].det
        assert len(det) >= 1 and det.mask is not None and det.data["embedding"].shape == (len(det), 48)
        al.save(ctx, images, None, project="tab")
        stored = ctx.registry.list_objects(project="tab", limit=100)
        assert stored and {o["detection_model"] for o in stored} == {spec}
    finally:
        ctx.registry.close()


def test_first_ctrl_c_requests_a_stop_and_the_second_interrupts():
    import signal
    import threading

    from app.cli.train import _StopOnFirstInterrupt

    before = signal.getsignal(signal.SIGINT)
    event, said = threading.Event(), []
    with _StopOnFirstInterrupt(event, said.append):
        signal.raise_signal(signal.SIGINT)
        assert event.is_set() and "stop requested" in said[0]
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_hard_interrupt_marks_the_run_stopped_and_keeps_saved_weights(data_dir, tmp_path):
    from app.workflows.train import TrainRequest, execute_run, start_run

    seed_dataset(data_dir, tmp_path / "raw", n_images=8)

    def interrupt(epoch: int, metrics: dict) -> None:
        raise KeyboardInterrupt  # a second Ctrl+C arriving while epoch 1 is being recorded

    with Registry(data_dir, sync_on_write=False) as reg:
        run_id = start_run(reg, data_dir, TrainRequest("shapes", "yolo11n.yaml", epochs=3, imgsz=64, batch=4))
        row = execute_run(reg, data_dir, run_id, on_epoch=interrupt, quiet=True)
        assert row["status"] == "stopped" and row["error"] == "interrupted" and row["finished_at"]
        assert Path(row["best_weights"]).is_file()  # epoch 1 was saved before its callback ran
        assert [e["epoch"] for e in reg.run_epochs(run_id)] == [1]
        assert row["best_metrics"]["best_epoch"] == 1


def test_background_training_stop_keeps_best_weights(data_dir, tmp_path):
    """The Train tab's job: one run at a time in a thread; Stop ends it after the current epoch."""
    import time

    from app.workflows.train import BackgroundTraining, TrainRequest

    seed_dataset(data_dir, tmp_path / "raw", n_images=8)
    job = BackgroundTraining()
    req = TrainRequest("shapes", "yolo11n.yaml", epochs=30, imgsz=64, batch=4)
    with Registry(data_dir, sync_on_write=False) as reg:
        run_id = job.start(reg, data_dir, req)
        with pytest.raises(RuntimeError, match=f"run {run_id} is still training"):
            job.start(reg, data_dir, req)
        deadline = time.monotonic() + 120
        while not reg.run_epochs(run_id) and job.running and time.monotonic() < deadline:
            job.join(0.2)  # wait for the first recorded epoch
        assert reg.run_epochs(run_id), job.error
        assert job.stop()
        job.join(120)
        assert not job.running and not job.stop()
        row = reg.get_run(run_id)
        assert row["status"] == "stopped" and 1 <= len(reg.run_epochs(run_id)) < 30
        assert Path(row["best_weights"]).is_file()
        assert any("stop requested" in line for line in job.lines) and any("stopped after" in line for line in job.lines)


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_stops_the_cli_run_keeping_best_weights(data_dir, tmp_path):
    """A real ``launch.py train`` process group gets SIGINT (as a terminal's Ctrl+C sends it, to
    the dataloader workers too) after its first epoch: exit 0, run ``stopped``, weights kept."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT

    seed_dataset(data_dir, tmp_path / "raw", n_images=8)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "YOLO_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "launch.py"), "train", "--data", str(data_dir), "--dataset", "shapes",
         "--model", "yolo11n.yaml", "--epochs", "40", "--imgsz", "64", "--batch", "4", "--workers", "1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = ""
    while "epoch 1/40:" not in seen:  # wait for the first recorded epoch on the progress output
        ch = proc.stderr.read(1)
        assert ch, f"train exited before its first epoch: {seen[-2000:]}"
        seen += ch
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert "stop requested" in seen + err and "Traceback" not in err
    with Registry(data_dir, sync_on_write=False) as reg:
        run = reg.list_runs()[0]
        assert run["status"] == "stopped" and run["error"] is None
        assert 1 <= len(reg.run_epochs(run["run_id"])) < 40 and Path(run["best_weights"]).is_file()
    assert f"{run['run_id']} stopped" in out


def test_runs_cli_lists_runs_and_one_run_with_its_epochs(trained, run_row, capsys):
    run_id = run_row["run_id"]
    capsys.readouterr()
    assert main(["runs", "--data", str(trained["data"])]) == 0
    listing = capsys.readouterr().out
    assert run_id in listing and "finished" in listing and "shapes v" in listing and "2 epochs" in listing
    assert main(["runs", "--data", str(trained["data"]), "--run", run_id, "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["run_id"] == run_id and [e["epoch"] for e in one["epochs"]] == [1, 2]
    assert main(["runs", "--data", str(trained["data"]), "--run", "run_nothere"]) == 2
    assert "no training run 'run_nothere'" in capsys.readouterr().err


def test_bad_requests_record_nothing_and_write_no_export(data_dir, tmp_path):
    from app.workflows.train import TrainRequest, start_run

    seed_dataset(data_dir, tmp_path / "raw", n_images=4)
    with Registry(data_dir, sync_on_write=False) as reg:
        for req, match in ((TrainRequest("shapes", "yolo11n.yaml", device="tpu"), "device: expected one of"),
                           (TrainRequest("shapes", "yolo11n.yaml", epochs=0), "epochs: expected an integer >= 1"),
                           (TrainRequest("shapes", "yolo11n.onnx"), "expected a .pt checkpoint or a .yaml")):
            with pytest.raises(ValueError, match=match):
                start_run(reg, data_dir, req)
        assert reg.list_runs() == [] and not (data_dir / "exports").exists()
