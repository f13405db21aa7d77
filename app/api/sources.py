"""``/sources``: register an uploaded image, list and get sources (``Registry`` source methods)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile

from app.api.deps import Ctx, lookup, saved_upload
from app.api.schemas import SourceOut, SourcePage

router = APIRouter(prefix="/sources", tags=["sources"])


def public(ctx, src: dict) -> dict:
    """The source as API clients see it: ``file_path`` relative to the data folder (e.g.
    ``media/<hash>.jpg``), never the server's absolute layout; a file outside it by name only."""
    out = dict(src)
    path = out.get("file_path")
    if path:
        try:
            out["file_path"] = Path(path).resolve().relative_to(Path(ctx.data_dir).resolve()).as_posix()
        except ValueError:
            out["file_path"] = Path(path).name
    return out


@router.post("", response_model=SourceOut, status_code=201)
def register_source(ctx: Ctx, file: Annotated[UploadFile, File(description="an image file")],
                    project: str | None = Form(None, description="project id stored with the source")) -> dict:
    """Registers an uploaded image (copied into ``<data>/media``); the same bytes give the same id."""
    with saved_upload(file, "file") as up:
        h, w = up.image.shape[:2]
        source_id = ctx.registry.register_source(up.path, width=w, height=h, project=project or None)
    return public(ctx, ctx.registry.get_source(source_id))


@router.get("", response_model=SourcePage)
def list_sources(ctx: Ctx, limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0)) -> dict:
    """Sources in registration order, paginated."""
    reg = ctx.registry
    return {"items": [public(ctx, s) for s in reg.list_sources(limit=limit, offset=offset)],
            "total": reg.count_sources(),
            "limit": limit, "offset": offset}


@router.get("/{source_id}", response_model=SourceOut)
def get_source(ctx: Ctx, source_id: str) -> dict:
    return public(ctx, lookup(ctx.registry.get_source, source_id))
