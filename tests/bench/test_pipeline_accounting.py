"""Smoke tests of ``bench pipeline``'s FLOP accounting and bf16 fidelity, on the tiny chain models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.bench.pipeline_fidelity import capture, compare
from tests.bench.pipeline_flops import count_flops, count_stage_flops, flops_report
from tests.bench.pipeline_inputs import scene, scripted_ids, scripted_kwargs
from tests.chain_models import build_chain_models


@pytest.fixture(scope="module")
def managers(tmp_path_factory):
    from pipeline.models.manager import ModelManager

    root = build_chain_models(tmp_path_factory.mktemp("bench-chain"))["detector"].parent
    return {dt: ModelManager("cpu", weights_dir=root, device="cpu", dtype=dt, download=False)
            for dt in ("float32", "bfloat16")}


def test_count_flops_counts_matmuls_and_cpu_attention():
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    _, flops = count_flops(lambda: a @ b)
    assert flops == 2 * 8 * 16 * 4
    q = torch.randn(1, 2, 10, 8)
    _, flops = count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q))
    assert flops == 2 * (2 * 2 * 10 * 10 * 8)  # QK^T and AV


def test_stage_flops_and_report(managers):
    labeler = managers["float32"].labeler()
    counts = count_stage_flops(labeler, scripted_kwargs, scene)
    assert set(counts) == {"detect", "florence_vision", "segment_encode", "segment_decode", "click", "embed"}
    assert all(v > 0 for v in counts.values()), counts
    assert counts["detect"] > counts["florence_vision"]  # + text encoder and decoder steps
    suite = {"autolabel": {"detect_s": 2.0, "segment_encode_s": 1.0, "segment_decode_s": 0.5, "embed_s": 0.25},
             "sam2": {"click_p50_ms": 10.0}, "florence": {"vision_tower_s": 1.0}}
    report = flops_report(counts, suite, peak_gflops=100.0)
    row = report["stages"]["detect"]
    assert row["achieved_gflops"] == pytest.approx(counts["detect"] / 2.0 / 1e9)
    assert row["fraction_of_peak"] == pytest.approx(row["achieved_gflops"] / 100.0)
    assert report["largest_gap"]["stage"] == "detect"  # the slowest stage of tiny arithmetic


def test_fidelity_of_a_precision_against_itself_and_bf16(managers):
    caps = {}
    for dt, mgr in managers.items():
        labeler = mgr.labeler()
        image, boxes, labels = scene(700)
        det = labeler.detector  # scripted to the scene's boxes, as the bench's auto-label run
        original = det.detect
        det.detect = lambda im, cl, *, synonyms=None, confidence=0.0, _o=original, _d=det, _b=boxes, _l=labels: _o(
            im, cl, synonyms=synonyms, confidence=confidence, generate_kwargs=scripted_kwargs(_d, _b, _l))
        try:
            result = labeler.label(image, sorted(set(labels)), confidence=0.0)
        finally:
            del det.detect
        assert len(result) == len(boxes)
        caps[dt] = capture(labeler, result, scripted_ids, scene)
    same = compare(caps["float32"], caps["float32"])
    assert same["autolabel"]["box_iou_min"] == 1.0 and same["sam2"]["click_mask_iou"] == 1.0
    assert same["florence"]["logits_max_abs_diff"] == 0.0 and same["dinov2"]["cosine_min"] == pytest.approx(1.0)
    half = compare(caps["float32"], caps["bfloat16"])
    assert half["autolabel"]["matched"] == 5 and half["autolabel"]["box_iou_min"] >= 0.99
    assert 0.0 < half["florence"]["logits_max_abs_diff"] < 1.0 and half["florence"]["argmax_agreement"] >= 0.9
    assert half["dinov2"]["cosine_min"] >= 0.99
    assert np.isfinite(half["sam2"]["click_logits_max_abs_diff"])


def test_runtime_speedup_times_both_runtimes_and_flops_count_pytorch(tmp_path, monkeypatch):
    from pipeline.models import openvino_runtime
    from pipeline.models.manager import ModelManager
    from tests.bench.pipeline_runtime import encoder_speedup, pytorch_encoders, runtimes

    if not openvino_runtime.openvino_installed():
        pytest.skip("openvino is not installed")
    monkeypatch.setenv("AGL_OV_CACHE", str(tmp_path / "ov"))
    root = build_chain_models(tmp_path / "chain")["detector"].parent
    labeler = ModelManager("cpu", weights_dir=root, device="cpu", dtype="float32", download=False,
                           runtime="openvino").labeler()
    assert runtimes(labeler) == {"detector": "openvino", "segmenter": "openvino", "embedder": "openvino",
                                 "segmenter_decoder": "openvino"}
    decoder_calls = labeler.segmenter.prompt_decoder.calls
    rows = encoder_speedup(labeler, scene, repeats=2)
    assert set(rows) == {"sam2_encoder", "sam2_click_decoder", "florence_vision", "dinov2_5_crops"}
    assert labeler.segmenter.prompt_decoder.calls > decoder_calls  # the OpenVINO side really ran
    for row in rows.values():
        assert row["openvino_s"] > 0 and row["pytorch_s"] > 0
        assert row["speedup"] == pytest.approx(row["pytorch_s"] / row["openvino_s"])
    calls = labeler.segmenter.vision.calls, labeler.segmenter.prompt_decoder.calls
    with pytorch_encoders(labeler):
        assert set(runtimes(labeler).values()) == {"torch"}
        counts = count_stage_flops(labeler, scripted_kwargs, scene)
    # counted on PyTorch: OpenVINO did not run
    assert (labeler.segmenter.vision.calls, labeler.segmenter.prompt_decoder.calls) == calls
    assert set(runtimes(labeler).values()) == {"openvino"}  # restored
    assert counts["segment_encode"] > 0 and counts["florence_vision"] > 0 and counts["embed"] > 0
