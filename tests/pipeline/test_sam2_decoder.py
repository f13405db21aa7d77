"""SAM2's mask decoder compiled with OpenVINO against the transformers decoder.

``pipeline.segment.sam2_decoder.MaskDecoderCore`` is the decoder rewritten for tracing (one
image, any number of prompts and prompt tokens, every mask token's output; the multimask
choice made afterwards by the decoder's own code). On the tiny random SAM2 in float32:

- the PyTorch ``MaskDecoderCore`` + ``select_masks`` equals ``Sam2MaskDecoder.forward`` to
  float rounding (within 1e-5 of the logits' spread) for a click, a box batch and single-mask
  (dynamic multimask) output;
- the OpenVINO-compiled decoder (``f32``) gives the same low-resolution logits within 1e-4 of
  their spread (measured 3.4e-6) and the same IoU scores within 1e-4, for clicks with and without a box, a
  previous-mask prompt, a box batch (P = 3 prompts) and prompts of 1 to 6 tokens (the IR has
  dynamic P and N), and switches features when the image changes.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from pipeline.models import openvino_runtime as ovr
from pipeline.segment.sam2_decoder import MaskDecoderCore, example_inputs, select_masks
from tests.chain_models import SCENE_CLASSES, mask_iou, scene_boxes, scene_image


def _boxes() -> np.ndarray:
    """The scene's objects and one more box: three prompts for a box batch."""
    return np.array([*(scene_boxes()[c] for c in SCENE_CLASSES), (10, 10, 60, 50)], np.float32)


def _close(a: torch.Tensor, b: torch.Tensor, rel: float) -> None:
    assert a.shape == b.shape
    spread = float(b.std()) + 1e-12
    assert float((a - b).abs().max()) <= rel * spread, (float((a - b).abs().max()), spread)


def test_traceable_decoder_equals_the_transformers_decoder(chain):
    from pipeline.segment.sam2 import Sam2Segmenter

    seg = Sam2Segmenter.from_pretrained(chain["segmenter"], device="cpu", dtype=torch.float32, runtime="torch")
    seg.set_image(scene_image())
    feats = seg._features
    model = seg.model
    pe = model.get_image_wide_positional_embeddings()
    core = MaskDecoderCore(model.mask_decoder).eval()
    boxes = torch.from_numpy(_boxes()[:3]).reshape(1, 3, 4)
    pts = torch.tensor([[[[40.0, 50.0], [90.0, 60.0]]]])
    cases = [dict(input_points=pts, input_labels=torch.tensor([[[1, 0]]]), input_boxes=None),
             dict(input_points=None, input_labels=None, input_boxes=boxes)]
    with torch.inference_mode():
        for prompt in cases:
            sparse, dense = model.prompt_encoder(input_masks=None, **prompt)
            masks, iou, _ = core(feats[2], pe, sparse, dense, feats[0], feats[1])
            assert masks.shape[2] == model.mask_decoder.num_mask_tokens
            for multimask in (True, False):
                ref = model.mask_decoder(image_embeddings=feats[2], image_positional_embeddings=pe,
                                         sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                         multimask_output=multimask, high_resolution_features=feats[:2])
                got_m, got_i = select_masks(model.mask_decoder, masks, iou, multimask)
                assert float(ref[0].abs().max()) > 0  # real logits, not agreement on zeros
                _close(got_m, ref[0], 1e-5)
                np.testing.assert_allclose(got_i.numpy(), ref[1].numpy(), atol=1e-6)
    shapes = [tuple(t.shape) for t in example_inputs(model)]
    assert shapes[0] == tuple(feats[2].shape) and shapes[4] == tuple(feats[0].shape) and shapes[5] == tuple(feats[1].shape)


@pytest.mark.skipif(not ovr.openvino_installed(), reason="openvino is not installed")
def test_openvino_decoder_matches_pytorch_for_every_prompt_kind(chain, ov_cache):
    from pipeline.segment.sam2 import Sam2Segmenter

    ov = Sam2Segmenter.from_pretrained(chain["segmenter"], device="cpu", dtype=torch.float32, runtime="openvino")
    pt = Sam2Segmenter.from_pretrained(chain["segmenter"], device="cpu", dtype=torch.float32, runtime="torch")
    assert ov.prompt_decoder is not None and ov.prompt_decoder.precision == "f32" and pt.prompt_decoder is None
    image, boxes = scene_image(), _boxes()
    ov.set_image(image)
    pt.set_image(image)
    feats = pt._features  # the same features on both sides: only the decoder differs
    prompts = []
    for k in range(1, 6):  # 1..5 clicks, + the pad token: N = 2..6 prompt tokens
        xy = boxes[0, :2] + np.linspace(4, 20, k)[:, None]
        prompts.append(dict(points=ov._scale_xy(xy, ov._hw).reshape(1, 1, -1, 2),
                            labels=torch.tensor([[[1] + [0] * (k - 1)]])))
    box = ov._scale_xy(boxes[1].reshape(2, 2), ov._hw).reshape(1, 1, 4)
    prompts.append(dict(points=prompts[1]["points"], labels=prompts[1]["labels"], boxes=box))
    prompts.append(dict(boxes=ov._scale_xy(boxes[:3].reshape(-1, 2, 2), ov._hw).reshape(1, 3, 4)))  # P = 3
    low = pt.predict_points(boxes[2, :2][None] + 8, np.array([1])).low_res_logits
    prompts.append(dict(points=prompts[0]["points"], labels=prompts[0]["labels"],
                        mask_input=torch.from_numpy(low).reshape(1, 1, *low.shape)))
    calls = ov.prompt_decoder.calls
    for prompt in prompts:
        for multimask in (True, False):
            a_m, a_i = ov._decode(feats, multimask=multimask, **prompt)
            b_m, b_i = pt._decode(feats, multimask=multimask, **prompt)
            assert float(b_m.abs().max()) > 0
            _close(a_m, b_m, 1e-4)
            np.testing.assert_allclose(a_i.numpy(), b_i.numpy(), atol=1e-4)
    assert ov.prompt_decoder.calls == calls + 2 * len(prompts)  # the compiled decoder really ran


