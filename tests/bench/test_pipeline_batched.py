"""Smoke tests of ``bench pipeline``'s batched figures and its gap wording, on the tiny chain."""
from __future__ import annotations

import pytest

from tests.bench.pipeline_autolabel import measure_batched
from tests.bench.pipeline_gaps import gaps
from tests.chain_models import build_chain_models


@pytest.fixture(scope="module")
def labeler(tmp_path_factory):
    from pipeline.models.manager import ModelManager

    root = build_chain_models(tmp_path_factory.mktemp("bench-batched"))["detector"].parent
    return ModelManager("cpu", weights_dir=root, device="cpu", dtype="float32", download=False).labeler()


def test_measure_batched_labels_every_scripted_object_both_ways(labeler):
    out = measure_batched(labeler, 3, "cpu")
    assert out["batch"] == 3
    # 5 scripted boxes per image; the tiny random SAM2 leaves a few masks empty or duplicate
    assert out["objects"] == out["objects_one_by_one"] >= 10
    assert out["images_per_s"] > 0 and out["one_by_one_images_per_s"] > 0
    assert out["speedup"] == pytest.approx(out["images_per_s"] / out["one_by_one_images_per_s"])
    assert out["sam2_encoder_images_per_s"] > 0 and out["florence_30tok_images_per_s"] > 0
    assert "detect_many" not in vars(labeler.detector) and "detect" not in vars(labeler.detector)  # unpatched


def _suite(runtime: str, decoder: str) -> dict:
    return {"dtype": "bfloat16", "runtime": {"detector": runtime, "segmenter": runtime},
            "florence_decoder": decoder,
            "autolabel": {"total_s": 4.0, "detect_s": 2.0, "segment_encode_s": 1.0, "segment_decode_s": 0.2,
                          "embed_s": 0.8, "detector_tokens": 34},
            "florence": {"prefill_s": 1.5, "vision_tower_s": 1.2, "per_token_ms": 15.0},
            "sam2": {"click_p95_ms": 40.0}}


def test_gaps_name_only_the_levers_a_configuration_does_not_use():
    used = gaps(_suite("openvino", "int8"), None)["whole_image"]
    assert "4.00 s vs 3.0 s" in used
    assert "int8" not in used and "OpenVINO" not in used
    assert "smaller Florence-2 input" in used and "a GPU" in used
    bare = gaps(_suite("torch", "native"), None)["whole_image"]
    assert "token loop in int8" in bare and "OpenVINO for the vision encoders" in bare
    assert "click" not in gaps(_suite("openvino", "int8"), None)  # 40 ms p95 meets 50 ms
