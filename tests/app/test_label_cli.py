"""``launch.py label`` and ``launch.py segment`` as a user runs them (subprocesses, offline)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.image_io import load_image
from pipeline.mask_ops import mask_iou
from registry.facade import ObjectIn, Registry
from tests.app.fakes import colour_components, write_scene
from tests.conftest import ROOT


def _run(*args: str, tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home"), "PYTHONPATH": str(ROOT)}
    env.pop("AGL_WEIGHTS", None)
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    for i in range(3):
        write_scene(root / f"img{i}.png", seed=20 + i)
    return root


def test_label_without_weights_says_how_to_get_them(tmp_path, data_dir, images):
    proc = _run("label", "--data", str(data_dir), "--classes", "red,green", str(images), tmp_path=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and "models download" in proc.stderr and "models import" in proc.stderr
    empty = _run("label", "--data", str(data_dir), "--classes", " , ", str(images), tmp_path=tmp_path, timeout=60)
    assert empty.returncode == 2 and "--classes" in empty.stderr and "Traceback" not in empty.stderr
    zero = _run("label", "--data", str(data_dir), "--classes", "red", str(images), "--batch-images", "0",
                tmp_path=tmp_path, timeout=60)
    assert zero.returncode == 2 and "--batch-images: expected >= 1, got 0" in zero.stderr
    assert "Traceback" not in zero.stderr


# Labeling with the real (tiny) model chain, failures and resuming: tests/app/test_chain_cli.py


def test_segment_only_missing_adds_masks_to_box_only_objects(tmp_path, data_dir, images):
    truth = {}
    with Registry(data_dir) as reg:
        for path in sorted(images.iterdir()):
            sid = reg.register_source(path)
            objs = []
            for name, mask, xyxy in colour_components(load_image(path)):
                objs.append(ObjectIn(category=name, xyxy=xyxy, confidence=1.0))
                truth[(sid, name)] = mask
            reg.register_objects(sid, objs)
        masked_id = reg.list_objects(limit=1)[0]["object_id"]
        keep = np.zeros((240, 320), bool)
        keep[:5, :5] = True
        reg.update_object(masked_id, mask=keep)  # already has a mask: --only-missing leaves it
        n = reg.count_objects()
    proc = _run("segment", "--data", str(data_dir), "--segmenter", "grabcut", "--only-missing", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"{n - 1} of {n - 1} object(s) in 3 image(s) segmented" in proc.stdout
    with Registry(data_dir) as reg:
        assert reg.doctor()["ok"]
        for obj in reg.list_objects(limit=None):
            mask = reg.get_mask(obj["object_id"])
            assert mask is not None
            if obj["object_id"] == masked_id:
                assert mask.sum() == 25
            else:
                assert mask_iou(mask, truth[(obj["source_id"], obj["category"])]) > 0.85


def test_batch_images_default_is_eight_on_a_gpu_and_one_on_a_cpu():
    import argparse
    from types import SimpleNamespace

    import torch

    from app.cli.label import batch_images_for

    on = lambda dev: SimpleNamespace(detector=SimpleNamespace(device=torch.device(dev)))  # noqa: E731
    assert batch_images_for(argparse.Namespace(batch_images=None), on("cuda")) == 8
    assert batch_images_for(argparse.Namespace(batch_images=None), on("cpu")) == 1
    assert batch_images_for(argparse.Namespace(batch_images=None), SimpleNamespace()) == 1  # a labeler with no detector
    assert batch_images_for(argparse.Namespace(batch_images=3), on("cpu")) == 3