@pytest.mark.skipif(not ovr.openvino_installed(), reason="openvino is not installed")
def test_openvino_decoder_follows_the_current_image(chain, ov_cache):
    from pipeline.segment.sam2 import Sam2Segmenter

    ov = Sam2Segmenter.from_pretrained(chain["segmenter"], device="cpu", dtype=torch.float32, runtime="openvino")
    pt = Sam2Segmenter.from_pretrained(chain["segmenter"], device="cpu", dtype=torch.float32, runtime="torch")
    first, boxes = scene_image(), _boxes()
    second = np.ascontiguousarray(first[::-1, ::-1])
    for image in (first, second, first):
        ov.set_image(image)
        pt.set_image(image)
        m_ov, s_ov = ov.predict_boxes(boxes)
        m_pt, s_pt = pt.predict_boxes(boxes)
        assert m_pt.any(axis=(1, 2)).all()
        for a, b in zip(m_ov, m_pt, strict=True):
            assert mask_iou(a, b) >= 0.99
        np.testing.assert_allclose(s_ov, s_pt, atol=1e-4)


@pytest.mark.skipif(not ovr.openvino_installed(), reason="openvino is not installed")
def test_the_load_warms_the_compiled_decoder_and_sets_no_image(chain, ov_cache, monkeypatch):
    from pipeline.segment.base import NOT_SET_MESSAGE
    from pipeline.segment.sam2 import Sam2Segmenter

    warm = Sam2Segmenter.from_pretrained(chain["segmenter"], device="cpu", dtype=torch.float32, runtime="openvino")
    assert warm.prompt_decoder is not None and warm.prompt_decoder.calls == 1  # one click at load
    assert len(warm._cache) == 0 and not warm.is_image_set and warm._ov_inputs.arrays == ()  # on no image, in no cache
    with pytest.raises(RuntimeError, match=re.escape(NOT_SET_MESSAGE)):
        warm.predict_points(np.array([[20.0, 20.0]]), np.array([1]))
    monkeypatch.setattr(Sam2Segmenter, "warm_up", lambda self: None)
    cold = Sam2Segmenter.from_pretrained(chain["segmenter"], device="cpu", dtype=torch.float32, runtime="openvino")
    assert cold.prompt_decoder.calls == 0
    image, boxes = scene_image(), _boxes()
    for seg in (warm, cold):
        seg.set_image(image)
    point = ((boxes[0, :2] + boxes[0, 2:]) / 2)[None]
    a, b = (seg.predict_points(point, np.array([1])) for seg in (warm, cold))
    assert b.mask.any() and a.score == b.score
    np.testing.assert_array_equal(a.low_res_logits, b.low_res_logits)  # the warm-up changed nothing
    assert warm.prompt_decoder.calls == 2


def test_warm_up_is_a_no_op_without_a_compiled_decoder(chain):
    from pipeline.segment.sam2 import Sam2Segmenter

    seg = Sam2Segmenter.from_pretrained(chain["segmenter"], device="cpu", dtype=torch.float32, runtime="torch")
    assert seg.prompt_decoder is None
    seg.warm_up()
    assert seg._image_pe is None and len(seg._cache) == 0 and not seg.is_image_set


@pytest.mark.skipif(not ovr.openvino_installed(), reason="openvino is not installed")
def test_a_compiled_decoder_that_fails_its_warm_up_gives_way_to_pytorch(chain, ov_cache, monkeypatch, caplog):
    from pipeline.segment.sam2 import Sam2Segmenter

    def broken(self, *inputs):
        raise RuntimeError("Exception from src/inference: broken IR")

    monkeypatch.setattr(ovr.OvEncoder, "run", broken)
    seg = Sam2Segmenter.from_pretrained(chain["segmenter"], device="cpu", dtype=torch.float32, runtime="openvino")
    assert seg.prompt_decoder is None and seg.vision is not None  # only the decoder falls back
    assert "click decoder failed its first call (RuntimeError: Exception from src/inference: broken IR)" in caplog.text
    image, boxes = scene_image(), _boxes()
    seg.set_image(image)
    pred = seg.predict_points(((boxes[0, :2] + boxes[0, 2:]) / 2)[None], np.array([1]))
    assert pred.mask.shape == image.shape[:2] and pred.mask.any()
