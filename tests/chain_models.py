"""The three tiny real models of the chain, laid out like downloaded weights, plus a scene.

``build_chain_models(root)`` writes, under ``root``, one folder per role named exactly as
``launch.py models download`` names them (``florence-community--Florence-2-base``,
``facebook--sam2.1-hiera-tiny``, ``facebook--dinov2-base``), so ``launch.py models import root``
and ``ModelManager(weights_dir=...)`` take them as the cpu profile's models:

* Florence-2: the scripted tiny checkpoint (``tests.pipeline.scripted_florence``) that finds a
  ``cat`` and a ``dog`` at the boxes of ``SCENE_BOXES`` on any image of ``SCENE_SIZE``;
* SAM2 and DINOv2: tiny random models (``tests.pipeline.tiny_models_sam2_dino``).

``write_scene(path)`` draws a scene whose objects lie where the script puts its boxes.
Sizes: images (H, W, 3) uint8 RGB; boxes xyxy absolute pixels, x = column.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SCENE_SIZE = (240, 320)  # (height, width)
# Boxes the scripted detector reports on a SCENE_SIZE image, as the parser maps bins back:
# bin k -> (k + 0.5) * side / 1000.
SCENE_BINS = {"cat": (100, 150, 450, 700), "dog": (600, 200, 900, 550)}
SCENE_CLASSES = ["cat", "dog"]
FOLDERS = {
    "detector": "florence-community--Florence-2-base",
    "segmenter": "facebook--sam2.1-hiera-tiny",
    "embedder": "facebook--dinov2-base",
}


def scene_boxes(size: tuple[int, int] = SCENE_SIZE) -> dict[str, tuple[float, float, float, float]]:
    """Class -> the xyxy box the scripted detector reports on an image of ``size`` (H, W)."""
    h, w = size
    sides = (w, h, w, h)
    return {c: tuple((b + 0.5) * s / 1000 for b, s in zip(bins, sides, strict=True)) for c, bins in SCENE_BINS.items()}


def script_text() -> str:
    return "".join(c + "".join(f"<loc_{b}>" for b in bins) for c, bins in SCENE_BINS.items())


def build_chain_models(root: str | Path, *, prob: float = 0.9) -> dict[str, Path]:
    """Write the three tiny models under ``root``; returns role -> folder."""
    from tests.pipeline.scripted_florence import build_scripted_florence
    from tests.pipeline.tiny_models_sam2_dino import build_tiny_dinov2, build_tiny_sam2

    root = Path(root)
    out = {
        "detector": build_scripted_florence(root / FOLDERS["detector"], script_text(), prob=prob),
        "segmenter": build_tiny_sam2(root / FOLDERS["segmenter"]),
        "embedder": build_tiny_dinov2(root / FOLDERS["embedder"]),
    }
    return out


def scene_image(seed: int = 0, size: tuple[int, int] = SCENE_SIZE) -> np.ndarray:
    """A textured background with an orange disc inside the cat box and a blue square in the dog box."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = size
    img = np.clip(rng.normal(120, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    boxes = scene_boxes(size)
    x0, y0, x1, y1 = (int(v) for v in boxes["cat"])
    cv2.ellipse(img, ((x0 + x1) // 2, (y0 + y1) // 2), ((x1 - x0) // 2 - 2, (y1 - y0) // 2 - 2), 0, 0, 360,
                (230, 140, 40), -1)
    x0, y0, x1, y1 = (int(v) for v in boxes["dog"])
    cv2.rectangle(img, (x0 + 3, y0 + 3), (x1 - 3, y1 - 3), (40, 80, 220), -1)
    return img


def write_scene(path: str | Path, seed: int = 0, size: tuple[int, int] = SCENE_SIZE) -> Path:
    """``scene_image`` saved as PNG (lossless: the pixels a test reads back are the drawn ones)."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(scene_image(seed, size), cv2.COLOR_RGB2BGR))
    return path


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy boxes -> (N, M) IoU (for comparing two runs' detections)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) bool masks (0 when both are empty)."""
    return float(np.logical_and(a, b).sum() / max(1, np.logical_or(a, b).sum()))
