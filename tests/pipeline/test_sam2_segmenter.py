"""Sam2Segmenter on a tiny random SAM2 saved with save_pretrained and loaded back from disk."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.segment.base import PointPrediction, Segmenter
from pipeline.segment.sam2 import Sam2Segmenter
from pipeline.segment.sam2_images import image_key
from tests.pipeline.tiny_models_sam2_dino import TINY_SAM2_INPUT, TINY_SAM2_LOW_RES, build_tiny_sam2


@pytest.fixture(scope="module")
def sam2_dir(tmp_path_factory):
    return build_tiny_sam2(tmp_path_factory.mktemp("tiny-sam2"))


@pytest.fixture
def seg(sam2_dir) -> Sam2Segmenter:
    return Sam2Segmenter.from_pretrained(sam2_dir, device="cpu", dtype=torch.float32, cache_size=2)


def _image(seed: int, h: int = 90, w: int = 150) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


BOXES = np.array([[10, 10, 60, 50], [70, 20, 140, 80], [0, 0, 150, 90]], dtype=np.float32)


def test_loads_from_folder_and_implements_the_protocol(seg, sam2_dir):
    assert isinstance(seg, Segmenter)
    assert seg.input_size == TINY_SAM2_INPUT
    assert seg.name == sam2_dir.name
    assert not seg.is_image_set


def test_predict_before_set_image_raises(seg):
    with pytest.raises(RuntimeError, match=r"call set_image\(\.\.\.\) first"):
        seg.predict_boxes(BOXES)
    with pytest.raises(RuntimeError, match=r"call set_image\(\.\.\.\) first"):
        seg.predict_points(np.array([[5.0, 5.0]]), np.array([1]))
    seg.set_image(_image(0))
    seg.reset_image()
    with pytest.raises(RuntimeError, match="set_image"):
        seg.predict_boxes(BOXES)


def test_predict_boxes_masks_at_original_resolution(seg):
    seg.set_image(_image(0))
    masks, scores = seg.predict_boxes(BOXES)
    assert masks.shape == (3, 90, 150) and masks.dtype == bool
    assert masks.reshape(3, -1).any(axis=1).all()  # every box got a non-empty mask
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1))
    empty_masks, empty_scores = seg.predict_boxes(np.zeros((0, 4)))
    assert empty_masks.shape == (0, 90, 150) and empty_scores.shape == (0,)


def test_batched_boxes_equal_one_by_one(seg):
    seg.set_image(_image(1))
    masks, scores = seg.predict_boxes(BOXES)
    seg.box_batch = 1
    single = [seg.predict_boxes(b[None]) for b in BOXES]
    np.testing.assert_array_equal(masks, np.concatenate([m for m, _ in single]))
    np.testing.assert_allclose(scores, np.concatenate([s for _, s in single]), atol=1e-5)


def test_preprocess_matches_transformers_image_processor(seg, sam2_dir):
    from transformers import Sam2ImageProcessor

    image = _image(2, 77, 203)
    reference = Sam2ImageProcessor.from_pretrained(sam2_dir)(images=image, return_tensors="pt")["pixel_values"]
    ours = seg.preprocess(image)
    assert ours.shape == reference.shape == (1, 3, TINY_SAM2_INPUT, TINY_SAM2_INPUT)
    # the processor resizes uint8 pixels (rounding to whole levels); we resize floats: <= ~1 level apart
    assert float((ours - reference).abs().max()) < 0.03


def test_boxes_scaled_and_postprocessed_like_transformers_processor(seg, sam2_dir):
    """Same masks as Sam2Processor's box scaling + post_process_masks on the same pixels."""
    from transformers import Sam2ImageProcessor, Sam2Processor

    image = _image(3, 61, 117)
    processor = Sam2Processor(image_processor=Sam2ImageProcessor.from_pretrained(sam2_dir), target_size=TINY_SAM2_INPUT)
    boxes = [[[5.0, 7.0, 50.0, 40.0], [60.0, 10.0, 110.0, 58.0]]]
    inputs = processor(images=image, input_boxes=boxes, return_tensors="pt")
    with torch.no_grad():
        out = seg.model(pixel_values=seg.preprocess(image), input_boxes=inputs["input_boxes"], multimask_output=False)
    expected = processor.post_process_masks(out.pred_masks, inputs["original_sizes"])[0][:, 0].numpy()

    seg.set_image(image)
    masks, scores = seg.predict_boxes(np.array(boxes[0]))
    np.testing.assert_array_equal(masks, expected)
    np.testing.assert_allclose(scores, out.iou_scores[0, :, 0].clamp(0, 1).numpy(), atol=1e-5)


