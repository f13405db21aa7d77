"""Florence-2's image features, as the model's forward asks for them (``get_image_features``).

:class:`VisionFeatures` replaces ``Florence2Model.get_image_features`` on a loaded detector:

* It runs the compiled DaViT (``detector.vision``, OpenVINO on a CPU) when there is one, image
  by image (the IR is compiled for one image), else the model's own PyTorch method. It reads
  ``detector.vision`` at each call, so switching it off (the bench's PyTorch timings) needs no
  re-wiring.
* Inside :meth:`VisionFeatures.sharing` it remembers the last pixels and their features. A long
  class list is split into several prompts, one ``generate`` each, all on the same image; the
  vision tower is 84 % of the detector's FLOPs on one prompt (docs/speed.md), so every prompt
  after the first would otherwise pay it again for the same pixels. A cached result is used only
  for pixels equal to the ones it was computed from (``torch.equal``: ~1 ms at 768^2 against
  ~1.4 s for the tower on 2 CPU cores), so concurrent calls on other images stay correct.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


class VisionFeatures:
    """``get_image_features(pixel_values, **kwargs)`` for ``detector`` (a ``FlorenceDetector``)."""

    def __init__(self, detector: Any) -> None:
        self._detector = detector
        self._lock = threading.Lock()
        self._sharing = 0
        self._pixels: torch.Tensor | None = None
        self._features: Any = None
        self.computed = 0  # vision tower runs (what sharing saves; read by tests)

    def __call__(self, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        with self._lock:
            sharing, px, feats = self._sharing, self._pixels, self._features
        if (sharing and px is not None and px.shape == pixel_values.shape and px.dtype == pixel_values.dtype
                and torch.equal(px, pixel_values)):
            return feats
        feats = self._compute(pixel_values, **kwargs)
        with self._lock:
            self.computed += 1
            if self._sharing:
                self._pixels, self._features = pixel_values, feats
        return feats

    def _compute(self, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        det = self._detector
        if det.vision is None:
            inner = det.model.model
            return type(inner).get_image_features(inner, pixel_values, **kwargs)
        feats = [det.vision(pixel_values[i:i + 1])[0] for i in range(pixel_values.shape[0])]
        return BaseModelOutputWithPooling(pooler_output=feats[0] if len(feats) == 1 else torch.cat(feats))

    @contextmanager
    def sharing(self) -> Iterator[None]:
        """Within the block, pixels seen again reuse their features; forgotten at the end."""
        with self._lock:
            self._sharing += 1
        try:
            yield
        finally:
            with self._lock:
                self._sharing -= 1
                if not self._sharing:
                    self._pixels = self._features = None
