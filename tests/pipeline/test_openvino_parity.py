"""OpenVINO vision encoders (the CPU default when installed) against the PyTorch modules.

The same inputs run through both runtimes on tiny random models; tolerances, with what they
measured (openvino 2026.4, AVX-512):

- float32 (OpenVINO compiled with ``f32``): SAM2 feature maps within 1e-5 of PyTorch's
  (measured 3e-8), box masks agree on >= 99.9 % of pixels (measured 99.999 %), a refinement
  click's mask IoU >= 0.99; DINOv2 cosine >= 0.9999 (measured 1.0); Florence-2 the same boxes
  and confidences within 1e-3 (measured equal).
- The default chain (``ModelManager`` with no runtime and no dtype on a bf16 CPU: OpenVINO in
  ``bf16``) labels the scene with the same objects as the PyTorch float32 reference, within the
  bfloat16 tolerances of ``test_bf16_parity.py``.
- Conversion happens once per model, in a child process (the IR is cached and reused, a changed
  weights file converts again, a bfloat16 model gets float16 weights); a failing conversion
  leaves the PyTorch path working; the converter sends no telemetry.
"""
from __future__ import annotations

import logging
import os
import socket

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from pipeline.models import device as device_mod
from pipeline.models import openvino_runtime as ovr
from tests.chain_models import (
    SCENE_CLASSES,
    box_iou,
    mask_iou,
    scene_boxes,
    scene_image,
)

pytestmark = pytest.mark.skipif(not ovr.openvino_installed(), reason="openvino is not installed")


def _boxes() -> np.ndarray:
    return np.array([scene_boxes()[c] for c in SCENE_CLASSES], np.float32)


def test_openvino_sam2_encoder_matches_pytorch(chain, ov_cache):
    from pipeline.segment.sam2 import Sam2Segmenter

    image, boxes = scene_image(), _boxes()
    ov = Sam2Segmenter.from_pretrained(chain["segmenter"], device="cpu", dtype=torch.float32, runtime="openvino")
    pt = Sam2Segmenter.from_pretrained(chain["segmenter"], device="cpu", dtype=torch.float32, runtime="torch")
    assert ov.vision is not None and ov.vision.precision == "f32" and pt.vision is None
    for a, b in zip(ov._encode(image), pt._encode(image), strict=True):
        assert a.shape == b.shape and a.dtype == torch.float32
        assert float((a - b).abs().max()) <= 1e-5 * max(1.0, float(b.abs().max()))
    ov.set_image(image)
    pt.set_image(image)
    m_ov, s_ov = ov.predict_boxes(boxes)
    m_pt, s_pt = pt.predict_boxes(boxes)
    assert m_pt.any(axis=(1, 2)).all()  # real masks, not empty agreement
    for a, b in zip(m_ov, m_pt, strict=True):
        assert (a == b).mean() >= 0.999
    np.testing.assert_allclose(s_ov, s_pt, atol=1e-4)
    pts = np.array([(boxes[0, :2] + boxes[0, 2:]) / 2, boxes[0, :2] + 5, boxes[1, :2] + 5], np.float32)
    c_ov = ov.predict_points(pts, np.array([1, 1, 0]), multimask=False)
    c_pt = pt.predict_points(pts, np.array([1, 1, 0]), multimask=False)
    assert c_pt.mask.any() and mask_iou(c_ov.mask, c_pt.mask) >= 0.99
    assert ov.vision.calls >= 2  # the encoder really ran on OpenVINO


def test_openvino_dinov2_vectors_match_pytorch(chain, ov_cache):
    from pipeline.embed.dinov2 import Dinov2Embedder

    image = scene_image()
    boxes = np.concatenate([_boxes(), [[10, 10, 60, 50], [200, 150, 300, 230]]]).astype(np.float32)
    ov = Dinov2Embedder.from_pretrained(chain["embedder"], device="cpu", dtype=torch.float32, runtime="openvino")
    pt = Dinov2Embedder.from_pretrained(chain["embedder"], device="cpu", dtype=torch.float32, runtime="torch")
    v_ov, v_pt = ov.embed(image, boxes), pt.embed(image, boxes)
    assert v_ov.shape == v_pt.shape == (len(boxes), pt.dim) and ov.version == pt.version
    assert np.all(np.sum(v_ov * v_pt, axis=1) >= 0.9999)
    assert list(np.argmax(v_ov @ v_pt.T, axis=1)) == list(range(len(boxes)))  # distinct crops stay distinct
    assert ov.vision.calls >= 1


