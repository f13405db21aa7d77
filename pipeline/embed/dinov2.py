"""Object embeddings with DINOv2 on masked crops (preprocess -> forward -> postprocess).

- preprocess (numpy/OpenCV, ``pipeline.mask_ops.masked_crop``): for each object, the box grown
  by ``crop_pad`` (10 %) of its size on each side and clipped to the image; pixels outside the
  object's mask set to the ImageNet mean colour, which normalises to ~0, i.e. "no information";
  the crop letterboxed onto a square of that same colour (aspect ratio kept, so no object is
  cut off as a centre crop would), resized to ``input_size`` (224) and mean/std normalised.
- forward: ``Dinov2Model`` in batches of ``batch_size`` crops.
- postprocess: the CLS token (after the final layer norm, i.e. ``pooler_output``), optionally
  concatenated with the mean of the patch tokens (``pooling="cls+mean"``, 2 x hidden size),
  cast to float32 and L2-normalised, so cosine similarity is a dot product.

Parity with transformers: given the same 224 x 224 crop, the vector is the L2-normalised
``Dinov2Model`` ``pooler_output`` of that crop normalised by transformers' ``BitImageProcessor``
(cosine >= 0.9999, ``tests/pipeline/test_parity_dinov2.py``). What differs from the hub
checkpoints' processor, by design, is only the crop geometry: it resizes the shorter side to 256
(bicubic) and centre-crops 224, which would cut off the ends of an elongated object's crop;
here the crop is letterboxed (whole object, aspect kept) and resized to 224 directly.

Coordinates: ``xyxy`` is (N, 4) absolute pixels of the image, x = column, y = row; masks are
(N, H, W) bool on the image's pixel grid.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from pipeline.mask_ops import NEUTRAL_FILL, masked_crop
from pipeline.models.specs import embedding_version

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POOLINGS = ("cls", "cls+mean")


def letterbox(crop: np.ndarray, size: int, fill: tuple[int, int, int] = NEUTRAL_FILL) -> np.ndarray:
    """Pad an (h, w, 3) uint8 crop to a square with ``fill`` (centred) and resize to ``size``^2.

    Returns:
        (size, size, 3) uint8.
    """
    h, w = crop.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    square = cv2.copyMakeBorder(crop, top, side - h - top, left, side - w - left,
                                cv2.BORDER_CONSTANT, value=tuple(int(v) for v in fill))
    # INTER_AREA averages when shrinking (no aliasing); INTER_LINEAR when enlarging small objects
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interp)


class Dinov2Embedder:
    """DINOv2 embeddings of objects' masked crops.

    Build with ``Dinov2Embedder.from_pretrained(folder)``; the constructor takes a ready model.

    Attributes:
        dim: embedding length (hidden size, or twice that with ``pooling="cls+mean"``).
        version: model version label stored with each vector (e.g. ``"dinov2-base"``,
            ``"dinov2-base+mean"``); vectors of different versions must not be compared.
        device / dtype: where and in which precision the model runs.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        version: str | None = None,
        pooling: str = "cls",
        input_size: int = 224,
        crop_pad: float = 0.1,
        batch_size: int = 16,
        image_mean: tuple[float, float, float] = IMAGENET_MEAN,
        image_std: tuple[float, float, float] = IMAGENET_STD,
    ) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {POOLINGS}, got {pooling!r}")
        patch = int(model.config.patch_size)
        if input_size < patch or input_size % patch:
            raise ValueError(f"input_size: expected a multiple of the patch size {patch}, got {input_size}")
        self.model = model.eval()
        self.device = torch.device(device)
        self.dtype = dtype
        self.pooling = pooling
        self.input_size = int(input_size)
        self.crop_pad = float(crop_pad)
        self.batch_size = max(1, int(batch_size))
        hidden = int(model.config.hidden_size)
        self.dim = hidden * (2 if pooling == "cls+mean" else 1)
        base = version or embedding_version(hidden)
        self.version = base + ("+mean" if pooling == "cls+mean" and not base.endswith("+mean") else "")
        # register tokens (dinov2_with_registers) sit between CLS and the patch tokens
        self._first_patch = 1 + int(getattr(model.config, "num_register_tokens", 0) or 0)
        self._mean = np.asarray(image_mean, np.float32) * 255.0
        self._std = np.asarray(image_std, np.float32) * 255.0
        # The ViT compiled with OpenVINO (CPU), or None for the PyTorch module.
        self.vision: Any = None

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        version: str | None = None,
        pooling: str = "cls",
        batch_size: int = 16,
        runtime: str | None = None,
    ) -> Dinov2Embedder:
        """Load a ``save_pretrained`` DINOv2 folder.

        Args:
            path: the model folder (see ``pipeline.models.loader.resolve_weights``).
            device / dtype: default ``pipeline.models.device.pick_device_dtype()``.
            version: version label; default from the hidden size (``"dinov2-base"`` for 768).
            pooling: ``"cls"`` or ``"cls+mean"``.
            batch_size: crops per forward pass.
            runtime: the ViT's CPU runtime, ``"openvino"`` or ``"torch"``; default
                ``pipeline.models.openvino_runtime.cpu_runtime()``.
        """
        from transformers import AutoModel

        from pipeline.models.device import resolve_device_dtype
        from pipeline.models.loader import read_normalisation
        from pipeline.models.openvino_runtime import accelerate
        from pipeline.models.released_weights import release

        device, dtype = resolve_device_dtype(device, dtype)
        path = Path(path)
        model = AutoModel.from_pretrained(path, dtype=dtype).to(device)
        mean, std = read_normalisation(path, IMAGENET_MEAN, IMAGENET_STD)
        emb = cls(model, device=device, dtype=dtype, version=version, pooling=pooling,
                  batch_size=batch_size, image_mean=mean, image_std=std)
        size = emb.input_size
        emb.vision = accelerate("dinov2", path, device, (1, 3, size, size), dtype, runtime)
        if emb.vision is not None:  # the whole model runs compiled: its PyTorch weights are freed
            release(emb, "", path)
        return emb

    def preprocess(self, image: np.ndarray, xyxy: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """Masked, padded, letterboxed crops: (N, input_size, input_size, 3) uint8.

        Args:
            image: (H, W, 3) uint8 RGB.
            xyxy: (N, 4) absolute pixels.
            masks: (N, H, W) bool, or None to embed the plain (padded) box crops.
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image: expected (H, W, 3) uint8 RGB, got shape {image.shape} dtype {image.dtype}")
        boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
        if masks is not None:
            masks = np.asarray(masks)
            if masks.dtype != bool or masks.shape != (len(boxes), *image.shape[:2]):
                raise ValueError(
                    f"masks: expected ({len(boxes)}, {image.shape[0]}, {image.shape[1]}) bool, got "
                    f"{masks.shape} {masks.dtype}"
                )
        out = np.empty((len(boxes), self.input_size, self.input_size, 3), dtype=np.uint8)
        for i, box in enumerate(boxes):
            crop = masked_crop(image, box, None if masks is None else masks[i], pad=self.crop_pad)
            out[i] = letterbox(crop, self.input_size)
        return out

    @torch.inference_mode()
    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 crops -> (N, dim) float32, L2-normalised."""
        n = len(crops)
        result = np.zeros((n, self.dim), dtype=np.float32)
        for i in range(0, n, self.batch_size):
            batch = (crops[i:i + self.batch_size].astype(np.float32) - self._mean) / self._std
            x = torch.from_numpy(batch).permute(0, 3, 1, 2)
            if self.vision is not None:  # OpenVINO (pipeline.models.openvino_runtime)
                hidden = self.vision(x)[0]
            else:  # (B, 1 + R + P, C), layer-normed
                hidden = self.model(pixel_values=x.to(device=self.device, dtype=self.dtype)).last_hidden_state
            feats = hidden[:, 0]
            if self.pooling == "cls+mean":
                feats = torch.cat([feats, hidden[:, self._first_patch:].mean(dim=1)], dim=-1)
            feats = feats.float()
            feats = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            result[i:i + len(feats)] = feats.cpu().numpy()
        return result

    def embed(self, image: np.ndarray, xyxy: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """Embed each object of one image.

        Args:
            image: (H, W, 3) uint8 RGB.
            xyxy: (N, 4) float boxes, absolute pixels (x_min, y_min, x_max, y_max).
            masks: (N, H, W) bool masks on the image grid, or None (box crops).

        Returns:
            (N, dim) float32, each row of unit L2 norm ((0, dim) for no boxes).
        """
        crops = self.preprocess(image, xyxy, masks)
        return self.embed_crops(crops)
