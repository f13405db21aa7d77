"""OpenVINO against PyTorch in ``bench pipeline`` (``main.runtime_speedup`` in its JSON).

The app runs the three vision encoders and SAM2's mask decoder on OpenVINO on a CPU when it is
installed (``pipeline.models.openvino_runtime``) and frees the encoders' PyTorch weights; they
are read back from the model folders for these timings (:func:`pytorch_weights`), so the same
suite times both on the same inputs in the same precision, interleaved:

- ``sam2_encoder``: ``Sam2Model.get_image_embeddings`` of one 1024^2 image;
- ``sam2_click_decoder``: one 3-click refinement with the previous mask on cached features
  (prompt encoder + mask decoder, ``pipeline.segment.sam2_decoder.decode``);
- ``florence_vision``: Florence-2's DaViT vision tower + projector at 768^2;
- ``dinov2_5_crops``: DINOv2 on the scene's 5 masked 224^2 crops, one batch.

Each row: ``openvino_s``, ``pytorch_s`` (medians) and ``speedup`` = pytorch / openvino.
:func:`pytorch_encoders` switches every compiled model back to PyTorch for a block (the FLOP
count: ``FlopCounterMode`` sees only PyTorch's operators).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

COMPILED = ("vision", "prompt_decoder")  # the attributes holding OpenVINO models


def runtimes(labeler: Any) -> dict[str, str]:
    """``{"detector" | "segmenter" | "segmenter_decoder" | "embedder": "openvino" | "torch"}``."""
    parts = {"detector": labeler.detector, "segmenter": labeler.segmenter, "embedder": labeler.embedder}
    out = {k: "openvino" if getattr(p, "vision", None) is not None else "torch" for k, p in parts.items() if p is not None}
    if labeler.segmenter is not None and hasattr(labeler.segmenter, "prompt_decoder"):
        out["segmenter_decoder"] = "openvino" if labeler.segmenter.prompt_decoder is not None else "torch"
    return out


@contextmanager
def pytorch_weights(labeler: Any) -> Iterator[None]:
    """The PyTorch weights the app frees when OpenVINO runs an encoder
    (``pipeline.models.released_weights``) read back for the block, freed again after it."""
    from pipeline.models import released_weights

    owners = [p for p in (labeler.detector, labeler.segmenter, labeler.embedder) if p is not None]
    held = [(p, released_weights.released(p)) for p in owners]
    for p, _ in held:
        released_weights.restore(p)
    try:
        yield
    finally:
        for p, paths in held:
            for path, folder in paths.items():
                released_weights.release(p, path, folder)


@contextmanager
def pytorch_encoders(labeler: Any) -> Iterator[None]:
    """Every OpenVINO model of ``labeler`` (encoders, SAM2's decoder) on PyTorch inside the block."""
    parts = [(p, a) for p in (labeler.detector, labeler.segmenter, labeler.embedder) if p is not None
             for a in COMPILED if hasattr(p, a)]
    saved = [getattr(p, a) for p, a in parts]
    for p, a in parts:
        setattr(p, a, None)
    try:
        with pytorch_weights(labeler):
            yield
    finally:
        for (p, a), v in zip(parts, saved, strict=True):
            setattr(p, a, v)
        if hasattr(labeler.segmenter, "clear_cache"):
            labeler.segmenter.clear_cache()  # features made by the other runtime


def _pair(ov: Callable[[], Any], pt: Callable[[], Any], repeats: int) -> dict[str, float]:
    import torch

    with torch.inference_mode():
        ov()
        pt()  # warm-up: one-time allocations
        a, b = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            ov()
            a.append(time.perf_counter() - t)
            t = time.perf_counter()
            pt()
            b.append(time.perf_counter() - t)
    o, p = float(np.median(a)), float(np.median(b))
    return {"openvino_s": o, "pytorch_s": p, "speedup": p / o if o > 0 else 0.0}


def _click_pair(seg: Any, image: np.ndarray, boxes: np.ndarray, repeats: int) -> dict[str, float]:
    """A 3-click refinement with the previous mask, decoded by OpenVINO and by PyTorch."""
    import torch

    seg.set_image(image)
    feats, hw = seg._require_image()
    b = boxes[0]
    xy = np.array([(b[:2] + b[2:]) / 2, b[:2] + 4, [2.0, 2.0]], np.float32)
    kw = {"points": seg._scale_xy(xy, hw).reshape(1, 1, -1, 2), "labels": torch.tensor([[[1, 1, 0]]]),
          "mask_input": torch.zeros(1, 1, *seg.mask_input_size), "multimask": False}
    compiled = seg.prompt_decoder

    def pt() -> Any:
        seg.prompt_decoder = None
        try:
            return seg._decode(feats, **kw)
        finally:
            seg.prompt_decoder = compiled

    return _pair(lambda: seg._decode(feats, **kw), pt, repeats)


def encoder_speedup(labeler: Any, scene: Callable[..., tuple[np.ndarray, np.ndarray, list[str]]],
                    repeats: int) -> dict[str, dict[str, float]]:
    """Each OpenVINO encoder against its PyTorch module (see the module docstring); ``{}`` when
    every encoder runs on PyTorch."""
    with pytorch_weights(labeler):
        return _speedups(labeler, scene, repeats)


def _speedups(labeler: Any, scene: Callable[..., tuple[np.ndarray, np.ndarray, list[str]]],
              repeats: int) -> dict[str, dict[str, float]]:
    import torch

    det, seg, emb = labeler.detector, labeler.segmenter, labeler.embedder
    image, boxes, _ = scene(600)
    reps = max(2, repeats)
    out: dict[str, dict[str, float]] = {}
    if getattr(seg, "vision", None) is not None:
        x = seg._pixels(image)
        xt = x.to(seg.dtype)
        out["sam2_encoder"] = _pair(lambda: seg.vision(x), lambda: seg.model.get_image_embeddings(xt), reps)
    if getattr(seg, "prompt_decoder", None) is not None:
        out["sam2_click_decoder"] = _click_pair(seg, image, boxes, reps * 5)
    if getattr(det, "vision", None) is not None:
        px = det.processor(text="<OD>", images=image, return_tensors="pt")["pixel_values"].float()
        pt = px.to(det.dtype)
        inner = det.model.model
        out["florence_vision"] = _pair(lambda: det.vision(px),
                                       lambda: type(inner).get_image_features(inner, pt), reps)
    if emb is not None and getattr(emb, "vision", None) is not None:
        masks = np.zeros((len(boxes), *image.shape[:2]), bool)
        for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
            masks[i, y0:y1, x0:x1] = True
        crops = (emb.preprocess(image, boxes, masks).astype(np.float32) - emb._mean) / emb._std
        c = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()
        ct = c.to(emb.dtype)
        out["dinov2_5_crops"] = _pair(lambda: emb.vision(c), lambda: emb.model(pixel_values=ct), reps)
    return out