def test_openvino_florence_detects_like_pytorch(chain, ov_cache):
    from pipeline.detect.florence import FlorenceDetector

    image = scene_image()
    ov = FlorenceDetector.from_pretrained(chain["detector"], device="cpu", dtype=torch.float32, runtime="openvino")
    pt = FlorenceDetector.from_pretrained(chain["detector"], device="cpu", dtype=torch.float32, runtime="torch")
    got, ref = ov.detect(image, SCENE_CLASSES), pt.detect(image, SCENE_CLASSES)
    assert len(ref) == len(SCENE_CLASSES) == len(got)
    np.testing.assert_allclose(got.xyxy, ref.xyxy, atol=1e-3)
    assert list(got.class_id) == list(ref.class_id)
    np.testing.assert_allclose(got.confidence, ref.confidence, atol=1e-3)
    assert ov.vision.calls >= 1
    # the image features themselves, through the model's own entry point
    px = pt.preprocess(image, "<OD>")["pixel_values"]
    with torch.inference_mode():
        a = ov.model.get_image_features(pixel_values=px).pooler_output
        b = pt.model.get_image_features(pixel_values=px).pooler_output
    assert a.shape == b.shape and float((a - b).abs().max()) <= 1e-4 * max(1.0, float(b.abs().max()))


def test_default_chain_runs_openvino_bf16_and_labels_like_pytorch_float32(chain, ov_cache, monkeypatch):
    from pipeline.models.manager import ModelManager

    root = chain["detector"].parent
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda flags=None: True)
    monkeypatch.delenv("AGL_CPU_DTYPE", raising=False)
    monkeypatch.delenv("AGL_CPU_RUNTIME", raising=False)
    assert ovr.cpu_runtime() == "openvino"
    default = ModelManager("cpu", weights_dir=root, device="cpu", download=False)
    monkeypatch.setenv("AGL_CPU_RUNTIME", "torch")
    reference = ModelManager("cpu", weights_dir=root, device="cpu", dtype="float32", download=False)
    image = scene_image()
    ref = reference.labeler().label(image, SCENE_CLASSES, confidence=0.0)
    monkeypatch.delenv("AGL_CPU_RUNTIME")
    got = default.labeler().label(image, SCENE_CLASSES, confidence=0.0)
    status = default.status()
    assert {status[r]["runtime"] for r in ("detector", "segmenter", "embedder")} == {"openvino"}
    assert default.segmenter().vision.precision == "bf16" and reference.segmenter().vision is None
    assert len(ref) == len(SCENE_CLASSES) == len(got)
    iou = box_iou(ref.xyxy, got.xyxy)
    rows, cols = linear_sum_assignment(-iou)
    assert np.all(iou[rows, cols] >= 0.99)
    for r, c in zip(rows, cols, strict=True):
        assert mask_iou(ref.mask[r], got.mask[c]) >= 0.9
        assert float(ref.data["embedding"][r] @ got.data["embedding"][c]) >= 0.99


