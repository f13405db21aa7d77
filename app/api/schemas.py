"""Pydantic request/response models of the REST API (registry side).

Conventions (as in the registry): boxes ``bbox_xywh`` are absolute pixels of the source image
``[x, y, width, height]`` with (x, y) the top-left corner; ``bbox_xyxy`` is ``[x0, y0, x1, y1]``;
masks are compressed COCO RLE ``{"size": [H, W], "counts": str}``; similarities are cosine
(1.0 = identical); timestamps are ISO-8601 UTC strings. The model-gateway shapes live in
:mod:`app.api.schemas_models`.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["pending", "approved", "rejected"]


class ErrorOut(BaseModel):
    """Every error body: what went wrong and what to do about it."""

    error: str = Field(description="short kind of error, e.g. 'not found', 'bad request'")
    detail: Any = Field(description="a message a person can act on (or pydantic's list for 422)")


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"
    api: str = "v1"
    sources: int
    objects: int
    auth: bool = Field(description="True when the API requires credentials")


class SourceOut(BaseModel):
    source_id: str
    source_type: str
    file_path: str | None = Field(None, description="path relative to the data folder, e.g. media/<hash>.jpg")
    file_name: str | None = None
    width: int | None = None
    height: int | None = None
    frame_count: int | None = None
    fps: float | None = None
    content_hash: str
    project_id: str | None = None
    metadata: dict | None = None
    created_at: str | None = None


class SourcePage(BaseModel):
    items: list[SourceOut]
    total: int
    limit: int
    offset: int


class ObjectOut(BaseModel):
    """A registry object (the registry's own field names)."""

    object_id: str
    source_id: str
    frame_id: str | None = None
    project_id: str | None = None
    category: str
    category_id: int
    bbox_xywh: list[float] = Field(description="[x, y, w, h] absolute pixels, top-left origin")
    area: float | None = None
    confidence: float | None = None
    detection_model: str | None = None
    classification_model: str | None = None
    classification_confidence: float | None = None
    validation_status: Status
    is_validated: bool
    validated_by: str | None = None
    validated_at: str | None = None
    quality_score: float | None = None
    is_occluded: bool = False
    is_truncated: bool = False
    is_difficult: bool = False
    has_mask: bool = False
    has_embedding: bool = False
    metadata: dict | None = None
    created_at: str | None = None
    updated_at: str | None = None
    similarity: float | None = Field(None, description="cosine similarity (search results only)")
    score: float | None = Field(None, description="what ranked the result (similarity, or the fused score)")
    stage: str | None = Field(None, description="the search stage that produced score: ann | exact | fused")
    score_components: dict[str, float | None] | None = Field(
        None, description="ann and exact similarity, and the weighted fusion terms")


class ObjectPage(BaseModel):
    items: list[ObjectOut]
    total: int = Field(description="objects matching the filters (all pages)")
    limit: int
    offset: int


class ObjectIn(BaseModel):
    """One object to register (``POST /objects/batch``); give ``bbox`` or ``bbox_xyxy``."""

    model_config = ConfigDict(extra="forbid")

    category: str
    bbox: list[float] | None = Field(None, min_length=4, max_length=4,
                                     description="[x, y, w, h] absolute pixels (the specification's shape)")
    bbox_xyxy: list[float] | None = Field(None, min_length=4, max_length=4, description="[x0, y0, x1, y1]")
    confidence: float | None = Field(None, ge=0.0, le=1.0)
    detection_model: str | None = None
    mask: dict | None = Field(None, description="compressed COCO RLE {'size': [H, W], 'counts': str}")
    mask_base64: str | None = Field(None, description="a PNG of the source's size, non-zero = object")
    embedding: list[float] | None = None
    quality_score: float | None = Field(None, ge=0.0, le=1.0)
    is_occluded: bool = False
    is_truncated: bool = False
    is_difficult: bool = False
    metadata: dict | None = None


class ObjectBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_id: str
    project_id: str | None = None
    dedupe: bool = Field(True, description="skip objects overlapping an existing one of the same class")
    objects: list[ObjectIn] = Field(min_length=1, max_length=10_000)


class ObjectBatchOut(BaseModel):
    object_ids: list[str | None] = Field(description="aligned with the input; null = skipped as a duplicate")
    count: int = Field(description="objects stored")
    duplicates: list[tuple[int, str]] = Field(description="[input index, id of the existing object]")


class SyncOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    synced: int
    failed: int
    pending: int


class ObjectPatch(BaseModel):
    """Fields to change; those left out (or null) stay as they are."""

    model_config = ConfigDict(extra="forbid")

    status: Status | None = Field(None, description="approved / rejected / pending")
    is_validated: bool | None = Field(
        None, description="the specification's spelling: true = approved, false = pending (use status to reject)")
    validated_by: str | None = Field(None, description="reviewer name (default: the logged-in API user)")
    category: str | None = Field(None, description="new class name or synonym (created on demand)")
    quality_score: float | None = Field(None, ge=0.0, le=1.0)
    is_occluded: bool | None = None
    is_truncated: bool | None = None
    is_difficult: bool | None = None


class DeletedOut(BaseModel):
    deleted: str


class EmbeddingSearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    embedding: list[float] = Field(description="the query vector (the registry's embedding_dim values)")
    top_k: int = Field(10, ge=1, le=1000)
    category: str | None = None
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)
    project: str | None = None
    validated_only: bool = False
    rerank: int | None = Field(None, ge=0, le=100, description="m: k·m ANN candidates re-ranked exactly "
                               "(0 = ANN only, the default); see docs/search.md")
    fusion: dict[str, float] | None = Field(None, description="weights of similarity, category, confidence, "
                                            "validated (e.g. {'category': 0.2})")
    fusion_category: str | None = Field(None, description="the category the 'category' weight favours")


