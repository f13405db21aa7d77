"""Pydantic request/response models of the video, tracking, propagation and track-edit routes.

Conventions: ``frame_idx`` is a frame's original 0-based index in the video, ``timestamp``
seconds from the first frame; frame ``file_path`` is relative to the data folder
(``media/frames/<source_id>/<frame_idx:06d>.png``). Boxes and masks of the objects these
routes write are those of :mod:`app.api.schemas` (absolute pixels of the frame).
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class VideoOut(BaseModel):
    """What ``app.workflows.video.add_video`` stored for an uploaded video."""

    model_config = ConfigDict(extra="allow")

    source_id: str
    frames: int = Field(description="frames kept by this sampling")
    new_frames: int = Field(description="frame rows created by this request (0 when it ran before)")
    existing: bool = Field(description="the same bytes were registered before")
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    frame_count: int | None = None
    duration: float | None = None
    codec: str | None = None
    sampling: dict | None = None


class FrameOut(BaseModel):
    frame_id: str
    source_id: str
    frame_idx: int = Field(description="original 0-based frame index in the video")
    timestamp: float | None = Field(None, description="seconds from the first frame")
    file_path: str | None = Field(None, description="relative to the data folder")
    object_count: int = 0
    created_at: str | None = None


class FramePage(BaseModel):
    items: list[FrameOut]
    total: int
    limit: int
    offset: int


class TrackOptions(BaseModel):
    """Tracker options (``pipeline.track.TrackerConfig``; the CLI's ``track`` flags)."""

    model_config = ConfigDict(extra="forbid")

    iou_weight: float = Field(0.5, description="weight of box IoU against embedding cosine in the cost")
    max_gap: int = Field(10, description="stored frames a track may miss in a row")
    min_length: int = Field(2, description="shorter tracks are dropped")
    min_iou: float = 0.1
    min_cosine: float = 0.5
    interpolate: bool = Field(False, description="fill each new track's gaps with interpolated objects")
    embedding_version: str | None = Field(None, description="None = the version most objects have")


class TrackRunOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    source_id: str
    tracks: int
    objects_linked: int
    interpolated: int
    replaced_tracks: int
    unchanged_tracks: int
    kept_tracks: int
    objects_considered: int
    embedding_version: str | None = None
    params: dict
    attempts: int


class PropagateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_frame: int = Field(description="frame_idx of the stored frame whose objects prompt")
    object_ids: list[str] | None = Field(None, description="prompting objects on that frame (default: all but rejected ones)")
    max_frames: int | None = Field(None, ge=1, description="stored frames to follow (default: to the end)")
    backward: bool = Field(False, description="follow the frames before from_frame instead")
    drift_threshold: float | None = Field(None, ge=0.0, le=1.0,
                                          description="in [0, 1]; default 0.5 for SAM2, 0.15 for GrabCut")


class PropagateOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    source_id: str
    from_frame: int
    backward: bool
    segmenter: str = Field(description="the propagator used, e.g. 'grabcut-track' (the fallback)")
    warning: str | None = Field(None, description="set when the GrabCut fallback was used")
    prompts: list[str]
    frames: int
    written: int
    replaced: int
    object_ids: list[str]
    tracks: dict[str, str] = Field(description="prompting object id -> its track id")
    drift: list[dict[str, Any]]
    kept: list[dict[str, Any]]


class TrackSummaryOut(BaseModel):
    """A row of ``Registry.list_tracks``."""

    model_config = ConfigDict(extra="allow")

    track_id: str
    source_id: str
    category: str | None = None
    start_frame_idx: int | None = None
    end_frame_idx: int | None = None
    object_count: int
    avg_confidence: float | None = None
    metadata: dict | None = None
    created_at: str | None = None


class TrackList(BaseModel):
    items: list[TrackSummaryOut]
    count: int


class Editor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    edited_by: str | None = Field(None, description="who edits (default: the authenticated user)")


class MergeIn(Editor):
    other_id: str = Field(description="the track merged into this one (deleted afterwards)")
    keep: Literal["refuse", "confidence"] = Field(
        "refuse", description="a frame in both tracks: refuse (409), or keep the higher-confidence object")


class SplitIn(Editor):
    frame_idx: int = Field(description="objects on frames >= frame_idx go to a new track")


class RelabelIn(Editor):
    category: str = Field(min_length=1)


class TrackEditOut(BaseModel):
    """What the edit did (``registry.track_edits``' result, ``queued`` left out)."""

    model_config = ConfigDict(extra="allow")

    track_id: str
