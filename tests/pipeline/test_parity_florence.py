"""Parity: our Florence-2 parser vs transformers' ``Florence2Processor.post_process_generation``.

The tiny random Florence-2 runs for real; a scripted logits processor fixes the tokens it emits.
The generated ids are decoded the way the reference examples do (``batch_decode`` with special
tokens kept) and post-processed by transformers; our parser reads the same generation's pieces.
Differences allowed are exactly the documented ones (``pipeline.detect.florence_parse``).
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from transformers import LogitsProcessorList  # noqa: E402

from pipeline.detect.florence import FlorenceDetector  # noqa: E402
from pipeline.detect.florence_parse import (  # noqa: E402
    TASK_GROUNDING,
    dequantize,
    parse_post_processed,
    parse_tokens,
)
from tests.pipeline.tiny_models import (  # noqa: E402
    build_tiny_florence,
    florence_output_ids,
    scripted_logits_processor,
)

OUTPUTS = {
    "several boxes": "<s>car<loc_100><loc_200><loc_300><loc_400>person<loc_1><loc_2><loc_999><loc_998>"
                     "dog<loc_5><loc_5><loc_50><loc_50>",
    "repeated phrases": "<s>car<loc_1><loc_2><loc_100><loc_200>car<loc_300><loc_300><loc_400><loc_400>"
                        "car car<loc_1><loc_2><loc_100><loc_200>traffic light<loc_5><loc_5><loc_9><loc_90>",
    "a phrase with several boxes": "<s>person<loc_10><loc_20><loc_30><loc_40><loc_500><loc_500><loc_600><loc_700>"
                                   "<loc_12><loc_13><loc_987><loc_654>car<loc_0><loc_0><loc_999><loc_999>",
    "a banned phrase": "<s>the image<loc_1><loc_1><loc_9><loc_9>cat<loc_4><loc_4><loc_8><loc_9>"
                       "dog<loc_7><loc_8><loc_77><loc_88>",
}
SIZES = [(640, 480), (33, 17)]


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    folder = build_tiny_florence(tmp_path_factory.mktemp("parity-florence") / "tiny-florence")
    return FlorenceDetector.from_pretrained(folder, device="cpu")


def _generate(detector, script, size, caption="person. car. dog."):
    tok = detector.processor.tokenizer
    proc = scripted_logits_processor(florence_output_ids(tok, script), tok.eos_token_id)
    image = np.random.default_rng(3).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    gen = detector.generate(image, TASK_GROUNDING + caption,
                            generate_kwargs={"logits_processor": LogitsProcessorList([proc])})
    start = detector.model.generation_config.decoder_start_token_id
    # what the reference examples post-process: the whole sequence, special tokens kept
    text = detector.processor.batch_decode([[start, *gen.token_ids]], skip_special_tokens=False)[0]
    reference = detector.processor.post_process_generation(text, task=TASK_GROUNDING, image_size=size)
    return gen, reference[TASK_GROUNDING]


def _assert_int_of(ours: np.ndarray, theirs: np.ndarray) -> None:
    """theirs == int(ours): transformers truncates the same bin centre (float32 arithmetic, so a
    value within 1e-4 of an integer may land on either side of it)."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape
    near = np.abs(ours - np.round(ours)) < 1e-4
    np.testing.assert_array_equal(theirs[~near], np.trunc(ours[~near]))
    assert np.all(np.isin(theirs[near] - np.round(ours[near]), (-1.0, 0.0)))
    assert np.all((ours - theirs >= -1e-4) & (ours - theirs < 1.0))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("case", list(OUTPUTS))
def test_parser_matches_post_process_generation(detector, case, size):
    gen, ref = _generate(detector, OUTPUTS[case], size)
    ours = parse_tokens(gen.pieces, gen.probs, banned=detector.banned)
    assert len(ours) >= 2  # never an empty comparison
    assert [b.label for b in ours] == ref["labels"]
    xyxy = dequantize(np.array([b.bins for b in ours]), size)
    _assert_int_of(xyxy, np.array(ref["bboxes"]))


def test_detections_match_the_reference_dict_mapped_to_classes(detector):
    size = (640, 480)
    gen, ref = _generate(detector, OUTPUTS["several boxes"], size)
    tok = detector.processor.tokenizer
    proc = scripted_logits_processor(florence_output_ids(tok, OUTPUTS["several boxes"]), tok.eos_token_id)
    image = np.random.default_rng(3).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    det = detector.detect(image, ["person", "car"], generate_kwargs={"logits_processor": LogitsProcessorList([proc])})
    theirs = parse_post_processed({TASK_GROUNDING: ref}, ["person", "car"], size)
    assert det.labels == [theirs.class_names[i] for i in theirs.class_id] == ["car", "person"]
    _assert_int_of(det.xyxy, theirs.xyxy)
    # what transformers cannot give: a confidence per box from the same generation
    assert np.all((det.confidence > 0) & (det.confidence <= 1))


def test_documented_difference_non_ascii_phrases(detector):
    """transformers drops non-ASCII characters from phrases; ours keeps them."""
    gen, ref = _generate(detector, "<s>café<loc_1><loc_2><loc_300><loc_400>", (640, 480), caption="café.")
    ours = parse_tokens(gen.pieces, gen.probs, banned=detector.banned)
    assert [b.label for b in ours] == ["café"]
    assert ref["labels"] == ["caf"]
    _assert_int_of(dequantize(np.array([b.bins for b in ours]), (640, 480)), np.array(ref["bboxes"]))


def test_documented_difference_partial_location_group(detector):
    """A group of fewer than 4 location tokens (a malformed or cut output) is dropped here and the
    next phrase starts clean; transformers' regex glues the partial group's tail to it."""
    script = "<s>cat<loc_4><loc_4><loc_8>dog<loc_7><loc_8><loc_77><loc_88>"
    gen, ref = _generate(detector, script, (640, 480))
    ours = parse_tokens(gen.pieces, gen.probs, banned=detector.banned)
    assert [b.label for b in ours] == ["dog"]
    assert ref["labels"] == ["loc_8>dog"]
    _assert_int_of(dequantize(np.array([b.bins for b in ours]), (640, 480)), np.array(ref["bboxes"]))
