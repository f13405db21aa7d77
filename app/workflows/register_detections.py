"""The pipeline's ``Detections`` of one image (or video frame) -> registry objects, in one
transaction. Every writer of detections uses it: ``launch.py label`` and the Auto-label tab
(``app.workflows.labeling``, ``app.workflows.autolabel_session``), video frames
(``app.workflows.video``) and the REST API (``app.api.models``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.types import Detections


def register_detections(
    reg: Any,
    source_id: str,
    det: Detections,
    *,
    project: str | None = None,
    detection_model: str | None = None,
    keep: Sequence[bool] | None = None,
    frame_id: str | None = None,
) -> Any:
    """Registers a source's detections as objects (one transaction).

    Args:
        reg: a ``registry.facade.Registry``.
        source_id: the registered source the detections were made on (same pixel grid).
        det: boxes ``xyxy`` absolute pixels, confidences, class names, optional (N, H, W) bool
            masks and ``data["embedding"]`` (N, D) float32.
        project: project name stored with each object.
        detection_model: model name stored with each object, unless the row has its own in
            ``det.data["detection_model"]`` (hand-drawn boxes: ``"manual"``, with
            ``det.data["created_by"]`` stored as ``metadata["created_by"]``).
        keep: (N,) bools; False rows (e.g. toggled off in the UI) are not registered.
        frame_id: the video frame the detections were made on (None for an image source).

    Returns:
        ``RegisterResult`` whose ``object_ids`` align with the rows of ``det`` (None for rows
        not kept or skipped as duplicates) and whose ``duplicates`` hold (row of ``det``, id of
        the existing object).

    Raises:
        ValueError: ``keep`` of the wrong length, or what ``register_objects`` rejects.
    """
    from registry.facade import ObjectIn, RegisterResult

    n = len(det)
    if keep is None:
        flags = [True] * n
    else:
        flags = [bool(k) for k in keep]
        if len(flags) != n:
            raise ValueError(f"keep: expected one flag per detection ({n}), got {len(flags)}")
    emb = det.data.get("embedding") if det.data else None
    # per-row provenance (hand-drawn boxes: "manual" and who drew them) overrides the default
    row_models = det.data.get("detection_model") if det.data else None
    row_users = det.data.get("created_by") if det.data else None
    labels = det.labels
    rows: list[int] = []
    objects: list[Any] = []
    for i in range(n):
        if not flags[i]:
            continue
        rows.append(i)
        objects.append(
            ObjectIn(
                category=labels[i],
                xyxy=tuple(float(v) for v in det.xyxy[i]),
                mask=None if det.mask is None else np.asarray(det.mask[i], bool),
                confidence=float(np.clip(det.confidence[i], 0.0, 1.0)),
                embedding=None if emb is None else np.asarray(emb[i], np.float32),
                detection_model=(row_models[i] if row_models is not None and row_models[i] else detection_model),
                metadata=({"created_by": str(row_users[i])} if row_users is not None and row_users[i] else None),
                frame_id=frame_id,
            )
        )
    out = RegisterResult(object_ids=[None] * n)
    if not objects:
        return out
    res = reg.register_objects(source_id, objects, project=project)
    for row, oid in zip(rows, res.object_ids, strict=True):
        out.object_ids[row] = oid
    out.duplicates = [(rows[i], existing) for i, existing in res.duplicates]
    return out
