"""The pipeline bench's per-model figures: ``sam2`` (encoder, clicks, 5 boxes), ``florence``
(prefill and per-token time) and ``dinov2`` (5 masked crops)."""
from __future__ import annotations

import time

import numpy as np

from tests.bench.pipeline_inputs import IMAGE_SIDE, median, scene, sync


def measure_sam2(seg, clicks: int, repeats: int, device: str) -> dict[str, float]:
    images = [scene(100 + i)[0] for i in range(repeats + 1)]
    seg.clear_cache()
    seg.set_image(images[0])  # warm-up: first call pays one-time allocation costs
    enc = []
    for img in images[1:]:
        t = time.perf_counter()
        seg.set_image(img)
        sync(device)
        enc.append(time.perf_counter() - t)
    t = time.perf_counter()
    x = seg.preprocess(images[-1])
    sync(device)
    pre = time.perf_counter() - t
    del x
    image, boxes, _ = scene(100 + repeats)
    times, previous = _click_session(seg, boxes, clicks, device)
    default_threads = seg.click_threads
    seg.click_threads = None  # the same clicks with torch's thread count (before click_threads)
    try:
        all_threads, _ = _click_session(seg, boxes, clicks, device)
    finally:
        seg.click_threads = default_threads
    import torch

    low = torch.from_numpy(previous)[None, None]
    post = []
    for _ in range(5):
        t = time.perf_counter()
        seg._postprocess(low, (IMAGE_SIDE, IMAGE_SIDE))
        post.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    seg.predict_boxes(boxes)
    sync(device)
    box5 = time.perf_counter() - t
    return {
        "encoder_s": median(enc),
        "preprocess_s": pre,
        "click_p50_ms": float(np.percentile(times, 50)),
        "click_p95_ms": float(np.percentile(times, 95)),
        "click_max_ms": float(np.max(times)),
        "click_p50_ms_all_threads": float(np.percentile(all_threads, 50)),
        "click_p95_ms_all_threads": float(np.percentile(all_threads, 95)),
        "click_mask_resize_ms": median(post),
        "boxes5_decode_s": box5,
    }


def _click_session(seg, boxes: np.ndarray, clicks: int, device: str) -> tuple[list[float], np.ndarray]:
    """Milliseconds of ``clicks`` refinement clicks (+/- points, previous logits fed back; a new
    object every 6 clicks) on the current image, and the last low-res logits."""
    rng = np.random.default_rng(1)
    times: list[float] = []
    points: list[list[float]] = []
    labels: list[int] = []
    previous = None
    for i in range(clicks + 1):
        if len(points) >= 6:  # a new object: a fresh session
            points, labels, previous = [], [], None
        box = boxes[i % len(boxes)]
        inside = rng.uniform(box[:2], box[2:])
        outside = rng.uniform(0, IMAGE_SIDE, 2)
        positive = not points or rng.random() < 0.6
        points.append(list(inside if positive else outside))
        labels.append(1 if positive else 0)
        t = time.perf_counter()
        pred = seg.predict_points(np.array(points), np.array(labels), mask_input=previous,
                                  multimask=len(points) == 1)
        sync(device)
        if i:  # the first click warms up the decoder
            times.append((time.perf_counter() - t) * 1000)
        previous = pred.low_res_logits
    return times, previous


def measure_florence(det, tokens: int, repeats: int, device: str) -> dict[str, float]:
    import torch

    image = scene(200)[0]
    prompt = "<CAPTION_TO_PHRASE_GROUNDING>car. person. dog. bus."
    det.generate_pieces(image, prompt, max_new_tokens=2, generate_kwargs={"min_new_tokens": 2})  # warm-up
    prefill, full = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        det.generate_pieces(image, prompt, max_new_tokens=1, generate_kwargs={"min_new_tokens": 1})
        sync(device)
        prefill.append(time.perf_counter() - t)
        t = time.perf_counter()
        det.generate_pieces(image, prompt, max_new_tokens=tokens, generate_kwargs={"min_new_tokens": tokens})
        sync(device)
        full.append(time.perf_counter() - t)
    inputs = det.processor(text=prompt, images=image, return_tensors="pt")
    pixels = inputs["pixel_values"].to(device=det.device, dtype=det.dtype)
    vision = []
    with torch.inference_mode():
        for _ in range(repeats):
            t = time.perf_counter()
            det.model.model.get_image_features(pixels)
            sync(device)
            vision.append(time.perf_counter() - t)
    g, p = median(full), median(prefill)
    return {
        "tokens": tokens,
        "generate_s": g,
        "prefill_s": p,
        "vision_tower_s": median(vision),
        "per_token_ms": (g - p) / max(1, tokens - 1) * 1000,
    }


def measure_dinov2(emb, repeats: int, device: str) -> dict[str, float]:
    image, boxes, _ = scene(300)
    masks = np.zeros((len(boxes), IMAGE_SIDE, IMAGE_SIDE), bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        masks[i, y0:y1, x0:x1] = True
    emb.embed(image, boxes, masks)  # warm-up
    times, pre = [], []
    for _ in range(max(repeats, 3)):
        t = time.perf_counter()
        emb.embed(image, boxes, masks)
        sync(device)
        times.append(time.perf_counter() - t)
        t = time.perf_counter()
        emb.preprocess(image, boxes, masks)
        pre.append(time.perf_counter() - t)
    return {"batch5_s": median(times), "crop_preprocess_s": median(pre)}
