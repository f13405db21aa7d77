"""FlorenceDetector.detect_many / generate_many: a batch of images in one ``generate`` gives what
``detect`` gives image by image (tiny random Florence-2, real transformers code paths, CPU)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from transformers import LogitsProcessorList  # noqa: E402

from pipeline.detect.florence import FlorenceDetector  # noqa: E402
from pipeline.detect.florence_parse import TASK_GROUNDING  # noqa: E402
from tests.pipeline.tiny_models import (  # noqa: E402
    build_tiny_florence,
    florence_output_ids,
    scripted_rows_processor,
)

CLASSES = ["person", "car", "dog"]
# Three outputs of different lengths: in the batch the short ones end first and are padded.
SCRIPTS = [
    "<s>car<loc_100><loc_200><loc_300><loc_400>person<loc_1><loc_2><loc_999><loc_998>",
    "<s>dog<loc_5><loc_5><loc_50><loc_50>",
    "<s>person<loc_10><loc_20><loc_30><loc_40><loc_500><loc_500><loc_600><loc_700>car<loc_0><loc_0><loc_90><loc_90>",
]
SIZES = [(50, 80), (120, 64), (90, 110)]  # (H, W): boxes scale with each image's own size


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    folder = build_tiny_florence(tmp_path_factory.mktemp("florence-batch") / "tiny-florence")
    return FlorenceDetector.from_pretrained(folder, device="cpu")


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]


def _kwargs(detector, texts: list[str]) -> dict:
    tok = detector.processor.tokenizer
    rows = [florence_output_ids(tok, t) for t in texts]
    return {"logits_processor": LogitsProcessorList([scripted_rows_processor(rows, tok.eos_token_id)])}


def test_detect_many_equals_detect_image_by_image(detector):
    images = _images()
    batch = detector.detect_many(images, CLASSES, generate_kwargs=_kwargs(detector, SCRIPTS))
    assert len(batch) == 3
    assert [d.labels for d in batch] == [["car", "person"], ["dog"], ["person", "person", "car"]]
    for image, text, got in zip(images, SCRIPTS, batch, strict=True):
        want = detector.detect(image, CLASSES, generate_kwargs=_kwargs(detector, [text]))
        assert got.labels == want.labels and got.class_names == CLASSES
        np.testing.assert_allclose(got.xyxy, want.xyxy, rtol=1e-6)
        np.testing.assert_allclose(got.confidence, want.confidence, rtol=1e-4)
        assert got.data["raw_label"].tolist() == want.data["raw_label"].tolist()
        assert got.data["truncated"].tolist() == want.data["truncated"].tolist() == [False] * len(want)
    # the second image's box in its own pixels (H 120, W 64): bins 5, 5, 50, 50
    np.testing.assert_allclose(batch[1].xyxy[0], [5.5 * 64 / 1000, 5.5 * 120 / 1000, 50.5 * 64 / 1000, 50.5 * 120 / 1000],
                               rtol=1e-5)


def test_generate_many_cuts_each_row_at_its_own_end(detector):
    images = _images()
    prompt = TASK_GROUNDING + "person. car. dog."
    gens = detector.generate_many(images, prompt, generate_kwargs=_kwargs(detector, SCRIPTS))
    tok = detector.processor.tokenizer
    for gen, text in zip(gens, SCRIPTS, strict=True):
        assert gen.token_ids == [*florence_output_ids(tok, text), tok.eos_token_id]  # no padding kept
        assert gen.pieces[-1] == "</s>" and not gen.truncated
        assert len(gen.probs) == len(gen.pieces) and all(0 < p <= 1 for p in gen.probs)


def test_a_row_that_runs_out_of_budget_is_the_only_one_truncated(detector, caplog):
    images = _images()
    tok = detector.processor.tokenizer
    lengths = [len(florence_output_ids(tok, t)) + 1 for t in SCRIPTS]  # + EOS
    budget = lengths[1] + 1  # the second output fits, the others do not
    assert lengths[0] > budget and lengths[2] > budget
    gens = detector.generate_many(images, TASK_GROUNDING + "person. car. dog.", budget, _kwargs(detector, SCRIPTS))
    assert [g.truncated for g in gens] == [True, False, True]
    assert [len(g.token_ids) for g in gens] == [budget, lengths[1], budget]
    caplog.clear()
    batch = detector.detect_many(images, CLASSES, max_new_tokens=budget, generate_kwargs=_kwargs(detector, SCRIPTS))
    warned = [r.getMessage() for r in caplog.records if "whole budget" in r.getMessage()]
    assert len(warned) == 2 and "image 0 of the batch" in warned[0] and "image 2 of the batch" in warned[1]
    assert batch[1].labels == ["dog"] and batch[1].data["truncated"].tolist() == [False]
    for image, text, got in zip(images, SCRIPTS, batch, strict=True):
        want = detector.detect(image, CLASSES, max_new_tokens=budget, generate_kwargs=_kwargs(detector, [text]))
        assert got.labels == want.labels
        assert got.data["truncated"].tolist() == want.data["truncated"].tolist()
    assert batch[0].data["truncated"].all() and len(batch[0]) >= 1  # its complete first box is kept


def test_beam_search_in_a_batch_equals_one_image_at_a_time(detector):
    images = _images()[:2]
    texts = SCRIPTS[:2]
    batch = detector.detect_many(images, CLASSES, num_beams=2, generate_kwargs=_kwargs_beams(detector, texts, 2))
    for image, text, got in zip(images, texts, batch, strict=True):
        want = detector.detect(image, CLASSES, num_beams=2, generate_kwargs=_kwargs_beams(detector, [text], 2))
        assert got.labels == want.labels
        np.testing.assert_allclose(got.xyxy, want.xyxy, rtol=1e-6)
        np.testing.assert_allclose(got.confidence, want.confidence, rtol=1e-4)


def _kwargs_beams(detector, texts: list[str], beams: int) -> dict:
    """Beam search runs batch x beams rows: each image's script on each of its beams."""
    tok = detector.processor.tokenizer
    rows = [florence_output_ids(tok, t) for t in texts for _ in range(beams)]
    return {"logits_processor": LogitsProcessorList([scripted_rows_processor(rows, tok.eos_token_id)])}


def test_a_bad_image_in_a_batch_is_named_by_its_index(detector):
    images = _images()
    images[1] = images[1][..., :2]  # two channels
    with pytest.raises(ValueError, match=r"image 1: image: expected an \(H, W, 3\) uint8 RGB array"):
        detector.detect_many(images, CLASSES)
    with pytest.raises(ValueError, match="at least one image"):
        detector.detect_many([], CLASSES)
