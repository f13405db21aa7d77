"""Model specs, weight resolution (folder -> weights dir -> HF cache -> hub) and device choice."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import constants as hf_constants

from pipeline.models import loader
from pipeline.models.loader import (
    WeightsMissingError,
    folder_problem,
    locate_weights,
    resolve_weights,
)
from pipeline.models.specs import PROFILES, ModelSpec, get_profile, get_spec, spec_from_override


def _fake_model(folder: Path, model_type: str = "florence2", weights: str = "model.safetensors") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    (folder / weights).write_bytes(b"\0" * 16)
    return folder


@pytest.fixture
def isolated_hub(tmp_path, monkeypatch):
    """An empty HF cache and weights dir; offline unless a test says otherwise."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("AGL_WEIGHTS", str(tmp_path / "weights"))
    return cache


def test_profiles_name_the_documented_models():
    assert {r: s.hub_id for r, s in PROFILES["cpu"].items()} == {
        "detector": "florence-community/Florence-2-base",
        "segmenter": "facebook/sam2.1-hiera-tiny",
        "embedder": "facebook/dinov2-base",
    }
    assert {r: s.hub_id for r, s in PROFILES["gpu"].items()} == {
        "detector": "florence-community/Florence-2-large",
        "segmenter": "facebook/sam2.1-hiera-base-plus",
        "embedder": "facebook/dinov2-base",
    }


def test_overrides_accept_hub_ids_and_folders(tmp_path):
    specs = get_profile("gpu", {"embedder": "facebook/dinov2-small@main", "detector": str(tmp_path)})
    assert specs["embedder"].hub_id == "facebook/dinov2-small"
    assert specs["embedder"].revision == "main"
    assert specs["detector"].local_dir == tmp_path.resolve()
    assert specs["segmenter"] is PROFILES["gpu"]["segmenter"]
    assert get_spec("segmenter", "cpu").hub_id == "facebook/sam2.1-hiera-tiny"
    assert spec_from_override("detector", "./not/there").local_dir is not None


@pytest.mark.parametrize(
    "call",
    [
        lambda: get_profile("tpu"),
        lambda: get_profile("cpu", {"classifier": "a/b"}),
        lambda: spec_from_override("detector", "no spaces allowed here"),
        lambda: ModelSpec("tracker", "x", "a/b"),
    ],
)
def test_bad_profiles_and_overrides_are_rejected(call):
    with pytest.raises(ValueError, match="expected"):
        call()


def test_folder_validation(tmp_path):
    assert folder_problem(tmp_path / "nope") == "not a folder"
    (tmp_path / "a").mkdir()
    assert folder_problem(tmp_path / "a") == "no config.json"
    (tmp_path / "a" / "config.json").write_text("{}")
    assert "weights" in folder_problem(tmp_path / "a")
    _fake_model(tmp_path / "b", weights="pytorch_model.bin")
    assert folder_problem(tmp_path / "b") is None
    sharded = _fake_model(tmp_path / "c", weights="model-00001-of-00002.safetensors")
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})
    )
    assert folder_problem(sharded) == "missing shard model-00002-of-00002.safetensors"


def test_explicit_folder_wins(tmp_path, isolated_hub):
    folder = _fake_model(tmp_path / "mine")
    spec = get_spec("detector")
    assert resolve_weights(spec, local_dir=folder) == folder.resolve()
    override = get_spec("detector", override=str(folder))
    assert locate_weights(override).source == "local"


def test_explicit_folder_that_is_not_a_model_says_why(tmp_path, isolated_hub):
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsMissingError, match="no config.json"):
        resolve_weights(get_spec("detector"), local_dir=tmp_path / "empty")


def test_weights_dir_is_searched_by_owner_name_folder(tmp_path, isolated_hub):
    spec = get_spec("embedder")
    folder = _fake_model(tmp_path / "weights" / "facebook--dinov2-base", model_type="dinov2")
    found = locate_weights(spec)  # default weights dir = $AGL_WEIGHTS
    assert found.path == folder.resolve() and found.source == "weights-dir"
    other = tmp_path / "elsewhere"
    _fake_model(other / "facebook--dinov2-base", model_type="dinov2")
    assert resolve_weights(spec, weights_dir=other) == (other / "facebook--dinov2-base").resolve()


def test_hf_cache_is_used_without_network(isolated_hub):
    spec = get_spec("segmenter")
    repo = isolated_hub / "models--facebook--sam2.1-hiera-tiny"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = _fake_model(repo / "snapshots" / commit, model_type="sam2")
    found = locate_weights(spec)
    assert found.source == "hf-cache"
    assert found.path == snapshot.resolve()


@pytest.mark.timeout(30)
def test_offline_fails_fast_naming_model_and_both_remedies(isolated_hub):
    spec = get_spec("detector", "gpu")
    with pytest.raises(WeightsMissingError) as info:
        resolve_weights(spec)
    message = str(info.value)
    assert "florence-community/Florence-2-large" in message
    assert "python launch.py models download --profile gpu" in message
    assert "python launch.py models import DIR" in message
    assert "HF_HUB_OFFLINE" in message
    assert isinstance(info.value, RuntimeError)


@pytest.fixture
def online_mode(isolated_hub, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("AGL_HUB_CONNECT_TIMEOUT", "0.5")


@pytest.mark.timeout(30)
def test_no_network_fails_fast(online_mode, monkeypatch):
    monkeypatch.setattr(hf_constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(WeightsMissingError, match="cannot reach 127.0.0.1:9") as info:
        resolve_weights(get_spec("embedder"))
    assert "models import DIR" in str(info.value)


@pytest.mark.timeout(30)
def test_unanswered_connect_uses_the_short_timeout(online_mode, monkeypatch):
    seen = {}

    def silent_network(address, timeout=None, **kwargs):
        seen["timeout"] = timeout
        raise TimeoutError("timed out")

    monkeypatch.setattr(loader.socket, "create_connection", silent_network)
    with pytest.raises(WeightsMissingError, match="TimeoutError"):
        resolve_weights(get_spec("detector"))
    assert seen["timeout"] == 0.5


def test_download_can_be_disabled(isolated_hub, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(loader, "download_weights", lambda *a, **k: pytest.fail("must not download"))
    with pytest.raises(WeightsMissingError, match="downloads disabled"):
        resolve_weights(get_spec("embedder"), download=False)


def test_pick_device_dtype_on_cpu(monkeypatch):
    torch = pytest.importorskip("torch")
    from pipeline.models.device import default_cpu_dtype, pick_device_dtype

    monkeypatch.delenv("AGL_CPU_DTYPE", raising=False)
    assert pick_device_dtype("cpu") == (torch.device("cpu"), default_cpu_dtype())
    monkeypatch.setenv("AGL_CPU_DTYPE", "float32")
    assert pick_device_dtype("cpu") == (torch.device("cpu"), torch.float32)
    monkeypatch.setenv("AGL_CPU_DTYPE", "bfloat16")
    assert pick_device_dtype("cpu") == (torch.device("cpu"), torch.bfloat16)
    monkeypatch.setenv("AGL_CPU_DTYPE", "float16")
    with pytest.raises(ValueError, match="AGL_CPU_DTYPE"):
        pick_device_dtype("cpu")
    with pytest.raises(ValueError, match="device"):
        pick_device_dtype("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            pick_device_dtype("cuda")
        monkeypatch.delenv("AGL_CPU_DTYPE")
        assert pick_device_dtype() == (torch.device("cpu"), default_cpu_dtype())
    else:
        device, dtype = pick_device_dtype("cuda")
        assert device.type == "cuda" and dtype in (torch.bfloat16, torch.float16)
