"""``launch.py models status|download|import`` (offline; tiny or fake model folders)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import constants as hf_constants

from app.cli.main import main
from tests.conftest import ROOT


def _fake_model(folder: Path, model_type: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    (folder / "model.safetensors").write_bytes(b"\0" * 1024)
    return folder


@pytest.fixture(autouse=True)
def offline_and_isolated(tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("AGL_WEIGHTS", raising=False)


def _status(data_dir, capsys, *extra):
    capsys.readouterr()
    assert main(["models", "status", "--data", str(data_dir), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_status_on_an_empty_machine(data_dir, capsys):
    report = _status(data_dir, capsys, "--profile", "gpu")
    assert report["weights_dir"] == str((data_dir / "models").resolve())
    assert [m["hub_id"] for m in report["models"]] == [
        "florence-community/Florence-2-large", "facebook/sam2.1-hiera-base-plus", "facebook/dinov2-base"]
    assert not any(m["present"] for m in report["models"])
    assert main(["models", "status", "--data", str(data_dir)]) == 0
    assert "models import DIR" in capsys.readouterr().out


@pytest.mark.timeout(60)
def test_download_offline_fails_fast_with_both_remedies(data_dir, capsys):
    assert main(["models", "download", "--data", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert "florence-community/Florence-2-base" in err
    assert "python launch.py models download --profile cpu" in err
    assert "python launch.py models import DIR" in err
    assert "Traceback" not in err


def test_import_a_folder_of_model_folders_then_status(tmp_path, data_dir, capsys):
    src = tmp_path / "carried"
    _fake_model(src / "florence-community--Florence-2-base", "florence2")  # `models download` layout
    _fake_model(src / "sam2.1-hiera-tiny", "sam2")  # named like the model
    # an HF cache repo folder: snapshots link into blobs
    repo = src / "models--facebook--dinov2-base"
    blob = repo / "blobs" / "abc"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"\0" * 2048)
    snap = repo / "snapshots" / ("1" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps({"model_type": "dinov2"}))
    (snap / "model.safetensors").symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("1" * 40)

    assert main(["models", "import", str(src), "--data", str(data_dir)]) == 0
    report = _status(data_dir, capsys)
    assert [m["role"] for m in report["models"]] == ["detector", "segmenter", "embedder"]
    assert all(m["present"] and m["source"] == "weights-dir" for m in report["models"])
    dino = next(m for m in report["models"] if m["role"] == "embedder")
    assert Path(dino["path"]).name == "facebook--dinov2-base"
    assert not (Path(dino["path"]) / "model.safetensors").is_symlink()  # copied, not linked
    assert dino["size_bytes"] >= 2048

    # importing again refuses to overwrite unless --force
    assert main(["models", "import", str(src), "--data", str(data_dir)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["models", "import", str(src), "--data", str(data_dir), "--force"]) == 0


@pytest.mark.parametrize(
    ("name", "model_type", "weights", "message"),
    [
        ("facebook--dinov2-base", "florence2", True, "wrong model"),
        ("my-model", "dinov2", True, "rename it to <owner>--<name>"),
        ("Florence-2-base", "florence2", False, "no *.safetensors or *.bin weights"),
        ("facebook--dinov2-base", "bert", True, "model_type is 'bert'"),
    ],
)
def test_import_errors_are_clear(tmp_path, data_dir, capsys, name, model_type, weights, message):
    folder = tmp_path / "src" / name
    _fake_model(folder, model_type)
    if not weights:
        (folder / "model.safetensors").unlink()
    assert main(["models", "import", str(tmp_path / "src"), "--data", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "1 of 1 model folders not imported" in err
    assert not (data_dir / "models" / name).exists()


def test_import_of_nothing_or_a_missing_folder(tmp_path, data_dir, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["models", "import", str(tmp_path / "empty"), "--data", str(data_dir)]) == 2
    assert "no model folders" in capsys.readouterr().err
    assert main(["models", "import", str(tmp_path / "absent"), "--data", str(data_dir)]) == 2
    assert "expected a folder" in capsys.readouterr().err


def test_imported_tiny_florence_loads_through_the_loader(tmp_path, data_dir, capsys):
    pytest.importorskip("torch")
    import numpy as np

    from pipeline.detect.florence import FlorenceDetector
    from pipeline.models.loader import resolve_weights
    from pipeline.models.specs import get_spec
    from tests.pipeline.scripted_florence import build_scripted_florence

    build_scripted_florence(tmp_path / "usb" / "Florence-2-large", "car<loc_0><loc_0><loc_499><loc_499>")
    assert main(["models", "import", str(tmp_path / "usb"), "--data", str(data_dir)]) == 0
    folder = resolve_weights(get_spec("detector", "gpu"), weights_dir=data_dir / "models")
    assert folder.name == "florence-community--Florence-2-large"
    detector = FlorenceDetector.from_pretrained(folder, device="cpu")
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    det = detector.detect(image, ["car"])
    assert det.class_names == ["car"] and det.labels == ["car"]
    np.testing.assert_allclose(det.xyxy[0], [0.03, 0.02, 29.97, 19.98], atol=0.01)  # (bin + 0.5) * side / 1000
    assert 0.5 < det.confidence[0] < 0.9


def test_status_command_does_not_import_torch(data_dir):
    # Only this command's module: other subcommands may legitimately import torch.
    code = ("import argparse, sys; from app.cli import models; p = argparse.ArgumentParser(); "
            "models.register(p.add_subparsers()); "
            f"a = p.parse_args(['models', 'status', '--data', {str(data_dir)!r}]); a.func(a); "
            "sys.exit(3 if 'torch' in sys.modules else 0)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_models_optimize_converts_each_encoder_once(data_dir, tmp_path, monkeypatch, capsys):
    from pipeline.models import openvino_runtime as ovr
    from tests.chain_models import build_chain_models

    if not ovr.openvino_installed():
        pytest.skip("openvino is not installed")
    monkeypatch.delenv("AGL_CPU_RUNTIME", raising=False)
    monkeypatch.setenv("AGL_OV_CACHE", str(tmp_path / "ov"))
    build_chain_models(data_dir / "models")
    capsys.readouterr()
    assert main(["models", "optimize", "--data", str(data_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and [r["role"] for r in report["models"]] == ["detector", "segmenter", "embedder"]
    assert {r["runtime"] for r in report["models"]} == {"openvino"}
    assert all(Path(r["ir"]).is_file() and Path(r["ir"]).parent.parent == tmp_path / "ov" for r in report["models"])
    decoder_ir = Path(report["models"][1]["decoder_ir"])  # SAM2's click decoder too
    assert decoder_ir.is_file() and decoder_ir.parent.name.startswith("sam2-decoder-")
    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(ovr, "_run_converter", no_conversion)
    assert main(["models", "optimize", "--data", str(data_dir), "--json"]) == 0  # from the cache
    again = json.loads(capsys.readouterr().out)
    assert [r["ir"] for r in again["models"]] == [r["ir"] for r in report["models"]]
    assert again["models"][1]["decoder_ir"] == str(decoder_ir)


def test_models_optimize_without_weights_says_what_is_missing(data_dir, tmp_path, monkeypatch, capsys):
    from pipeline.models import openvino_runtime as ovr

    if not ovr.openvino_installed():
        pytest.skip("openvino is not installed")
    monkeypatch.delenv("AGL_CPU_RUNTIME", raising=False)
    monkeypatch.setenv("AGL_OV_CACHE", str(tmp_path / "ov"))
    capsys.readouterr()
    assert main(["models", "optimize", "--data", str(data_dir), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and all(r["runtime"] is None and r["problem"] for r in report["models"])
    assert "Florence" in report["models"][0]["problem"]
    assert not (tmp_path / "ov").exists()
