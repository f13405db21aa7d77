"""OpenVINO against PyTorch in ``bench pipeline`` (``main.runtime_speedup`` in its JSON).

The app runs the three vision encoders on OpenVINO on a CPU when it is installed
(``pipeline.models.openvino_runtime``); the PyTorch modules stay loaded beside them, so the
same suite times both on the same inputs in the same precision, interleaved:

- ``sam2_encoder``: ``Sam2Model.get_image_embeddings`` of one 1024^2 image;
- ``florence_vision``: Florence-2's DaViT vision tower + projector at 768^2;
- ``dinov2_5_crops``: DINOv2 on the scene's 5 masked 224^2 crops, one batch.

Each row: ``openvino_s``, ``pytorch_s`` (medians) and ``speedup`` = pytorch / openvino.
:func:`pytorch_encoders` switches every encoder back to PyTorch for a block (the FLOP count:
``FlopCounterMode`` sees only PyTorch's operators).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


def runtimes(labeler: Any) -> dict[str, str]:
    """``{"detector" | "segmenter" | "embedder": "openvino" | "torch"}`` of a labeler's models."""
    parts = {"detector": labeler.detector, "segmenter": labeler.segmenter, "embedder": labeler.embedder}
    return {k: "openvino" if getattr(p, "vision", None) is not None else "torch" for k, p in parts.items() if p is not None}


@contextmanager
def pytorch_encoders(labeler: Any) -> Iterator[None]:
    """Every vision encoder of ``labeler`` on its PyTorch module inside the block."""
    parts = [p for p in (labeler.detector, labeler.segmenter, labeler.embedder) if p is not None]
    saved = [getattr(p, "vision", None) for p in parts]
    for p in parts:
        if hasattr(p, "vision"):
            p.vision = None
    try:
        yield
    finally:
        for p, v in zip(parts, saved, strict=True):
            if hasattr(p, "vision"):
                p.vision = v
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


def encoder_speedup(labeler: Any, scene: Callable[..., tuple[np.ndarray, np.ndarray, list[str]]],
                    repeats: int) -> dict[str, dict[str, float]]:
    """Each OpenVINO encoder against its PyTorch module (see the module docstring); ``{}`` when
    every encoder runs on PyTorch."""
    import torch

    det, seg, emb = labeler.detector, labeler.segmenter, labeler.embedder
    image, boxes, _ = scene(600)
    reps = max(2, repeats)
    out: dict[str, dict[str, float]] = {}
    if getattr(seg, "vision", None) is not None:
        x = seg._pixels(image)
        xt = x.to(seg.dtype)
        out["sam2_encoder"] = _pair(lambda: seg.vision(x), lambda: seg.model.get_image_embeddings(xt), reps)
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
