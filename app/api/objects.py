"""``/objects``: filtered pages, one object, patches, deletion, the mask as PNG and similarity
search by a vector or by an uploaded image (``Registry`` object methods, ``app.workflows.search``)."""
from __future__ import annotations

import io
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from app.api.deps import Ctx, api_user, embedder, lookup, saved_upload
from app.api.errors import ApiError
from app.api.schemas import (
    DeletedOut,
    EmbeddingSearchIn,
    ImageSearchOut,
    ObjectBatchIn,
    ObjectBatchOut,
    ObjectOut,
    ObjectPage,
    ObjectPatch,
    SearchOut,
    Status,
)
from app.api.similarity import TAU1, TAU2, verdict

router = APIRouter(prefix="/objects", tags=["objects"])

Order = Literal["confidence_asc", "confidence_desc", "created_desc", "created_asc"]


@router.get("", response_model=ObjectPage)
def list_objects(
    ctx: Ctx,
    category: str | None = Query(None, description="class name or synonym"),
    project: str | None = Query(None, description="project id (the specification's project_id)"),
    source_id: str | None = None,
    min_confidence: float | None = Query(None, ge=0.0, le=1.0),
    max_confidence: float | None = Query(None, ge=0.0, le=1.0),
    status: Status | None = None,
    created_after: str | None = Query(None, description="ISO time, inclusive"),
    created_before: str | None = Query(None, description="ISO time, exclusive"),
    order: Order = "confidence_asc",
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> dict:
    """Objects matching every given filter, sorted and paginated; ``total`` counts all pages."""
    filters = {k: v for k, v in {
        "category": category, "project": project, "source_id": source_id, "min_confidence": min_confidence,
        "max_confidence": max_confidence, "status": status, "created_after": created_after,
        "created_before": created_before}.items() if v is not None}
    reg = ctx.registry
    return {"items": reg.list_objects(order=order, limit=limit, offset=offset, **filters),
            "total": reg.count_objects(**filters), "limit": limit, "offset": offset}


def _mask_from_png(data: str, k: int) -> np.ndarray:
    import base64
    import binascii

    from pipeline.image_io import load_image

    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, f"objects[{k}].mask_base64: expected base64 of a PNG, got invalid base64") from exc
    return load_image(raw).max(axis=2) > 0  # bombs and non-images are refused like uploads


@router.post("/batch", response_model=ObjectBatchOut, status_code=201)
def register_objects(ctx: Ctx, body: ObjectBatchIn) -> dict:
    """Registers objects of one source in one transaction (all or nothing; 400 names the bad one)."""
    from registry.facade import ObjectIn as RegistryObject

    reg = ctx.registry
    lookup(reg.get_source, body.source_id)
    items = []
    for k, o in enumerate(body.objects):
        if (o.bbox is None) == (o.bbox_xyxy is None):
            raise ApiError(400, f"objects[{k}]: expected bbox [x, y, w, h] or bbox_xyxy [x0, y0, x1, y1], got "
                                + ("both" if o.bbox is not None else "neither"))
        if o.mask is not None and o.mask_base64 is not None:
            raise ApiError(400, f"objects[{k}]: send mask (RLE) or mask_base64 (PNG), not both")
        x0, y0, a, b = o.bbox if o.bbox is not None else o.bbox_xyxy
        xyxy = (x0, y0, x0 + a, y0 + b) if o.bbox is not None else (x0, y0, a, b)
        items.append(RegistryObject(
            category=o.category, xyxy=tuple(float(v) for v in xyxy), confidence=o.confidence,
            detection_model=o.detection_model, mask_rle=o.mask,
            mask=None if o.mask_base64 is None else _mask_from_png(o.mask_base64, k),
            embedding=None if o.embedding is None else np.asarray(o.embedding, np.float32),
            quality_score=o.quality_score, is_occluded=o.is_occluded, is_truncated=o.is_truncated,
            is_difficult=o.is_difficult, metadata=o.metadata))
    res = reg.register_objects(body.source_id, items, project=body.project_id, dedupe=body.dedupe)
    return {"object_ids": list(res.object_ids), "count": sum(1 for i in res.object_ids if i),
            "duplicates": [(int(i), str(e)) for i, e in res.duplicates]}


