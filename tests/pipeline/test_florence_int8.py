"""Florence-2's decoder with int8 linear layers (the CPU default) against its own layers.

On the tiny chain model (scripted to emit the scene's boxes), with what it measured:
the same boxes and classes, confidences within 0.02, and teacher-forced logits whose arg-max
agrees at every step with a mean |difference| of at most 1 % of the logits' spread (measured
0.08 %), with the float32 model and with the bfloat16 one the app runs by default.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.detect import florence_int8
from tests.chain_models import SCENE_CLASSES, scene_image


def _teacher_forced_logits(det, image, ids: list[int]) -> np.ndarray:
    inputs = det.preprocess(image, "<CAPTION_TO_PHRASE_GROUNDING>" + ". ".join(SCENE_CLASSES) + ".")
    start = det.model.config.text_config.decoder_start_token_id
    with torch.inference_mode():
        out = det.model(**inputs, decoder_input_ids=torch.tensor([[start, *ids]]))
    return out.logits[0].float().numpy()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_decoder_detects_like_the_native_decoder(chain, dtype):
    from pipeline.detect.florence import FlorenceDetector

    image = scene_image()
    ref = FlorenceDetector.from_pretrained(chain["detector"], device="cpu", dtype=torch.float32, decoder="native")
    q8 = FlorenceDetector.from_pretrained(chain["detector"], device="cpu", dtype=dtype, decoder="int8")
    assert ref.decoder == "native" and q8.decoder == "int8"
    assert isinstance(q8.model.model.language_model.decoder, florence_int8.Int8Decoder)
    assert type(q8.model.lm_head).__module__.startswith("torch.ao.nn.quantized")
    want, got = ref.detect(image, SCENE_CLASSES), q8.detect(image, SCENE_CLASSES)
    assert len(want) == len(SCENE_CLASSES) == len(got)
    np.testing.assert_allclose(got.xyxy, want.xyxy, atol=1e-3)
    assert list(got.class_id) == list(want.class_id)
    np.testing.assert_allclose(got.confidence, want.confidence, atol=0.02)
    gen = ref.generate(image, "<CAPTION_TO_PHRASE_GROUNDING>" + ". ".join(SCENE_CLASSES) + ".")
    a, b = _teacher_forced_logits(ref, image, gen.token_ids), _teacher_forced_logits(q8, image, gen.token_ids)
    assert a.shape == b.shape and len(a) > 10
    assert (a.argmax(-1) == b.argmax(-1)).all()
    assert float(np.abs(a - b).mean()) <= 0.01 * float(a.std())


def test_decoder_mode_setting(monkeypatch):
    monkeypatch.delenv("AGL_FLORENCE_DECODER", raising=False)
    assert florence_int8.decoder_mode("cpu") == "int8"
    assert florence_int8.decoder_mode("cuda") == "native"  # a GPU runs the model's own layers
    monkeypatch.setenv("AGL_FLORENCE_DECODER", "native")
    assert florence_int8.decoder_mode("cpu") == "native"
    monkeypatch.setenv("AGL_FLORENCE_DECODER", "int4")
    with pytest.raises(ValueError, match="AGL_FLORENCE_DECODER: expected one of"):
        florence_int8.decoder_mode("cpu")


def test_unknown_decoder_is_refused(chain):
    from pipeline.detect.florence import FlorenceDetector

    with pytest.raises(ValueError, match="decoder: expected one of"):
        FlorenceDetector.from_pretrained(chain["detector"], device="cpu", dtype=torch.float32, decoder="fp8")


def test_int8_decoder_with_beam_search_matches_native(chain):
    from pipeline.detect.florence import FlorenceDetector

    image = scene_image()
    out = {}
    for decoder in ("native", "int8"):
        det = FlorenceDetector.from_pretrained(chain["detector"], device="cpu", dtype=torch.bfloat16,
                                               decoder=decoder, num_beams=3)
        out[decoder] = det.detect(image, SCENE_CLASSES)  # the beams' caches are reordered in float32
    assert len(out["native"]) == len(SCENE_CLASSES) == len(out["int8"])
    np.testing.assert_allclose(out["int8"].xyxy, out["native"].xyxy, atol=1e-3)
    np.testing.assert_allclose(out["int8"].confidence, out["native"].confidence, atol=0.02)


def test_model_manager_passes_the_decoder_choice(chain, monkeypatch):
    from pipeline.models.manager import ModelManager

    root = chain["detector"].parent
    monkeypatch.setenv("AGL_FLORENCE_DECODER", "native")
    forced = ModelManager("cpu", weights_dir=root, device="cpu", dtype="float32", download=False, decoder="int8")
    assert forced.detector().decoder == "int8"  # the argument wins over the variable
    default = ModelManager("cpu", weights_dir=root, device="cpu", dtype="float32", download=False)
    assert default.detector().decoder == "native"
