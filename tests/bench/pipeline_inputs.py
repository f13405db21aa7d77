"""The pipeline bench's inputs and two timing helpers, shared by its measurement modules.

``scene``: a textured 1024 x 1024 image with 5 drawn objects and their boxes; ``scripted_ids`` /
``scripted_kwargs``: Florence-2's grounding output naming them, forced with a logits processor
(random weights emit nothing useful) while the model still runs every step.
"""
from __future__ import annotations

import statistics
from typing import Any

import numpy as np

IMAGE_SIDE = 1024


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def sync(device: str) -> None:
    """Waits for the GPU's queued work (a no-op on the CPU), so a timer sees all of it."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def scene(seed: int, side: int = IMAGE_SIDE) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A textured side x side image with 5 objects; returns (image, xyxy (5, 4), labels)."""
    import cv2

    rng = np.random.default_rng(seed)
    image = np.clip(rng.normal(120, 25, (side, side, 3)), 0, 255).astype(np.uint8)
    boxes, labels = [], []
    names = ["car", "person", "dog", "car", "bus"]
    for i in range(5):
        w, h = rng.integers(side // 10, side // 4, size=2)
        x0, y0 = rng.integers(0, side - w), rng.integers(0, side - h)
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        if i % 2:
            cv2.ellipse(image, (int(x0 + w // 2), int(y0 + h // 2)), (int(w // 2), int(h // 2)), 0, 0, 360, color, -1)
        else:
            cv2.rectangle(image, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)), color, -1)
        boxes.append([x0, y0, x0 + w, y0 + h])
        labels.append(names[i])
    return image, np.asarray(boxes, np.float32), labels


def _script_for(boxes: np.ndarray, labels: list[str], side: int) -> str:
    """Florence-2 grounding output text naming ``labels`` at ``boxes`` (1000-bin locations)."""
    parts = ["<s>"]
    for (x0, y0, x1, y1), name in zip(boxes, labels, strict=True):
        bins = [min(999, int(v / side * 1000)) for v in (x0, y0, x1, y1)]
        parts.append(name + "".join(f"<loc_{b}>" for b in bins))
    return "".join(parts)


def scripted_ids(det, boxes: np.ndarray, labels: list[str]) -> list[int]:
    """The token ids of Florence's grounding output naming ``labels`` at ``boxes``."""
    from tests.pipeline.tiny_models import florence_output_ids

    return florence_output_ids(det.processor.tokenizer, _script_for(boxes, labels, IMAGE_SIDE))


def scripted_kwargs(det, boxes: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """``generate_kwargs`` forcing Florence to emit ``labels`` at ``boxes`` (a fresh processor)."""
    from transformers import LogitsProcessorList

    from tests.pipeline.tiny_models import scripted_logits_processor

    ids = scripted_ids(det, boxes, labels)
    eos = det.processor.tokenizer.eos_token_id
    return {"logits_processor": LogitsProcessorList([scripted_logits_processor(ids, eos)])}
