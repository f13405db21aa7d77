"""Request bodies of the classification, training and active-learning routes (pydantic), and
:func:`plain`, which turns the workflows' numpy numbers into JSON ones.

Embeddings are lists of floats of the registry's ``embedding_dim``; boxes do not appear here.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, Field


class DomainIn(BaseModel):
    """``POST /domains``: a domain pack from the validated (approved) objects' embeddings."""

    name: str = Field(..., description="domain name (letters, digits, '-', '_')")
    categories: list[str] | None = Field(None, description="only these categories (default: every approved one)")
    min_coverage: float = Field(0.95, gt=0, le=1, description="calibration target: share of support kept as known")
    tau1: float | None = Field(None, description="override the calibrated similarity threshold")
    tau2: float | None = Field(None, description="override the calibrated margin threshold")
    centre: bool = True
    overwrite: bool = False


class DomainClassifyIn(BaseModel):
    """``POST /domains/{name}/classify``: stored objects (``object_ids``) or one ``embedding``."""

    object_ids: list[str] | None = None
    embedding: list[float] | None = None
    top_k: int = Field(3, ge=1, le=100)


class ClassifyIn(BaseModel):
    """``POST /classify``: classify the registry's objects with a domain."""

    domain: str
    only_pending: bool = False
    apply: bool = False
    force: bool = False
    top_k: int = Field(3, ge=1, le=100)


class RunIn(BaseModel):
    """``POST /runs``: the Train tab's fields (see :class:`app.workflows.train.TrainRequest`)."""

    dataset: str = Field(..., description="dataset name (latest version, or `version`) or ds_… id")
    model: str = Field("yolo11n.yaml", description="yolo11n.pt / yolo11n-seg.yaml / a local checkpoint")
    epochs: int = Field(10, ge=1)
    imgsz: int = Field(640, ge=32)
    batch: int = Field(8, ge=1)
    device: str = "cpu"
    version: int | None = Field(None, ge=1)
    extra: dict[str, Any] = Field(default_factory=dict, description="other ultralytics train arguments")


class EvaluateIn(BaseModel):
    """``POST /runs/{id}/evaluate``."""

    split: str = Field("test", description="train / val / test")
    conf: float = Field(0.001, ge=0, le=1)


class ClassScore(BaseModel):
    """One entry of ``top_k``: a class and its score (cosine-based, higher = closer)."""

    class_: str = Field(..., alias="class")
    score: float


class ClassAnswer(BaseModel):
    """A classification answer (S4 shape): ``verdict`` is a class or ``"unknown"`` (when
    ``s1 < tau1`` or ``margin < tau2``); ``object_id`` is set for stored objects."""

    top_k: list[ClassScore]
    s1: float
    s2: float | None = None
    margin: float
    verdict: str
    is_unknown: bool
    confidence: float
    tau1: float
    tau2: float
    domain: str
    model: str
    object_id: str | None = None


class ClassAnswers(BaseModel):
    items: list[ClassAnswer]
    count: int


class RunStarted(BaseModel):
    run_id: str
    status: str


class RunStopping(BaseModel):
    run_id: str
    stopping: bool


def plain(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, tuples and paths made JSON-friendly (recursively)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        f = float(value)
        return f if np.isfinite(f) else None
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