def test_lru_hit_skips_the_encoder(seg):
    a, b, c = _image(10), _image(11), _image(12)
    seg.set_image(a)
    assert seg.encoder_calls == 1
    seg.set_image(a.copy())  # same pixels, different array: a hit
    assert seg.encoder_calls == 1
    seg.set_image(b)
    assert seg.encoder_calls == 2
    seg.set_image(a)  # cache_size=2 still holds a
    assert seg.encoder_calls == 2
    seg.set_image(c)  # evicts b (least recently used)
    seg.set_image(b)
    assert seg.encoder_calls == 4
    seg.set_image(c)
    assert seg.encoder_calls == 4


def test_cache_images_encodes_a_batch_once_and_set_image_then_hits(seg):
    a, b = _image(30), _image(31, h=60, w=80)
    seg.set_image(_image(32))  # the current image stays current
    before = seg.encoder_calls
    keys = seg.cache_images([a, b], ["ka", None])
    assert keys == ["ka", image_key(b)] and seg.encoder_calls == before + 2
    assert seg.image_hw == (90, 150)
    assert seg.cache_images([b, a], [None, "ka"]) == [image_key(b), "ka"] and seg.encoder_calls == before + 2
    for im, key in ((a, "ka"), (b, None)):
        seg.set_image(im, key=key)
        batched = seg.predict_boxes(BOXES[:2])
        fresh = Sam2Segmenter(seg.model, device="cpu", dtype=torch.float32)  # no cache: encodes alone
        fresh.set_image(im)
        alone = fresh.predict_boxes(BOXES[:2])
        assert batched[0].any() and (batched[0] == alone[0]).mean() >= 0.999
        np.testing.assert_allclose(batched[1], alone[1], atol=1e-5)
    assert seg.encoder_calls == before + 2  # set_image hit the cache both times


def test_cache_images_rejects_more_than_the_cache_and_names_a_bad_image(seg):
    with pytest.raises(ValueError, match="at most cache_size=2 images, got 3"):
        seg.cache_images([_image(1), _image(2), _image(3)])
    with pytest.raises(ValueError, match=r"keys: expected one per image \(2\), got 1"):
        seg.cache_images([_image(1), _image(2)], ["k"])
    with pytest.raises(ValueError, match="^image 1: "):
        seg.cache_images([_image(1), np.zeros((5, 5), np.uint8)])
    assert not seg._cache  # nothing was encoded


def test_cached_embedding_gives_identical_masks(seg):
    a, b = _image(20), _image(21)
    seg.set_image(a)
    first, _ = seg.predict_boxes(BOXES)
    seg.set_image(b)
    other, _ = seg.predict_boxes(BOXES)
    seg.set_image(a, key=image_key(a))
    again, _ = seg.predict_boxes(BOXES)
    np.testing.assert_array_equal(first, again)
    assert seg.encoder_calls == 2
    assert not np.array_equal(first, other)