class SearchOut(BaseModel):
    items: list[ObjectOut]
    count: int


class ImageSearchOut(BaseModel):
    """Find-by-upload, the similarity server's shape plus the neighbouring objects."""

    top_k: list[tuple[str, float]] = Field(
        description="[[category, score], ...] best first: each category's best similarity among the neighbours")
    verdict: str | None = Field(description="the best category, or null when is_unknown")
    s1: float = Field(description="score of the best category (0 when nothing matched)")
    margin: float = Field(description="s1 minus the second category's score (s1 when there is none)")
    is_unknown: bool = Field(description="s1 < tau1 or margin < tau2")
    tau1: float
    tau2: float
    objects: list[ObjectOut] = Field(description="the nearest objects, best first")


class CategoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    supercategory: str | None = None
    synonyms: list[str] = Field(default_factory=list)
    color: str | None = Field(None, description="'#rrggbb'")
    description: str | None = None


class CategoryOut(BaseModel):
    category_id: int
    name: str
    supercategory: str | None = None
    synonyms: list[str] = Field(default_factory=list)
    color: str | None = None
    description: str | None = None
    created_at: str | None = None
    object_count: int | None = None


class CategoryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="rename to this")
    add_synonyms: list[str] = Field(default_factory=list)


class CategoryMergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    into: str = Field(description="the category that receives the objects; the merged one becomes its synonym")


class TrackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object_ids: list[str] = Field(min_length=1)
    category: str | None = None
    metadata: dict | None = None


class TrackOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    track_id: str
    source_id: str
    category: str | None = None
    metadata: dict | None = None
    objects: list[dict]


class Split(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train: float = Field(0.8, ge=0.0)
    val: float = Field(0.1, ge=0.0)
    test: float = Field(0.1, ge=0.0)


class DatasetFilterIn(BaseModel):
    """The specification's ``filter_config`` (``is_validated``/``project_id`` spellings accepted)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    categories: list[str] | None = None
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)
    validated_only: bool = Field(False, alias="is_validated")
    project: str | None = Field(None, alias="project_id")
    sources: list[str] | None = None


class DatasetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    filter_config: DatasetFilterIn = Field(default_factory=DatasetFilterIn)
    split_config: Split = Field(default_factory=Split)
    seed: int = 0


class DatasetBuildIn(BaseModel):
    """Overrides for a rebuild; what is left out is taken from the latest version."""

    model_config = ConfigDict(extra="forbid")

    filter_config: DatasetFilterIn | None = None
    split_config: Split | None = None
    seed: int | None = None


class DatasetBuildOut(BaseModel):
    dataset_id: str
    name: str
    version: int
    object_count: int
    image_count: int
    splits: dict[str, int] = Field(description="objects per split (the specification's shape)")
    split_details: dict[str, dict] = Field(description="per split: images, objects, background, classes")


class DatasetOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    dataset_id: str
    name: str
    version: Any = None
    object_count: int | None = None
    split_config: Any = None
    filter_config: Any = None
    created_at: str | None = None


class ExportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["yolo", "coco"] = "yolo"
    task: Literal["detect", "segment"] = "detect"


class ExportOut(BaseModel):
    dataset_id: str
    name: str
    version: Any = None
    format: str
    task: str
    folder: str = Field(description="the export folder, relative to the data folder")
    zip: str | None = Field(None, description="the zip, relative to the data folder")
    download: str | None = Field(None, description="URL path of the zip under this API")
    counts: dict
    skipped: int
