"""The pipeline bench's whole-image figures: ``autolabel`` (one image at a time, as the app
labels) and ``batched`` (``--batch-images N``: ``AutoLabeler.label_many`` against ``label``)."""
from __future__ import annotations

import time
from typing import Any

from tests.bench.pipeline_inputs import median, scene, scripted_ids, scripted_kwargs, sync

TARGET_BATCHED_IMAGES_PER_S = 10.0  # issue 14: one H100-class GPU, --batch-images 8


def measure_autolabel(labeler, repeats: int, seed0: int) -> tuple[dict[str, Any], Any]:
    """Timings of scripted auto-label runs on new images, and the last run's ``Detections``."""
    det = labeler.detector
    runs = []
    result = None
    for r in range(repeats):
        image, boxes, labels = scene(seed0 + r)  # a new image: the SAM2 encoder runs each time
        ids = scripted_ids(det, boxes, labels)
        kwargs = scripted_kwargs(det, boxes, labels)
        original = det.detect

        def scripted_detect(image, classes, *, synonyms=None, confidence=0.0, _kw=kwargs, _orig=original):
            return _orig(image, classes, synonyms=synonyms, confidence=confidence, generate_kwargs=_kw)

        det.detect = scripted_detect  # instance attribute: only this labeler's calls are scripted
        try:
            result = labeler.label(image, ["car", "person", "dog", "bus"], confidence=0.0)
        finally:
            del det.detect
        runs.append((dict(labeler.last_timings), len(result), len(ids) + 1))
    stages = {k: median([r[0][k] for r in runs]) for k in runs[0][0]}
    timings = {"objects": runs[-1][1], "detector_tokens": runs[-1][2], **{f"{k}_s": v for k, v in stages.items()}}
    return timings, result


def measure_batched(labeler, n: int, device: str) -> dict[str, float]:
    """Whole auto-label images per second, ``n`` new scripted images (5 objects each) through
    ``AutoLabeler.label_many`` (Florence-2's generation and SAM2's encoder batched) against the
    same images through ``label`` one at a time; plus the SAM2 encoder and 30 Florence tokens
    alone on the batch."""
    from transformers import LogitsProcessorList

    from tests.pipeline.tiny_models import scripted_rows_processor

    det, seg = labeler.detector, labeler.segmenter
    classes = ["car", "person", "dog", "bus"]
    scenes = [scene(400 + i) for i in range(n)]
    images = [im for im, _, _ in scenes]
    rows = [scripted_ids(det, boxes, labels) for _, boxes, labels in scenes]
    eos = det.processor.tokenizer.eos_token_id
    original_many = det.detect_many

    def detect_many(imgs, cls, **kw):  # the first len(imgs) images' scripts, row by row
        kw["generate_kwargs"] = {"logits_processor": LogitsProcessorList([scripted_rows_processor(rows[:len(imgs)], eos)])}
        return original_many(imgs, cls, **kw)

    order = iter(range(n))

    def detect(image, cls, **kw):  # image by image, in order: that image's script
        i = next(order)
        kw["generate_kwargs"] = {"logits_processor": LogitsProcessorList([scripted_rows_processor([rows[i]], eos)])}
        return original_many([image], cls, **kw)[0]  # what detect does, past the patched detect_many

    det.detect_many, det.detect = detect_many, detect  # instance attributes: this labeler only
    try:
        seg.clear_cache()
        labeler.label_many(images, classes, confidence=0.0)  # warm-up at the timed shapes (kernels, allocations)
        seg.clear_cache()
        t = time.perf_counter()
        batch = labeler.label_many(images, classes, confidence=0.0)
        sync(device)
        batch_s = time.perf_counter() - t
        seg.clear_cache()
        t = time.perf_counter()
        one_by_one = [labeler.label(im, classes, confidence=0.0) for im in images]
        sync(device)
        seq_s = time.perf_counter() - t
    finally:
        del det.detect_many, det.detect
    out = {"batch": n, "objects": sum(len(d) for d in batch), "objects_one_by_one": sum(len(d) for d in one_by_one),
           "images_per_s": n / batch_s, "one_by_one_images_per_s": n / seq_s, "speedup": seq_s / batch_s,
           "target_images_per_s": TARGET_BATCHED_IMAGES_PER_S}
    # the two batched stages alone (SAM2's encoder as the segmenter runs it: one forward on
    # PyTorch, image by image on OpenVINO, whose encoder is compiled for one image)
    some = images[:seg.cache_size]
    seg._encode_batch(some[:1])
    sync(device)
    t = time.perf_counter()
    seg._encode_batch(some)
    sync(device)
    out["sam2_encoder_images_per_s"] = len(some) / (time.perf_counter() - t)
    prompt = "<CAPTION_TO_PHRASE_GROUNDING>car. person. dog. bus."
    t = time.perf_counter()
    det.generate_many(images, prompt, 30, {"min_new_tokens": 30})
    sync(device)
    out["florence_30tok_images_per_s"] = n / (time.perf_counter() - t)
    return out
