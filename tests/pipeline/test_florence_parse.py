"""Florence-2 output parsing on literal model outputs (no model, no torch)."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from pipeline.detect.florence_parse import (
    ParsedBox,
    boxes_to_detections,
    dequantize,
    grounding_prompt,
    parse_post_processed,
    parse_text,
    parse_tokens,
    split_pieces,
)
from pipeline.detect.phrase_match import LabelMatcher, normalize_phrase, singularize

SIZE = (1000, 500)  # (width, height)


def test_module_does_not_import_torch():
    code = ("import sys, pipeline.detect.florence_parse, pipeline.detect.florence_prompts; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_several_boxes_and_a_phrase_with_two_boxes():
    text = ("</s><s>person<loc_100><loc_200><loc_300><loc_800>car<loc_500><loc_500><loc_900><loc_900>"
            "<loc_10><loc_10><loc_50><loc_60></s><pad><pad>")
    boxes = parse_text(text)
    assert [b.label for b in boxes] == ["person", "car", "car"]
    assert boxes[1].bins == (500, 500, 900, 900)
    det = boxes_to_detections(boxes, ["car", "person"], SIZE)
    assert det.class_id.tolist() == [1, 0, 0]
    # bin centres: x = (k + .5) * 1000/1000, y = (k + .5) * 500/1000
    np.testing.assert_allclose(det.xyxy[0], [100.5, 100.25, 300.5, 400.25])
    assert det.xyxy.dtype == np.float32 and det.confidence.tolist() == [1.0, 1.0, 1.0]


def test_no_boxes():
    for text in ["", "</s><s></s>", "</s><s>a picture of a cat</s>", "<loc_1><loc_2><loc_3><loc_4>"]:
        det = boxes_to_detections(parse_text(text), ["cat"], SIZE)
        assert len(det) == 0 and det.xyxy.shape == (0, 4)


def test_class_not_asked_for_is_dropped():
    text = "<s>dog<loc_1><loc_1><loc_400><loc_400>person<loc_500><loc_500><loc_700><loc_700></s>"
    det = boxes_to_detections(parse_text(text), ["person", "car"], SIZE)
    assert det.class_id.tolist() == [0]
    assert det.raw_label.tolist() == ["person"]


def test_repeated_phrases_and_exact_repeat_boxes():
    text = ("<s>car<loc_1><loc_2><loc_100><loc_200>car<loc_300><loc_300><loc_400><loc_400>"
            "car car<loc_1><loc_2><loc_100><loc_200>traffic light traffic light<loc_5><loc_5><loc_9><loc_90></s>")
    det = boxes_to_detections(parse_text(text), ["car", "traffic light"], SIZE)
    # the third box repeats the first (same class, same bins): kept once
    assert sorted(det.class_id.tolist()) == [0, 0, 1]
    assert len(det) == 3


def test_odd_spacing_case_plurals_and_synonyms():
    text = ("<s>  Persons <loc_1><loc_1><loc_100><loc_100>  the Traffic\tLights<loc_2><loc_2><loc_50><loc_50>"
            "buses<loc_3><loc_3><loc_60><loc_60>automobile<loc_4><loc_4><loc_70><loc_70>"
            "People<loc_5><loc_5><loc_80><loc_80>red car<loc_6><loc_6><loc_90><loc_90></s>")
    det = boxes_to_detections(
        parse_text(text), ["person", "traffic light", "bus", "car"], SIZE,
        synonyms={"car": ["automobile"], "giraffe": ["camelopard"]},
    )
    names = [det.class_names[i] for i in det.class_id]
    assert names == ["person", "traffic light", "bus", "car", "person", "car"]


def test_unicode_labels_match_after_normalisation():
    text = "<s>Café<loc_1><loc_1><loc_100><loc_100>사람<loc_2><loc_2><loc_50><loc_50>ｃａｒ<loc_3><loc_3><loc_60><loc_60></s>"
    det = boxes_to_detections(parse_text(text), ["café", "사람", "car"], SIZE)
    assert det.class_id.tolist() == [0, 1, 2]


def test_clipping_and_degenerate_boxes():
    text = ("<s>car<loc_900><loc_900><loc_999><loc_1200>"  # out-of-grid bin: clamped to 999
            "car<loc_300><loc_300><loc_300><loc_400>"  # zero width: degenerate
            "car<loc_500><loc_400><loc_450><loc_300></s>")  # reversed corners: reordered
    det = boxes_to_detections(parse_text(text), ["car"], SIZE)
    assert len(det) == 2
    assert np.all(det.xyxy[:, 2] <= SIZE[0]) and np.all(det.xyxy[:, 3] <= SIZE[1])
    assert np.all(det.xyxy[:, 2:] >= det.xyxy[:, :2])
    np.testing.assert_allclose(det.xyxy[1], [450.5, 150.25, 500.5, 200.25])


def test_incomplete_location_groups_are_dropped():
    text = "<s>car<loc_1><loc_2><loc_3>dog<loc_1><loc_2><loc_3><loc_4><loc_5></s>"
    assert [(b.label, b.bins) for b in parse_text(text)] == [("dog", (1, 2, 3, 4))]


def test_banned_phrases():
    text = "<s>the image<loc_1><loc_1><loc_9><loc_9>cat<loc_1><loc_1><loc_9><loc_9></s>"
    assert [b.label for b in parse_text(text, banned=["the image"])] == ["cat"]


def test_confidence_from_token_probabilities():
    pieces = ["</s>", "<s>", "person", "<loc_1>", "<loc_2>", "<loc_300>", "<loc_400>",
              "<loc_5>", "<loc_6>", "<loc_7>", "<loc_8>", " traffic light", "<loc_9>", "<loc_9>",
              "<loc_90>", "<loc_90>", "</s>"]
    probs = [1, 1, 0.8, 0.9, 0.9, 0.9, 0.9, 1, 1, 1, 0.0625, 0.5, 1, 1, 1, 1, 1]
    boxes = parse_tokens(pieces, probs)
    assert [b.label for b in boxes] == ["person", "person", "traffic light"]
    assert boxes[0].confidence == pytest.approx(0.9 * 0.8)  # geo-mean(0.9 x4) * label 0.8
    assert boxes[1].loc_score == pytest.approx(0.5)  # (1*1*1*0.0625) ** 0.25
    assert boxes[1].confidence == pytest.approx(0.5 * 0.8)  # shares the phrase's label prob
    assert boxes[2].confidence == pytest.approx(0.5)
    det = boxes_to_detections(boxes, ["person", "traffic light"], SIZE, confidence=0.45)
    assert det.confidence.tolist() == pytest.approx([0.72, 0.5])
    assert det.loc_score.tolist() == pytest.approx([0.9, 1.0])
    assert det.label_score.tolist() == pytest.approx([0.8, 0.5])


def test_zero_probability_gives_zero_confidence_and_probs_must_align():
    assert ParsedBox("x", (1, 2, 3, 4), (0.0, 1.0, 1.0, 1.0)).confidence == 0.0
    assert math.isclose(ParsedBox("x", (1, 2, 3, 4), (1.0, 1.0, 1.0, 1.0), 0.25).confidence, 0.25)
    with pytest.raises(ValueError, match="one per piece"):
        parse_tokens(["a", "<loc_1>"], [1.0])


def test_split_pieces():
    assert split_pieces("</s><s>a < b<loc_3></od>x") == ["</s>", "<s>", "a ", "<", " b", "<loc_3>", "</od>", "x"]


def test_post_process_generation_dicts():
    grounding = {"<CAPTION_TO_PHRASE_GROUNDING>": {
        "bboxes": [[10, 20, 300, 400], [5, 5, 5, 90], [-20, 10, 2000, 30]],
        "labels": ["Cars", "car", "person"],
    }}
    det = parse_post_processed(grounding, ["person", "car"], SIZE)
    assert det.class_id.tolist() == [1, 0]  # degenerate second box dropped
    np.testing.assert_allclose(det.xyxy[1], [0, 10, 1000, 30])
    od = {"<OD>": {"bboxes": [[1, 2, 30, 40]], "labels": ["dog"]}}
    assert len(parse_post_processed(od, ["cat"], SIZE)) == 0
    ovd = {"<OPEN_VOCABULARY_DETECTION>": {"bboxes": [[1, 2, 30, 40]], "bboxes_labels": ["a cat"],
                                           "polygons": [], "polygons_labels": []}}
    det = parse_post_processed(ovd, ["cat"], SIZE)
    assert det.class_id.tolist() == [0] and det.confidence.tolist() == [1.0]
    inner = {"bboxes": [], "labels": []}
    assert len(parse_post_processed(inner, ["cat"], SIZE)) == 0
    with pytest.raises(ValueError, match="bboxes"):
        parse_post_processed({"<CAPTION>": "a cat"}, ["cat"], SIZE)
    with pytest.raises(ValueError, match="one label per box"):
        parse_post_processed({"bboxes": [[1, 2, 3, 4]], "labels": []}, ["cat"], SIZE)


def test_normalisation_helpers():
    assert normalize_phrase("  The Traffic\tLight. ") == "traffic light"
    assert normalize_phrase("a") == "a"
    assert [singularize(w) for w in ["buses", "boxes", "berries", "glass", "bus", "cats", "people"]] == [
        "bus", "box", "berry", "glass", "bus", "cat", "person"]
    matcher = LabelMatcher(["person", "car"], {"person": ["pedestrian"]})
    assert matcher.match("pedestrians") == 0
    assert matcher.match("person. car") == 0
    assert matcher.match("a small red car") == 1
    assert matcher.match("carpet") is None
    assert matcher.match("") is None


def test_grounding_prompt_and_sizes():
    assert grounding_prompt(["person", " car ", "traffic  light", "car"]) == "person. car. traffic light."
    with pytest.raises(ValueError, match="class name"):
        grounding_prompt([" ", ""])
    with pytest.raises(ValueError, match="image_size"):
        boxes_to_detections([], ["a"], (0, 10))
    np.testing.assert_allclose(dequantize(np.array([[0, 0, 999, 999]]), (768, 768)),
                               [[0.384, 0.384, 767.616, 767.616]], rtol=1e-5)


def test_prompt_plans_pack_units_in_order_and_never_split_a_class_from_its_synonyms():
    from pipeline.detect.florence_prompts import class_units, plan_prompts

    units = class_units(["car", "Person", " car. ", "dog"], {"car": ["automobile", "Car", "auto"], "person": ["pedestrian", "auto"], "cat": ["kitty"]})
    assert units == [(0, "car", ["automobile", "auto"]), (1, "Person", ["pedestrian"]), (3, "dog", [])]
    # a word-count budget: "car. automobile. auto." = 3 words, "Person. pedestrian." = 2, "dog." = 1
    plans = plan_prompts(["car", "Person", "car", "dog"], {"car": ["automobile", "auto"], "person": ["pedestrian"]},
                         lambda caption: len(caption.split()), 4)
    assert [p.caption for p in plans] == ["car. automobile. auto.", "Person. pedestrian. dog."]
    assert [p.class_ids.tolist() for p in plans] == [[0], [1, 3]]
    assert plans[1].class_names == ["Person", "dog"] and plans[1].synonyms == {"Person": ["pedestrian"]}
    with pytest.raises(ValueError, match="at most 2 encoder tokens, got 3"):
        plan_prompts(["car"], {"car": ["automobile", "auto"]}, lambda caption: len(caption.split()), 2)
    with pytest.raises(ValueError, match="class name"):
        plan_prompts([" . "], None, len, 100)


def test_dedupe_boxes_keeps_the_most_confident_of_identical_boxes():
    from pipeline.detect.florence_prompts import dedupe_boxes

    class_id = np.array([0, 1, 0, 0])
    xyxy = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 5]], dtype=np.float32)
    keep = dedupe_boxes(class_id, xyxy, np.array([0.2, 0.5, 0.9, 0.1]))
    assert keep.tolist() == [1, 2, 3]  # same box, other class: kept; same box, same class: the 0.9 one
    assert dedupe_boxes(np.zeros(0), np.zeros((0, 4)), np.zeros(0)).tolist() == []


def test_boxes_on_one_pixel_thin_images_are_not_degenerate():
    text = "<s>car<loc_0><loc_0><loc_999><loc_999>car<loc_0><loc_400><loc_999><loc_600></s>"
    det = boxes_to_detections(parse_text(text), ["car"], (80, 1))
    np.testing.assert_allclose(det.xyxy, [[0.04, 0.0005, 79.96, 0.9995]], rtol=1e-5)  # the 0.2 px one is not kept
    assert len(boxes_to_detections(parse_text(text), ["car"], (80, 3))) == 1
