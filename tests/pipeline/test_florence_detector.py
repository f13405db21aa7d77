"""FlorenceDetector end to end on a tiny random Florence-2 (real transformers code paths, CPU)."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from transformers import LogitsProcessorList  # noqa: E402

from pipeline.detect.florence import FlorenceDetector  # noqa: E402
from pipeline.detect.florence_parse import TASK_GROUNDING, boxes_to_detections, parse_tokens  # noqa: E402
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


def test_forced_output_gives_boxes_labels_and_confidences(detector, image):
    """The real model runs every step; the script only fixes which tokens it emits."""
    det = detector.detect(image, ["person", "car", "traffic light"], generate_kwargs=_scripted(detector))
    assert isinstance(det, Detections)
    assert det.class_names == ["person", "car", "traffic light"]
    assert det.labels == ["car", "person", "person"]
    assert det.xyxy.dtype == np.float32 and det.xyxy.shape == (3, 4)
    np.testing.assert_allclose(det.xyxy[1], [1.5 * W / 1000, 2.5 * H / 1000, 999.5 * W / 1000, 998.5 * H / 1000], rtol=1e-5)
    assert det.mask is None
    assert np.all((det.confidence > 0) & (det.confidence <= 1))
    assert det.data["truncated"].tolist() == [False, False, False]


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


# ---------------------------------------------------------------- beam search (issue 8, item 1)
def _grammar(steps):
    """Allow only the ids in ``steps[k]`` at step k, keeping the model's own scores among them,
    so beam search still has real choices (the returned beam changes row along the way)."""
    from transformers import LogitsProcessor

    class _Grammar(LogitsProcessor):
        def __init__(self) -> None:
            self.start = None

        def __call__(self, input_ids, scores):
            if self.start is None:
                self.start = input_ids.shape[1]
            allowed = steps[min(input_ids.shape[1] - self.start, len(steps) - 1)]
            mask = torch.full_like(scores, float("-inf"))
            mask[:, allowed] = 0.0
            return scores + mask

    return _Grammar()


def _beam_steps(tok):
    low = tok.convert_tokens_to_ids([f"<loc_{i}>" for i in range(0, 400, 10)])
    high = tok.convert_tokens_to_ids([f"<loc_{i}>" for i in range(600, 1000, 10)])
    steps = [[tok.bos_token_id]]
    for phrase in ("car", "person"):
        steps += [[t] for t in florence_output_ids(tok, phrase)] + [low, low, high, high]
    return steps + [[tok.eos_token_id]]


def test_beam_search_confidence_comes_from_the_returned_beam(detector, image):
    tok = detector.processor.tokenizer
    prompt = "<CAPTION_TO_PHRASE_GROUNDING>person. car."
    steps = _beam_steps(tok)
    gen = detector.generate(image, prompt, num_beams=3,
                            generate_kwargs={"logits_processor": LogitsProcessorList([_grammar(steps)])})
    assert len(gen.token_ids) == len(steps) and not gen.truncated
    # the returned sequence went through beams other than 0: beam 0's logits would be wrong
    inputs = detector.preprocess(image, prompt)
    with torch.no_grad():
        out = detector.model.generate(**inputs, num_beams=3, max_new_tokens=64, do_sample=False,
                                      output_logits=True, return_dict_in_generate=True,
                                      logits_processor=LogitsProcessorList([_grammar(steps)]))
    assert out.sequences[0, 1:].tolist() == gen.token_ids
    assert int(out.beam_indices[0].max()) > 0
    # reference: one teacher-forced pass over the returned ids gives each step's distribution
    start = detector.model.generation_config.decoder_start_token_id
    decoder_ids = torch.tensor([[start, *gen.token_ids[:-1]]])
    with torch.no_grad():
        forced = detector.model(**inputs, decoder_input_ids=decoder_ids).logits[0].float()
    ref_pieces, ref_probs = detector._pieces(torch.tensor(gen.token_ids), forced)
    assert gen.pieces == ref_pieces
    np.testing.assert_allclose(gen.probs, ref_probs, rtol=1e-4)
    beam0 = torch.stack([step[0] for step in out.logits]).float()
    _, beam0_probs = detector._pieces(torch.tensor(gen.token_ids), beam0)
    assert not np.allclose(beam0_probs, ref_probs, rtol=1e-3)  # what the old code reported
    # and detect's confidences are those of the returned sequence
    det = detector.detect(image, ["person", "car"], num_beams=3,
                          generate_kwargs={"logits_processor": LogitsProcessorList([_grammar(steps)])})
    expected = boxes_to_detections(parse_tokens(ref_pieces, ref_probs), ["person", "car"], (W, H))
    assert det.labels == ["car", "person"]
    np.testing.assert_allclose(det.confidence, expected.confidence, rtol=1e-4)
    np.testing.assert_allclose(det.xyxy, expected.xyxy)


def test_bad_beam_count_is_rejected(detector, image):
    with pytest.raises(ValueError, match="num_beams"):
        detector.detect(image, ["car"], num_beams=0)


# ---------------------------------------------------------------- long class lists (item 2)
def test_long_class_list_is_split_into_prompts_that_fit(detector, image, monkeypatch):
    classes = [f"class{i}" for i in range(100)]
    plans = detector.plan_prompts(classes)
    assert len(plans) > 1
    np.testing.assert_array_equal(np.concatenate([p.class_ids for p in plans]), np.arange(100))
    for plan in plans:  # the processor's own input length, image tokens included
        inputs = detector.processor(text=TASK_GROUNDING + plan.caption, images=image, return_tensors="pt")
        assert inputs["input_ids"].shape[-1] == detector.prompt_tokens(plan.caption) <= detector.max_encoder_tokens
    one_prompt = TASK_GROUNDING + ". ".join(classes) + "."
    assert detector.processor(text=one_prompt, images=image, return_tensors="pt")["input_ids"].shape[-1] > 256

    prompts = []
    real_generate = detector.generate_many  # detect runs one batched generate per prompt
    monkeypatch.setattr(detector, "generate_many",
                        lambda imgs, prompt, *a, **k: prompts.append(prompt) or real_generate(imgs, prompt, *a, **k))
    script = "<s>class5<loc_100><loc_200><loc_300><loc_400>class90<loc_10><loc_20><loc_30><loc_40>"
    det = detector.detect(image, classes, generate_kwargs=_scripted(detector, script))
    assert prompts == [TASK_GROUNDING + p.caption for p in plans]
    assert det.class_id.tolist() == [5, 90]  # ids into the caller's full list
    assert det.labels == ["class5", "class90"]
    np.testing.assert_allclose(det.xyxy[1], [10.5 * W / 1000, 20.5 * H / 1000, 30.5 * W / 1000, 40.5 * H / 1000], rtol=1e-5)


def test_a_class_too_long_for_any_prompt_is_a_clear_error(detector, image):
    with pytest.raises(ValueError, match="encoder tokens"):
        detector.detect(image, ["car", " ".join(["traffic light"] * 200)])


# ---------------------------------------------------------------- thin images (item 3)
@pytest.mark.parametrize("hw", [(1, 80), (3, 80), (80, 1), (80, 3)])
def test_images_one_or_three_pixels_thin(detector, hw):
    from PIL import Image

    h, w = hw
    img = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    prompt = TASK_GROUNDING + "person. car."
    ours = detector.preprocess(img, prompt)["pixel_values"]
    # a PIL image has an unambiguous layout: the reference for what the model must see
    reference = detector.processor(text=prompt, images=Image.fromarray(img), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(ours, reference)
    script = "<s>car<loc_0><loc_0><loc_999><loc_999>person<loc_100><loc_0><loc_899><loc_999>"
    det = detector.detect(img, ["person", "car"], generate_kwargs=_scripted(detector, script))
    assert det.labels == ["car", "person"]
    np.testing.assert_allclose(det.xyxy[0], [0.5 * w / 1000, 0.5 * h / 1000, 999.5 * w / 1000, 999.5 * h / 1000], rtol=1e-5)
    assert np.all(det.xyxy[:, [0, 2]] <= w) and np.all(det.xyxy[:, [1, 3]] <= h)


# ---------------------------------------------------------------- budget and truncation (item 4)
def test_budget_defaults_to_the_reference_capped_by_the_decoder(detector):
    assert detector.max_new_tokens == 1024
    assert detector.max_decoder_tokens == 256  # the tiny model's positions
    assert detector.budget() == 256 and detector.budget(10_000) == 256 and detector.budget(40) == 40
    with pytest.raises(ValueError, match="max_new_tokens"):
        detector.budget(0)


def test_output_that_runs_out_of_budget_is_reported(detector, image, caplog):
    tok = detector.processor.tokenizer
    whole = florence_output_ids(tok, SCRIPT)
    two_boxes = florence_output_ids(tok, SCRIPT[:SCRIPT.index("<loc_500>")])
    budget = len(two_boxes) + 2  # stops inside the third box
    assert budget < len(whole)
    with caplog.at_level("WARNING", logger="pipeline.detect.florence"):
        det = detector.detect(image, ["person", "car"], max_new_tokens=budget, generate_kwargs=_scripted(detector))
    assert det.labels == ["car", "person"]  # the partial third box is dropped, not mis-parsed
    np.testing.assert_allclose(det.xyxy[1], [1.5 * W / 1000, 2.5 * H / 1000, 999.5 * W / 1000, 998.5 * H / 1000], rtol=1e-5)
    assert det.data["truncated"].tolist() == [True, True]
    assert any("whole budget" in r.getMessage() and str(budget) in r.getMessage() for r in caplog.records)
    full = detector.detect(image, ["person", "car"], generate_kwargs=_scripted(detector))
    assert len(full) == 3 and not full.data["truncated"].any()


# ---------------------------------------------------------------- synonyms in the prompt (item 9)
def test_synonyms_are_prompted_and_map_back_to_their_class(detector, image, monkeypatch):
    prompts = []
    real_preprocess = detector.preprocess_many
    monkeypatch.setattr(detector, "preprocess_many", lambda imgs, prompt: prompts.append(prompt) or real_preprocess(imgs, prompt))
    script = "<s>automobile<loc_100><loc_200><loc_300><loc_400>person<loc_1><loc_2><loc_500><loc_600>"
    det = detector.detect(image, ["person", "car"], synonyms={"car": ["automobile", "car"], "giraffe": ["camelopard"]},
                          generate_kwargs=_scripted(detector, script))
    assert prompts == [TASK_GROUNDING + "person. car. automobile."]
    assert det.labels == ["car", "person"]
    assert det.data["raw_label"].tolist() == ["automobile", "person"]
    np.testing.assert_allclose(det.xyxy[0], [100.5 * W / 1000, 200.5 * H / 1000, 300.5 * W / 1000, 400.5 * H / 1000], rtol=1e-5)


def test_prompt_plans_are_cached_per_class_list(detector, monkeypatch):
    detector._plans.clear()  # the detector is shared by this module's tests
    calls = []
    real = detector.prompt_tokens
    monkeypatch.setattr(detector, "prompt_tokens", lambda caption: calls.append(caption) or real(caption))
    classes = ["person", "cat", "dog", "bus"]
    first = detector.plan_prompts(classes, {"cat": ["kitty"]})
    n = len(calls)
    assert n > 0
    assert detector.plan_prompts(list(classes), {"cat": ["kitty"]}) is first and len(calls) == n
    other = detector.plan_prompts(classes, {"cat": ["feline"]})  # other synonyms: planned anew
    assert len(calls) > n and other[0].caption == "person. cat. feline. dog. bus."


def test_the_prompts_of_a_long_class_list_share_one_vision_pass(detector, image, monkeypatch):
    from pipeline.detect import florence_vision

    classes = [f"class{i}" for i in range(100)]
    plans = detector.plan_prompts(classes)
    assert len(plans) > 1
    script = "<s>class5<loc_100><loc_200><loc_300><loc_400>class90<loc_10><loc_20><loc_30><loc_40>"
    before = detector.features.computed
    shared = detector.detect(image, classes, generate_kwargs=_scripted(detector, script))
    assert detector.features.computed == before + 1  # one vision pass for every prompt
    monkeypatch.setattr(florence_vision.VisionFeatures, "sharing", lambda self: contextlib.nullcontext())
    alone = detector.detect(image, classes, generate_kwargs=_scripted(detector, script))
    assert detector.features.computed == before + 1 + len(plans)  # without sharing: one per prompt
    assert shared.labels == alone.labels == ["class5", "class90"]
    np.testing.assert_array_equal(shared.xyxy, alone.xyxy)
    np.testing.assert_array_equal(shared.confidence, alone.confidence)  # the same features, bit for bit
    assert detector.features._pixels is None  # nothing held after the call


def test_shared_features_are_reused_only_for_the_same_pixels():
    from types import SimpleNamespace

    import torch

    from pipeline.detect.florence_vision import VisionFeatures

    calls = []

    def vision(px):
        calls.append(px.clone())
        return [px.mean(dim=(2, 3))]

    feats = VisionFeatures(SimpleNamespace(vision=vision, model=None))
    a, b = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    feats(a)
    feats(a)
    assert len(calls) == 2  # outside sharing() nothing is kept
    with feats.sharing():
        first = feats(a).pooler_output
        again = feats(a.clone()).pooler_output  # equal pixels, another tensor: reused
        other = feats(b).pooler_output  # other pixels: computed
        back = feats(a).pooler_output  # only the last pixels are kept
    assert len(calls) == 5 and again is first and float(other.sum()) == 3.0 and torch.equal(back, first)
    assert feats._pixels is None and feats._features is None
    batch = torch.stack([a[0], b[0]])
    assert feats(batch).pooler_output.shape == (2, 3)  # a batch goes through image by image
    assert feats.computed == 6 and len(calls) == 7
