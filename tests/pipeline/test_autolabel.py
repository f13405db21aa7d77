"""AutoLabeler end to end: tiny random SAM2 + DINOv2 (+ tiny Florence-2 when its builder exists),
a box-returning test double for the detector where fixed boxes are needed, and GrabCut on
synthetic shapes where the masks must be right."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from pipeline.autolabel import TIMING_KEYS, AutoLabeler, combine_confidence
from pipeline.embed.dinov2 import Dinov2Embedder
from pipeline.segment.grabcut import GrabCutSegmenter
from pipeline.segment.sam2 import Sam2Segmenter
from pipeline.types import Detections
from tests.pipeline.tiny_models_sam2_dino import TINY_DINO_DIM, build_tiny_dinov2, build_tiny_sam2


class FixedBoxDetector:
    """Test double: returns fixed boxes/scores, honouring the confidence threshold it is given."""

    def __init__(self, boxes, scores, class_ids):
        self.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        self.scores = np.asarray(scores, np.float32)
        self.class_ids = np.asarray(class_ids, np.int64)
        self.calls: list[dict] = []

    def detect(self, image, classes, *, synonyms=None, confidence=0.0):
        self.calls.append({"classes": list(classes), "synonyms": synonyms, "confidence": confidence})
        keep = self.scores >= confidence
        return Detections(self.boxes[keep], self.scores[keep], self.class_ids[keep], list(classes),
                          data={"tag": np.arange(len(self.boxes))[keep]})


class HalfScoreSegmenter:
    """Test double: another segmenter's masks with half its scores."""

    def __init__(self, inner):
        self.inner = inner

    def set_image(self, image):
        self.inner.set_image(image)

    def predict_boxes(self, xyxy):
        masks, scores = self.inner.predict_boxes(xyxy)
        return masks, scores * 0.5


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-autolabel")
    sam = Sam2Segmenter.from_pretrained(build_tiny_sam2(root / "sam2"), device="cpu", dtype=torch.float32)
    emb = Dinov2Embedder.from_pretrained(build_tiny_dinov2(root / "dino"), device="cpu", dtype=torch.float32)
    return sam, emb


def _shapes_image():
    """A 160 x 240 image: a red rectangle and a blue disc on a grey, lightly noisy background."""
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 6, (160, 240, 3)), 0, 255).astype(np.uint8)
    gt = np.zeros((2, 160, 240), bool)
    gt[0, 30:90, 20:100] = True
    cv2.circle(gt[1].view(np.uint8), (170, 100), 40, 1, -1)
    image[gt[0]] = (220, 30, 30)
    image[gt[1]] = (30, 40, 210)
    boxes = np.array([[20, 30, 100, 90], [130, 60, 211, 141]], np.float32)
    return image, boxes, gt


def test_combine_confidence_is_the_geometric_mean():
    np.testing.assert_allclose(combine_confidence([0.81, 1.0, 0.5, 0.0], [1.0, 0.25, 0.5, 0.9]), [0.9, 0.5, 0.5, 0.0])
    assert combine_confidence([1.3], [-0.2]).tolist() == [0.0]  # clipped to [0, 1]


def test_end_to_end_with_tiny_sam2_and_dinov2(tiny_models):
    sam, emb = tiny_models
    image, boxes, _ = _shapes_image()
    detector = FixedBoxDetector(boxes, [0.9, 0.6], [0, 1])
    labeler = AutoLabeler(detector, sam, emb)
    result = labeler.label(image, ["box", "disc"], confidence=0.0, synonyms={"disc": ["circle"]})
    assert detector.calls[-1] == {"classes": ["box", "disc"], "synonyms": {"disc": ["circle"]}, "confidence": 0.0}
    n = len(result)
    assert 1 <= n <= 2  # random SAM2 weights: a mask may come out empty and be dropped
    assert result.class_names == ["box", "disc"]
    assert result.mask.shape == (n, 160, 240) and result.mask.dtype == bool
    assert result.data["embedding"].shape == (n, TINY_DINO_DIM) and result.data["embedding"].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.data["embedding"], axis=1), 1.0, atol=1e-5)
    tags = result.data["tag"]  # detector data travels with its objects
    np.testing.assert_allclose(result.data["det_score"], np.array([0.9, 0.6], np.float32)[tags])
    np.testing.assert_allclose(result.xyxy, boxes[tags])
    np.testing.assert_allclose(result.confidence, np.sqrt(result.data["det_score"] * result.data["mask_iou"]), rtol=1e-5)
    # the masks are SAM2's masks for those boxes
    sam.set_image(image)
    masks, scores = sam.predict_boxes(boxes)
    np.testing.assert_array_equal(result.mask, masks[tags])
    np.testing.assert_allclose(result.data["mask_iou"], scores[tags])
    assert set(labeler.last_timings) == set(TIMING_KEYS)
    assert labeler.last_timings["total"] >= labeler.last_timings["detect"] >= 0
    assert labeler.last_counts == {"detected": 2, "kept": n}