def test_predict_points_picks_best_of_multimask(seg):
    image = _image(4)
    seg.set_image(image)
    pred = seg.predict_points(np.array([[30.0, 30.0]]), np.array([1]), multimask=True)
    assert isinstance(pred, PointPrediction)
    assert pred.mask.shape == (90, 150) and pred.mask.dtype == bool
    assert pred.low_res_logits.shape == (TINY_SAM2_LOW_RES, TINY_SAM2_LOW_RES)
    assert pred.low_res_logits.dtype == np.float32
    # reference: the model's three candidates for the same (scaled) click
    scaled = torch.tensor([[[[30.0 * TINY_SAM2_INPUT / 150, 30.0 * TINY_SAM2_INPUT / 90]]]])
    with torch.no_grad():
        out = seg.model(pixel_values=seg.preprocess(image), input_points=scaled,
                        input_labels=torch.ones(1, 1, 1, dtype=torch.long), multimask_output=True)
    iou = out.iou_scores[0, 0]
    assert out.pred_masks.shape[2] == 3
    best = int(iou.argmax())
    assert pred.score == pytest.approx(float(iou[best].clamp(0, 1)), abs=1e-5)
    np.testing.assert_allclose(pred.low_res_logits, out.pred_masks[0, 0, best].numpy(), atol=1e-4)
    # postprocess is a bilinear resize of the chosen low-res logits straight to (H, W), > 0
    up = F.interpolate(torch.from_numpy(pred.low_res_logits)[None, None], size=(90, 150),
                       mode="bilinear", align_corners=False)[0, 0].numpy() > 0
    np.testing.assert_array_equal(pred.mask, up)


def test_refine_with_negative_click_box_and_previous_logits(seg):
    seg.set_image(_image(5))
    first = seg.predict_points(np.array([[30.0, 30.0]]), np.array([1]))
    refined = seg.predict_points(
        np.array([[30.0, 30.0], [100.0, 50.0]]), np.array([1, 0]),
        box=np.array([10, 10, 60, 50]), mask_input=first.low_res_logits, multimask=False,
    )
    assert refined.mask.shape == (90, 150) and 0.0 <= refined.score <= 1.0
    # the previous mask changes the decoder's input, so the output must depend on it
    without = seg.predict_points(np.array([[30.0, 30.0], [100.0, 50.0]]), np.array([1, 0]),
                                 box=np.array([10, 10, 60, 50]), multimask=False)
    assert not np.allclose(refined.low_res_logits, without.low_res_logits)
    # a bool mask of the image is accepted as the previous mask too; a box alone is a prompt
    from_bool = seg.predict_points(None, None, box=np.array([10, 10, 60, 50]), mask_input=first.mask)
    box_only = seg.predict_points(None, None, box=np.array([10, 10, 60, 50]))
    assert from_bool.mask.shape == (90, 150) and from_bool.mask.any()
    assert not np.allclose(from_bool.low_res_logits, box_only.low_res_logits)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(points=np.array([[1.0, 2.0]]), labels=np.array([2])), "labels"),
        (dict(points=np.array([[1.0, 2.0]]), labels=np.array([1, 0])), "label"),
        (dict(points=None, labels=None), "at least one point or a box"),
        (dict(points=np.array([[1.0, 2.0]]), labels=np.array([1]), box=np.array([1, 2, 3])), "box"),
        (dict(points=np.array([[1.0, 2.0]]), labels=np.array([1]), mask_input=np.zeros((3, 5, 5))), "mask_input"),
        (dict(points=np.array([[1.0, 2.0]]), labels=np.array([1]), mask_input=np.zeros((10, 10), bool)), "mask_input"),
    ],
)
def test_bad_prompts_raise_value_error(seg, kwargs, match):
    seg.set_image(_image(6))
    points, labels = kwargs.pop("points"), kwargs.pop("labels")
    with pytest.raises(ValueError, match=match):
        seg.predict_points(points, labels, **kwargs)


