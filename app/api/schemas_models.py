"""Pydantic models of the model gateway (``/auto_label``, ``/detect``, ``/segment``, …).

Boxes are ``bbox_xyxy`` ``[x0, y0, x1, y1]`` absolute pixels of the uploaded image (after EXIF
orientation); masks are compressed COCO RLE ``{"size": [H, W], "counts": str}`` on that image's
pixel grid (decode with ``pycocotools.mask.decode``).
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ImageSize(BaseModel):
    width: int
    height: int


class Rle(BaseModel):
    size: list[int] = Field(description="[H, W]")
    counts: str


class DetectionOut(BaseModel):
    label: str
    bbox_xyxy: list[float]
    confidence: float
    mask: Rle | None = None
    object_id: str | None = Field(None, description="the registered object (auto_label with register)")


class DetectOut(BaseModel):
    image_size: ImageSize
    detections: list[DetectionOut]
    count: int


class RegistryRef(BaseModel):
    source_id: str
    object_ids: list[str | None] = Field(description="aligned with detections; null = a duplicate, not stored")
    duplicates: int


class AutoLabelOut(DetectOut):
    masks_count: int
    registered: bool
    registry: RegistryRef | None = None


class MaskOut(BaseModel):
    mask: Rle
    score: float
    bbox_xyxy: list[float] | None = Field(None, description="the mask's tight box (null for an empty mask)")
    area: int


class SegmentOut(BaseModel):
    image_size: ImageSize
    segmenter: str
    masks: list[MaskOut]


class UnloadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str | None = Field(None, description="detector | segmenter | embedder | grabcut; null = all")


class UnloadOut(BaseModel):
    unloaded: list[str]
    status: dict
