"""FlorenceDetector end to end on a tiny random Florence-2 (real transformers code paths, CPU)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from transformers import LogitsProcessorList  # noqa: E402

from pipeline.detect.florence import FlorenceDetector  # noqa: E402
from pipeline.detect.florence_parse import boxes_to_detections, parse_post_processed, parse_text  # noqa: E402
from pipeline.models.loader import resolve_weights  # noqa: E402
from pipeline.models.specs import get_spec  # noqa: E402
from pipeline.types import Detections  # noqa: E402
from tests.pipeline.tiny_models import (  # noqa: E402
    build_tiny_florence,
    florence_output_ids,
    scripted_logits_processor,
)

W, H = 80, 50
SCRIPT = ("<s>car<loc_100><loc_200><loc_300><loc_400>person<loc_1><loc_2><loc_999><loc_998>"
          "<loc_500><loc_500><loc_600><loc_700>dog<loc_5><loc_5><loc_50><loc_50>")


@pytest.fixture(scope="module")
def tiny_florence_dir(tmp_path_factory):
    return build_tiny_florence(tmp_path_factory.mktemp("florence") / "tiny-florence")


@pytest.fixture(scope="module")
def detector(tiny_florence_dir):
    # Load through the same resolution path the app uses (explicit folder override).
    spec = get_spec("detector", override=str(tiny_florence_dir))
    folder = resolve_weights(spec)
    return FlorenceDetector.from_pretrained(folder, device="cpu")


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _scripted(detector, text=SCRIPT):
    tok = detector.processor.tokenizer
    proc = scripted_logits_processor(florence_output_ids(tok, text), tok.eos_token_id)
    return {"logits_processor": LogitsProcessorList([proc])}


def test_loads_on_cpu_in_float32(detector, tiny_florence_dir):
    assert detector.device.type == "cpu"
    assert detector.dtype == torch.float32
    assert detector.name == tiny_florence_dir.name
    assert not detector.model.training


def test_unforced_generation_gives_valid_detections(detector, image):
    det = detector.detect(image, ["person", "car", "traffic light"], max_new_tokens=12)
    assert isinstance(det, Detections)
    assert det.class_names == ["person", "car", "traffic light"]
    assert det.xyxy.dtype == np.float32 and det.xyxy.shape == (len(det), 4)
    assert det.mask is None
    if len(det):
        assert np.all(det.xyxy >= 0) and np.all(det.xyxy[:, [0, 2]] <= W) and np.all(det.xyxy[:, [1, 3]] <= H)
        assert np.all((det.confidence >= 0) & (det.confidence <= 1))


def test_boxes_map_to_original_pixels_and_classes(detector, image):
    det = detector.detect(image, ["person", "car"], generate_kwargs=_scripted(detector))
    # "dog" was not asked for: dropped. "person" grounds two boxes.
    assert det.labels == ["car", "person", "person"]
    sx, sy = W / 1000, H / 1000
    np.testing.assert_allclose(det.xyxy[0], [100.5 * sx, 200.5 * sy, 300.5 * sx, 400.5 * sy], rtol=1e-5)
    np.testing.assert_allclose(det.xyxy[2], [500.5 * sx, 500.5 * sy, 600.5 * sx, 700.5 * sy], rtol=1e-5)
    assert np.all(det.xyxy[:, [0, 2]] <= W) and np.all(det.xyxy[:, [1, 3]] <= H)
    assert det.data["raw_label"].tolist() == ["car", "person", "person"]


def test_confidence_comes_from_the_model_probabilities(detector, image):
    det = detector.detect(image, ["person", "car"], generate_kwargs=_scripted(detector))
    conf, loc, label = det.confidence, det.data["loc_score"], det.data["label_score"]
    assert conf.dtype == np.float32 and np.all((conf > 0) & (conf < 1))
    np.testing.assert_allclose(conf, loc * label, rtol=1e-4)
    assert label[1] == label[2]  # both boxes of the one "person" phrase share its label score
    # A random model spreads probability over ~1400 tokens: a 7-bin window holds far less than 1.
    assert np.all(loc < 0.1)
    # Thresholding drops boxes below the confidence asked for.
    cut = float(np.sort(conf)[1])
    kept = detector.detect(image, ["person", "car"], confidence=cut, generate_kwargs=_scripted(detector))
    assert len(kept) == 2 and np.all(kept.confidence >= cut)


def test_location_probability_window(detector, image):
    tok = detector.processor.tokenizer
    prompt = "<CAPTION_TO_PHRASE_GROUNDING>car."
    detector.loc_tolerance = 0
    try:
        _, narrow = detector.generate_pieces(image, prompt, generate_kwargs=_scripted(detector))
    finally:
        detector.loc_tolerance = 3
    pieces, wide = detector.generate_pieces(image, prompt, generate_kwargs=_scripted(detector))
    locs = [i for i, p in enumerate(pieces) if p.startswith("<loc_")]
    assert len(locs) == 16
    assert all(wide[i] > narrow[i] for i in locs)  # the window adds neighbouring bins' mass
    assert pieces[:2] == ["<s>", "car"] and tok.eos_token in pieces


def test_parser_agrees_with_transformers_post_processing(detector):
    text = "</s><s>car<loc_100><loc_200><loc_300><loc_400>person<loc_1><loc_2><loc_999><loc_998></s>"
    reference = detector.processor.post_process_generation(
        text, task="<CAPTION_TO_PHRASE_GROUNDING>", image_size=(W, H)
    )
    ours = boxes_to_detections(parse_text(text), ["person", "car"], (W, H))
    theirs = parse_post_processed(reference, ["person", "car"], (W, H))
    assert ours.class_id.tolist() == theirs.class_id.tolist() == [1, 0]
    # transformers casts pixels to int; ours keeps the bin centre
    np.testing.assert_allclose(np.floor(ours.xyxy), theirs.xyxy)


def test_bad_inputs_are_rejected(detector, image):
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(image.astype(np.float32), ["car"])
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(image[..., 0], ["car"])
    with pytest.raises(ValueError, match="class name"):
        detector.detect(image, [])
    with pytest.raises(ValueError, match="confidence"):
        detector.detect(image, ["car"], confidence=1.5)
    with pytest.raises(FileNotFoundError):
        FlorenceDetector.from_pretrained("/nonexistent/florence")


def test_bfloat16_on_cpu(tiny_florence_dir, image):
    det = FlorenceDetector.from_pretrained(tiny_florence_dir, device="cpu", dtype="bfloat16")
    assert det.dtype == torch.bfloat16
    out = det.detect(image, ["person", "car"], generate_kwargs=_scripted(det))
    assert out.labels == ["car", "person", "person"]
    assert np.all((out.confidence >= 0) & (out.confidence <= 1))
