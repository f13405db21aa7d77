"""ModelManager with tiny random models in local folders (the real loading path), offline."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from huggingface_hub import constants as hf_constants

from pipeline.autolabel import AutoLabeler
from pipeline.embed.dinov2 import Dinov2Embedder
from pipeline.models.loader import WeightsMissingError
from pipeline.models.manager import ModelManager
from pipeline.segment.grabcut import GrabCutSegmenter
from pipeline.segment.sam2 import Sam2Segmenter
from tests.chain_models import SCENE_CLASSES, scene_image, script_text
from tests.pipeline.scripted_florence import build_scripted_florence
from tests.pipeline.tiny_models_sam2_dino import TINY_DINO_DIM, build_tiny_dinov2, build_tiny_sam2


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-manager")
    return {
        "detector": str(build_scripted_florence(root / "florence", script_text())),
        "segmenter": str(build_tiny_sam2(root / "sam2")),
        "embedder": str(build_tiny_dinov2(root / "dino")),
    }


@pytest.fixture(autouse=True)
def offline_empty_hub(tmp_path, monkeypatch):
    """No HF cache, no weights dir, offline: only explicit folders can be found."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("AGL_WEIGHTS", str(tmp_path / "weights"))


def test_lazy_status_then_load_once(tiny_dirs):
    mgr = ModelManager("cpu", overrides=tiny_dirs, device="cpu")
    status = mgr.status()
    assert set(status) == {"detector", "segmenter", "embedder", "grabcut"}
    for role in ("detector", "segmenter", "embedder"):
        assert status[role]["loaded"] is False
        assert status[role]["weights_present"] is True
        assert status[role]["source"] == "local" and status[role]["path"] == tiny_dirs[role]
    seg = mgr.segmenter()
    assert isinstance(seg, Sam2Segmenter) and mgr.segmenter("sam2") is seg
    emb = mgr.embedder()
    assert isinstance(emb, Dinov2Embedder) and emb.dim == TINY_DINO_DIM
    assert mgr.detector() is mgr.detector()
    after = mgr.status()
    assert after["segmenter"]["loaded"] and after["segmenter"]["device"] == "cpu"
    assert after["segmenter"]["dtype"] == "float32"


def test_concurrent_first_calls_load_once(tiny_dirs, monkeypatch):
    calls = []
    real = Sam2Segmenter.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        calls.append(threading.get_ident())
        time.sleep(0.05)  # widen the race window
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(Sam2Segmenter, "from_pretrained", classmethod(counting))
    mgr = ModelManager("cpu", overrides=tiny_dirs, device="cpu")
    results = []
    threads = [threading.Thread(target=lambda: results.append(mgr.segmenter())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(calls) == 1
    assert len(results) == 4 and all(r is results[0] for r in results)


def test_labeler_shares_the_models_and_labels(tiny_dirs):
    mgr = ModelManager("cpu", overrides=tiny_dirs, device="cpu")
    lab = mgr.labeler()
    assert isinstance(lab, AutoLabeler) and mgr.labeler() is lab
    assert lab.detector is mgr.detector() and lab.segmenter is mgr.segmenter() and lab.embedder is mgr.embedder()
    image = scene_image(size=(48, 64))
    result = lab.label(image, SCENE_CLASSES, confidence=0.0)
    assert len(result) == 2 and result.labels == ["cat", "dog"]
    assert result.mask.shape == (2, 48, 64) and result.mask.reshape(2, -1).any(axis=1).all()
    assert result.data["embedding"].shape == (2, TINY_DINO_DIM)
    grab = mgr.labeler("grabcut", embed=False)
    assert isinstance(grab.segmenter, GrabCutSegmenter) and grab.embedder is None


def test_unload_frees_and_reloads(tiny_dirs):
    mgr = ModelManager("cpu", overrides=tiny_dirs, device="cpu")
    seg = mgr.segmenter()
    lab = mgr.labeler()
    seg.set_image(np.zeros((8, 8, 3), np.uint8))
    mgr.unload("segmenter")
    assert not mgr.is_loaded("segmenter") and mgr.is_loaded("detector")
    assert not seg.is_image_set  # its embedding cache was cleared
    assert mgr.segmenter() is not seg
    assert mgr.labeler() is not lab  # labelers holding the old model are rebuilt
    mgr.unload()
    assert not any(mgr.status()[r]["loaded"] for r in ("detector", "segmenter", "embedder", "grabcut"))
    with pytest.raises(ValueError, match="role"):
        mgr.unload("classifier")


def test_missing_weights_fail_fast_and_grabcut_still_works(monkeypatch):
    import socket

    connects = []  # fail fast = no network attempt at all when offline (no timeout to wait out)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: connects.append(a) or pytest.fail("network"))
    monkeypatch.setattr(socket.socket, "connect", lambda self, *a: connects.append(a) or pytest.fail("network"))
    mgr = ModelManager("cpu")  # the default hub specs; nothing on disk, offline
    with pytest.raises(WeightsMissingError, match="sam2.1-hiera-tiny") as info:
        mgr.segmenter("sam2")
    assert "launch.py models download" in str(info.value) and "launch.py models import" in str(info.value)
    assert "HF_HUB_OFFLINE" in str(info.value)  # the reason: offline, not a network timeout
    with pytest.raises(WeightsMissingError, match="Florence-2-base"):
        mgr.labeler()
    assert connects == []
    assert isinstance(mgr.segmenter("grabcut"), GrabCutSegmenter)
    status = mgr.status()
    assert status["segmenter"]["weights_present"] is False and "WeightsMissingError" in status["segmenter"]["error"]
    assert status["grabcut"]["loaded"] and status["grabcut"]["weights_present"]


def test_wrong_folder_kind_and_bad_arguments(tiny_dirs):
    mgr = ModelManager("cpu", overrides={"segmenter": tiny_dirs["embedder"]}, device="cpu")
    with pytest.raises(ValueError, match="segmenter weights .* expected a model of type"):
        mgr.segmenter()
    with pytest.raises(ValueError, match="segmenter"):
        mgr.segmenter("sam3")
    with pytest.raises(ValueError, match="profile"):
        ModelManager("tpu")
    with pytest.raises(ValueError, match="dtype"):
        ModelManager(dtype="int3")


def test_dtype_override(tiny_dirs):
    mgr = ModelManager("cpu", overrides=tiny_dirs, device="cpu", dtype="bfloat16")
    assert mgr.segmenter().dtype == torch.bfloat16
    assert mgr.status()["segmenter"]["dtype"] == "bfloat16"


def test_sam2_cache_holds_a_whole_gpu_batch_on_a_gpu_and_six_on_a_cpu(tiny_dirs, monkeypatch):
    from pipeline.autolabel import GPU_BATCH_IMAGES

    seen = {}

    def fake_load(path, **kw):  # the loader's arguments, without needing a GPU
        seen.update(kw)
        return object()

    monkeypatch.setattr(Sam2Segmenter, "from_pretrained", staticmethod(fake_load))
    gpu = ModelManager("cpu", overrides=tiny_dirs, device="cpu")
    monkeypatch.setattr(gpu, "device_dtype", lambda: (torch.device("cuda"), torch.float16))
    gpu.segmenter()
    assert seen["cache_size"] == GPU_BATCH_IMAGES == 8 and seen["device"].type == "cuda"
    ModelManager("cpu", overrides=tiny_dirs, device="cpu").segmenter()
    assert seen["cache_size"] == 6
