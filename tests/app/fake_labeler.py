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