def test_bad_images_and_boxes_raise_value_error(seg):
    with pytest.raises(ValueError, match="uint8"):
        seg.set_image(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        seg.set_image(np.zeros((10, 10, 3), np.float32))
    seg.set_image(_image(7))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        seg.predict_boxes(np.array([[1, 2, 3]]))
    with pytest.raises(ValueError, match="finite"):
        seg.predict_boxes(np.array([[1, 2, np.nan, 4]]))


def test_concurrent_users_never_mix_images(seg):
    """Two threads, each holding its image with ``using``, always get their own image's masks."""
    images = [_image(30), _image(31)]
    expected = []
    for img in images:
        seg.set_image(img)
        expected.append(seg.predict_boxes(BOXES)[0])
    errors: list[str] = []

    def worker(i: int) -> None:
        for _ in range(6):
            with seg.using(images[i]):
                if seg.image_key != image_key(images[i]):
                    errors.append(f"thread {i} saw another image")
                masks, _ = seg.predict_boxes(BOXES)
                if not np.array_equal(masks, expected[i]):
                    errors.append(f"thread {i} got masks of another image")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert seg.encoder_calls == 2  # both embeddings stayed in the LRU


def test_bfloat16_runs_and_returns_float32_scores(sam2_dir, seg):
    half = Sam2Segmenter.from_pretrained(sam2_dir, device="cpu", dtype=torch.bfloat16)
    assert next(half.model.parameters()).dtype == torch.bfloat16
    half.set_image(_image(8))
    masks, scores = half.predict_boxes(BOXES[:2])
    assert masks.dtype == bool and masks.shape == (2, 90, 150)
    assert scores.dtype == np.float32
    seg.set_image(_image(8))
    full, _ = seg.predict_boxes(BOXES[:2])
    iou = (masks & full).sum(axis=(1, 2)) / (masks | full).sum(axis=(1, 2))
    assert np.all(iou > 0.95), iou  # same masks up to bfloat16 rounding at the edges (~0.99 here)
    pred = half.predict_points(np.array([[30.0, 30.0]]), np.array([1]))
    assert pred.low_res_logits.dtype == np.float32


@pytest.fixture
def loud_seg(seg) -> Sam2Segmenter:
    """The same tiny SAM2 with its mask head scaled up, so its logits go far beyond +/-32
    (the random model's logits are ~1e-5; released models' reach the tens)."""
    import copy

    model = copy.deepcopy(seg.model)
    with torch.no_grad():
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(1e8)
            mlp.proj_out.bias.mul_(1e8)
    return Sam2Segmenter(model, device="cpu", dtype=torch.float32)


def test_logits_handed_back_are_clamped_like_sam2s_predictor(loud_seg):
    image = _image(40)
    loud_seg.set_image(image)
    pred = loud_seg.predict_points(np.array([[30.0, 30.0]]), np.array([1]), multimask=False)
    raw, _ = loud_seg._decode(loud_seg._features, points=loud_seg._scale_xy(np.array([[30.0, 30.0]]), (90, 150)).reshape(1, 1, 1, 2),
                              labels=torch.ones(1, 1, 1, dtype=torch.long), multimask=False)
    raw = raw[0, 0].numpy()
    assert np.abs(raw).max() > 100  # the precondition: logits far outside the range
    np.testing.assert_allclose(pred.low_res_logits, np.clip(raw, -32, 32), rtol=1e-6)
    assert pred.low_res_logits.min() == -32.0 and pred.low_res_logits.max() == 32.0
    # the mask itself comes from the unclamped logits (clamping never flips a sign anyway)
    up = F.interpolate(torch.from_numpy(raw)[None, None], size=(90, 150), mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_array_equal(pred.mask, up.numpy() > 0)


def test_mask_input_logits_are_clamped_before_the_prompt_encoder(seg):
    seg.set_image(_image(41))
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 5, (TINY_SAM2_LOW_RES, TINY_SAM2_LOW_RES)).astype(np.float32)
    logits[:8] = 1000.0  # what an unclamped, very confident previous mask looks like
    points, labels = np.array([[30.0, 30.0]]), np.array([1])
    huge = seg.predict_points(points, labels, mask_input=logits, multimask=False)
    clamped = seg.predict_points(points, labels, mask_input=np.clip(logits, -32, 32), multimask=False)
    np.testing.assert_array_equal(huge.low_res_logits, clamped.low_res_logits)
    # the prompt encoder does see the difference when values are inside the range
    halved = seg.predict_points(points, labels, mask_input=np.clip(logits, -16, 16), multimask=False)
    assert not np.allclose(halved.low_res_logits, clamped.low_res_logits)
