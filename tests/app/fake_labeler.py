"""A deterministic labeler for the labeling workflow and ``launch.py label`` tests.

Boxes come from the saturated shapes of ``tests.app.fakes.make_scene`` images (the same image
always gives the same boxes, names and confidences); masks come from the real GrabCut
segmenter. It stands in for Florence-2 (no weights here) and is never the only test of the real
detector path (tests/pipeline). Images (H, W, 3) uint8 RGB; boxes xyxy absolute pixels.
"""
from __future__ import annotations

from typing import Any

from pipeline.segment.grabcut import GrabCutSegmenter
from tests.app.fakes import FakeLabeler


class FixedShapeLabeler(FakeLabeler):
    """``FakeLabeler`` with GrabCut masks and model names like ``AutoLabeler``'s."""

    def __init__(self, segmenter: Any = None) -> None:
        super().__init__(segmenter if segmenter is not None else GrabCutSegmenter(), None)

    @property
    def model_names(self) -> dict[str, str | None]:
        return {"detector": "fake-shapes", "segmenter": getattr(self.segmenter, "version", None), "embedder": None}


class BatchingLabeler(FixedShapeLabeler):
    """``label_many`` as ``label`` image by image, recording each batch's size; it raises for
    any batch holding an image whose top-left pixel is ``poison`` (and ``label`` does too)."""

    def __init__(self, poison: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.poison = poison

    def _check(self, image) -> None:
        if self.poison is not None and tuple(int(v) for v in image[0, 0]) == self.poison:
            raise ValueError("poisoned image")

    def label(self, image, classes, **kw):
        self._check(image)
        return super().label(image, classes, **kw)

    def label_many(self, images, classes, *, confidence=0.3, synonyms=None, image_keys=None):
        self.batches.append(len(images))
        for im in images:
            self._check(im)
        return [FixedShapeLabeler.label(self, im, classes, confidence=confidence, synonyms=synonyms, image_key=k)
                for im, k in zip(images, image_keys, strict=True)]
