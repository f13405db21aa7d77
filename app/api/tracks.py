"""``/tracks``: groups of objects of one source in frame order (``Registry`` track methods)."""
from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import Ctx, lookup
from app.api.errors import not_found
from app.api.schemas import TrackIn, TrackOut

router = APIRouter(prefix="/tracks", tags=["tracks"])


@router.post("", response_model=TrackOut, status_code=201)
def create_track(ctx: Ctx, body: TrackIn) -> dict:
    """A track of objects of one source; 404 names unknown object ids."""
    reg = ctx.registry
    found = {o["object_id"] for o in reg.get_objects(body.object_ids)}
    missing = [i for i in body.object_ids if i not in found]
    if missing:
        raise not_found(f"unknown object ids {missing[:5]}; nothing created (ids come from GET /api/v1/objects)")
    track_id = reg.create_track(body.object_ids, category=body.category, metadata=body.metadata)
    return reg.get_track(track_id)


@router.get("/{track_id}", response_model=TrackOut)
def get_track(ctx: Ctx, track_id: str) -> dict:
    """The track with its objects in frame order."""
    return lookup(ctx.registry.get_track, track_id)