@router.get("/{object_id}", response_model=ObjectOut)
def get_object(ctx: Ctx, object_id: str) -> dict:
    return lookup(ctx.registry.get_object, object_id)


@router.patch("/{object_id}", response_model=ObjectOut)
def patch_object(ctx: Ctx, object_id: str, patch: ObjectPatch, request: Request) -> dict:
    """Validation (``status``, or the specification's ``is_validated``), class, quality and flags."""
    reg = ctx.registry
    lookup(reg.get_object, object_id)
    status = patch.status
    if status is None and patch.is_validated is not None:
        status = "approved" if patch.is_validated else "pending"
    elif status is not None and patch.is_validated is not None and (status == "approved") != patch.is_validated:
        raise ApiError(400, f"status {status!r} contradicts is_validated={patch.is_validated}; send one of them")
    fields = patch.model_dump(exclude={"status", "is_validated", "validated_by"}, exclude_none=True)
    if status is None and not fields and patch.validated_by is None:
        raise ApiError(400, "nothing to change: send at least one of " + ", ".join(ObjectPatch.model_fields))
    who = patch.validated_by or api_user(request)
    return reg.update_object(object_id, status=status, validated_by=who if (status or patch.validated_by) else None,
                             **fields)


@router.delete("/{object_id}", response_model=DeletedOut)
def delete_object(ctx: Ctx, object_id: str) -> dict:
    lookup(ctx.registry.delete_object, object_id)
    return {"deleted": object_id}


@router.get("/{object_id}/mask", response_class=Response,
            responses={200: {"content": {"image/png": {}}, "description": "8-bit PNG, 255 = object, source size"}})
def get_mask(ctx: Ctx, object_id: str) -> Response:
    """The object's mask as a greyscale PNG of the source image's size (255 inside, 0 outside)."""
    from PIL import Image

    mask = lookup(ctx.registry.get_mask, object_id)
    if mask is None:
        raise ApiError(404, f"object {object_id} has no mask (a box-only object); draw one in Refine")
    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask, bool).astype(np.uint8) * 255, mode="L").save(buf, format="PNG")
    return Response(buf.getvalue(), media_type="image/png")


@router.post("/search/embedding", response_model=SearchOut)
def search_embedding(ctx: Ctx, q: EmbeddingSearchIn) -> dict:
    """The ``top_k`` objects nearest to a vector (cosine), best first, filters applied."""
    from app.workflows.search import SearchFilters, search_by_vector

    flt = SearchFilters(category=q.category, min_confidence=q.min_confidence, validated_only=q.validated_only,
                        project=q.project)
    hits = search_by_vector(ctx.registry, np.asarray(q.embedding, np.float32), k=q.top_k, filters=flt,
                            rerank=q.rerank, fusion=q.fusion, fusion_category=q.fusion_category)
    return {"items": hits, "count": len(hits)}


@router.post("/search/image", response_model=ImageSearchOut)
def search_image(
    ctx: Ctx,
    file: Annotated[UploadFile, File(description="the query image")],
    top_k: int = Form(3, ge=1, le=100, description="classes listed in top_k"),
    neighbors: int = Form(24, ge=1, le=1000, description="nearest objects the verdict is drawn from"),
    category: str | None = Form(None),
    min_confidence: float | None = Form(None, ge=0.0, le=1.0),
    validated_only: bool = Form(False),
    project: str | None = Form(None),
    tau1: float = Form(TAU1, description="s1 below this: unknown"),
    tau2: float = Form(TAU2, description="margin below this: unknown"),
) -> dict:
    """Find-by-upload: embeds the image like stored objects and returns the verdict + neighbours."""
    from app.workflows.search import SearchFilters, context_segment, search_by_image

    emb = embedder(ctx)
    flt = SearchFilters(category=category or None, min_confidence=min_confidence, validated_only=validated_only,
                        project=project or None)
    with saved_upload(file, "file") as up:
        hits = search_by_image(ctx.registry, emb, up.image, k=neighbors, filters=flt, segment=context_segment(ctx))
    out = verdict(hits, top_k=top_k, tau1=tau1, tau2=tau2)
    out["objects"] = hits
    return out