def test_conversion_is_cached_and_redone_for_new_weights(chain, ov_cache, monkeypatch, tmp_path):
    import shutil

    from pipeline.segment.sam2 import Sam2Segmenter

    folder = tmp_path / "sam2"
    shutil.copytree(chain["segmenter"], folder)
    converted = []
    real = ovr._run_converter
    monkeypatch.setattr(ovr, "_run_converter", lambda *a, **k: converted.append(a[0]) or real(*a, **k))
    first = Sam2Segmenter.from_pretrained(folder, device="cpu", dtype=torch.float32, runtime="openvino")
    saved = sorted(ov_cache.glob("sam2-encoder-*/model.xml"))
    assert first.vision is not None and len(saved) == 1 and first.vision.source == saved[0]
    assert converted == ["sam2-encoder", "sam2-decoder"]  # in child processes
    again = Sam2Segmenter.from_pretrained(folder, device="cpu", dtype=torch.float32, runtime="openvino")
    assert again.vision.source == saved[0] and len(converted) == 2  # read from the cache
    weights = next(folder.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    newer = Sam2Segmenter.from_pretrained(folder, device="cpu", dtype=torch.float32, runtime="openvino")
    assert len(converted) == 4 and newer.vision.source != saved[0]
    assert len(list(ov_cache.glob("sam2-decoder-*/model.xml"))) == 2
    assert len(list(ov_cache.glob("sam2-encoder-*/model.xml"))) == 2
    assert not list(ov_cache.glob(".sam2-encoder-*"))  # no temporary folder left behind
    # a bfloat16 model gets its own IR, with float16 weights (half the file)
    half = Sam2Segmenter.from_pretrained(folder, device="cpu", dtype=torch.bfloat16, runtime="openvino")
    assert half.vision.precision == "bf16" and half.vision.source.parent.name.endswith("-w16")
    w16 = half.vision.source.with_suffix(".bin").stat().st_size
    assert w16 < 0.6 * newer.vision.source.with_suffix(".bin").stat().st_size


def test_a_damaged_cached_model_is_dropped_and_converted_again(chain, ov_cache, caplog):
    from pipeline.segment.sam2 import Sam2Segmenter

    first = Sam2Segmenter.from_pretrained(chain["segmenter"], device="cpu", dtype=torch.float32, runtime="openvino")
    weights = first.vision.source.with_suffix(".bin")
    head = weights.read_bytes()[:1000]
    weights.unlink()  # a new, short file (e.g. a disk that filled up); `first` still maps the old one
    weights.write_bytes(head)
    with caplog.at_level(logging.WARNING, logger="pipeline.models.openvino_runtime"):
        broken = Sam2Segmenter.from_pretrained(chain["segmenter"], device="cpu", dtype=torch.float32, runtime="openvino")
    assert broken.vision is None and "OpenVINO unavailable for sam2-encoder" in caplog.text
    assert not first.vision.source.parent.exists()  # dropped
    again = Sam2Segmenter.from_pretrained(chain["segmenter"], device="cpu", dtype=torch.float32, runtime="openvino")
    assert again.vision is not None and again.vision.source == first.vision.source
    image = scene_image()
    for a, b in zip(again._encode(image), first._encode(image), strict=True):
        assert torch.equal(a, b)


def test_a_failing_converter_child_is_reported_and_leaves_nothing(chain, ov_cache, caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline.models.openvino_runtime"):
        enc = ovr.accelerate("no-such-role", chain["segmenter"], "cpu", (1, 3, 64, 64), torch.float32, "openvino")
    assert enc is None
    assert "OpenVINO unavailable for no-such-role" in caplog.text and "expected sam2-encoder" in caplog.text
    assert not [p for p in ov_cache.iterdir() if "no-such-role" in p.name]


def test_failed_conversion_keeps_the_pytorch_path(chain, ov_cache, monkeypatch, caplog):
    from pipeline.segment.sam2 import Sam2Segmenter

    def boom(*args, **kwargs):
        raise RuntimeError("unsupported operator aten::frobnicate")

    monkeypatch.setattr(ovr, "compile_encoder", boom)
    with caplog.at_level(logging.WARNING, logger="pipeline.models.openvino_runtime"):
        seg = Sam2Segmenter.from_pretrained(chain["segmenter"], device="cpu", dtype=torch.float32, runtime="openvino")
    assert seg.vision is None
    assert "OpenVINO unavailable for sam2-encoder" in caplog.text and "aten::frobnicate" in caplog.text
    seg.set_image(scene_image())
    masks, _ = seg.predict_boxes(_boxes())
    assert masks.any(axis=(1, 2)).all()


def test_converter_sends_no_telemetry(chain, tmp_path, monkeypatch):
    from pipeline.models import openvino_convert

    attempts = []
    real_connect = socket.socket.connect

    def connect(self, address):
        attempts.append(address)
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    # what the converter child runs, run here so the socket patch sees it
    xml = openvino_convert.convert("dinov2", chain["embedder"], 28, 28, tmp_path, fp16=False)
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    assert attempts == []
    from openvino.tools.ovc import convert_impl, telemetry_stub

    assert convert_impl.tm is telemetry_stub


def test_ctrl_c_after_models_were_released_out_of_order(chain, ov_cache):
    """Each CPU plugin swapped the main thread's alternate signal stack and restored its own
    predecessor's when released: out of order, the next SIGINT ran on freed memory (SIGSEGV).
    Run in a child, so a crash fails this test instead of killing the suite."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = f"""
import gc, signal
import torch
from pipeline.embed.dinov2 import Dinov2Embedder
from pipeline.segment.sam2 import Sam2Segmenter
a = Sam2Segmenter.from_pretrained({str(chain["segmenter"])!r}, device="cpu", dtype=torch.float32, runtime="openvino")
b = Dinov2Embedder.from_pretrained({str(chain["embedder"])!r}, device="cpu", dtype=torch.float32, runtime="openvino")
assert a.vision is not None and b.vision is not None
del a; gc.collect(); del b; gc.collect()
signal.signal(signal.SIGINT, lambda *args: print("handled"))
signal.raise_signal(signal.SIGINT)
print("alive")
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["handled", "alive"]


def test_cpu_runtime_setting(monkeypatch):
    monkeypatch.delenv("AGL_CPU_RUNTIME", raising=False)
    assert ovr.cpu_runtime() == "openvino"
    monkeypatch.setenv("AGL_CPU_RUNTIME", "torch")
    assert ovr.cpu_runtime() == "torch"
    assert ovr.accelerate("x", ".", "cpu", (1, 3, 8, 8), torch.float32) is None
    monkeypatch.setenv("AGL_CPU_RUNTIME", "onnx")
    with pytest.raises(ValueError, match="AGL_CPU_RUNTIME: expected one of"):
        ovr.cpu_runtime()
    monkeypatch.setenv("AGL_CPU_RUNTIME", "openvino")
    monkeypatch.setattr(ovr, "openvino_installed", lambda: False)
    with pytest.raises(ValueError, match="openvino package is not installed"):
        ovr.cpu_runtime()
    monkeypatch.delenv("AGL_CPU_RUNTIME")
    assert ovr.cpu_runtime() == "torch"  # not installed: PyTorch without a word
    # a GPU keeps PyTorch whatever the setting
    assert ovr.accelerate("x", ".", "cuda", (1, 3, 8, 8), torch.float32, "openvino") is None