def test_second_label_of_the_same_image_reuses_the_embedding(tiny_models):
    sam, _ = tiny_models
    image = np.random.default_rng(5).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    labeler = AutoLabeler(FixedBoxDetector([[5, 5, 40, 40]], [0.9], [0]), sam)
    before = sam.encoder_calls
    labeler.label(image, ["thing"], confidence=0.0)
    labeler.label(image.copy(), ["thing"], confidence=0.0)
    assert sam.encoder_calls == before + 1
    assert "embedding" not in labeler.label(image, ["thing"], confidence=0.0).data  # no embedder set


def test_threshold_prefilters_the_detector_exactly_and_filters_the_result():
    image, boxes, _ = _shapes_image()
    detector = FixedBoxDetector(boxes, [0.95, 0.2], [0, 1])
    labeler = AutoLabeler(detector, GrabCutSegmenter())
    result = labeler.label(image, ["box", "disc"], confidence=0.5)
    assert detector.calls[-1]["confidence"] == pytest.approx(0.25)  # 0.5 ** 2
    # 0.2 < 0.25: never segmented; the red rectangle on grey separates perfectly (GrabCut score 1)
    assert labeler.last_counts["detected"] == 1
    assert result.labels == ["box"] and result.confidence[0] >= 0.5
    # with a doubtful mask (score 0.5): combined sqrt(0.95 * 0.5) = 0.69 < 0.8 <= sqrt(0.95)
    halved = AutoLabeler(detector, HalfScoreSegmenter(GrabCutSegmenter()))
    assert len(halved.label(image, ["box", "disc"], confidence=0.8)) == 0
    assert halved.last_counts == {"detected": 1, "kept": 0}  # segmented, then dropped


def test_grabcut_masks_are_right_and_confidence_uses_its_score():
    image, boxes, gt = _shapes_image()
    labeler = AutoLabeler(FixedBoxDetector(boxes, [0.9, 0.8], [0, 1]), GrabCutSegmenter())
    result = labeler.label(image, ["box", "disc"], confidence=0.0)
    assert result.labels == ["box", "disc"]
    for mask, truth in zip(result.mask, gt, strict=True):
        iou = (mask & truth).sum() / (mask | truth).sum()
        assert iou > 0.9
    np.testing.assert_allclose(result.confidence, np.sqrt(np.array([0.9, 0.8]) * result.data["mask_iou"]), rtol=1e-5)


def test_duplicates_dropped_per_class_keeping_the_more_confident():
    image, boxes, _ = _shapes_image()
    dup = boxes[0] + np.array([1, 0, 1, 0], np.float32)  # the same rectangle, a pixel over
    same_class = FixedBoxDetector([boxes[0], dup, boxes[1]], [0.7, 0.9, 0.8], [0, 0, 1])
    result = AutoLabeler(same_class, GrabCutSegmenter(), dedupe_iou=0.8).label(image, ["box", "disc"], confidence=0.0)
    assert sorted(result.data["tag"].tolist()) == [1, 2]  # the 0.9 copy survives, the 0.7 goes
    other_class = FixedBoxDetector([boxes[0], dup], [0.7, 0.9], [0, 1])
    result = AutoLabeler(other_class, GrabCutSegmenter()).label(image, ["box", "crate"], confidence=0.0)
    assert len(result) == 2  # the same pixels under two class names are two hypotheses, kept


def test_nothing_detected_gives_an_empty_result_with_the_usual_keys(tiny_models):
    sam, emb = tiny_models
    image, _, _ = _shapes_image()
    result = AutoLabeler(FixedBoxDetector(np.zeros((0, 4)), [], []), sam, emb).label(image, ["x"])
    assert len(result) == 0 and result.mask.shape == (0, 160, 240)
    assert result.data["embedding"].shape == (0, TINY_DINO_DIM)
    assert result.data["det_score"].shape == (0,) and result.data["mask_iou"].shape == (0,)


def test_accepts_a_file_path_and_validates_arguments(tmp_path):
    image, boxes, _ = _shapes_image()
    path = tmp_path / "shapes.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    labeler = AutoLabeler(FixedBoxDetector(boxes, [0.9, 0.8], [0, 1]), GrabCutSegmenter())
    from_file = labeler.label(path, ["box", "disc"], confidence=0.0)
    from_array = labeler.label(image, ["box", "disc"], confidence=0.0)
    assert from_file.labels == ["box", "disc"] and from_file.mask.shape == (2, 160, 240)
    np.testing.assert_array_equal(from_file.mask, from_array.mask)  # PNG is lossless: the same pixels
    assert np.all(from_file.mask.reshape(2, -1).sum(axis=1) > 0)
    with pytest.raises(ValueError, match="class"):
        labeler.label(image, [" ", ""])
    with pytest.raises(ValueError, match="confidence"):
        labeler.label(image, ["box"], confidence=1.5)
    with pytest.raises(ValueError, match="dedupe_iou"):
        AutoLabeler(labeler.detector, labeler.segmenter, dedupe_iou=0.0)


# The end-to-end chain on the real (tiny) Florence-2, SAM2 and DINOv2: tests/pipeline/test_chain.py
