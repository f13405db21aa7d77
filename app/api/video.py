"""Video over REST: upload and sample a video, list its frames, track, propagate, edit tracks.

Thin adapters over the workflows the CLI uses (no logic of their own):

* ``POST /videos`` → :func:`app.workflows.video.add_video` (the upload is saved to a temporary
  file, which ``add_video`` copies into ``<data>/media``),
* ``GET /sources/{id}/frames`` → ``Registry.list_frames``,
* ``POST /sources/{id}/track`` → :func:`app.workflows.tracking.track_source`,
* ``POST /sources/{id}/propagate`` → :func:`app.workflows.propagate.propagate` with the
  context (its SAM2.1 video propagator, else the GrabCut fallback and a ``warning``),
* ``GET /sources/{id}/tracks`` → ``Registry.list_tracks``,
* ``POST /tracks/{id}/merge|split|relabel|approve`` and ``DELETE /tracks/{id}`` → the
  ``Registry`` track edits (``registry.track_edits``); ``edited_by`` is the body's field, else
  the authenticated user.

Errors: an unknown source or track id is 404; a merge the two tracks' contents refuse (same
frame in both, different categories or sources) is 409; other bad input is 400 (the
workflow's ``ValueError`` message). Frame numbers are original 0-based ``frame_idx``.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile

from app.api.deps import Ctx, api_user, lookup, saved_file
from app.api.errors import ApiError
from app.api.schemas_video import (
    Editor,
    FramePage,
    MergeIn,
    PropagateIn,
    PropagateOut,
    RelabelIn,
    SplitIn,
    TrackEditOut,
    TrackList,
    TrackOptions,
    TrackRunOut,
    VideoOut,
)
from app.api.sources import public

router = APIRouter(tags=["video"])


@router.post("/videos", response_model=VideoOut, status_code=201)
def add_video(
    ctx: Ctx,
    file: Annotated[UploadFile, File(description="a video file (mp4, mkv, avi, mov, webm, ...)")],
    every: int | None = Form(None, description="keep frames 0, N, 2N, ... (exclusive with fps)"),
    fps: float | None = Form(None, description="keep about F frames per second"),
    scene_change: bool = Form(False, description="keep only frames where the scene changes"),
    max_frames: int | None = Form(None, description="keep at most M frames"),
    project: str | None = Form(None, description="project id stored with the source"),
) -> dict:
    """Registers an uploaded video and stores its sampled frames (``launch.py video add``)."""
    from app.workflows.video import add_video as add

    with saved_file(file, "video", field="file",
                    too_large_fix="trim the video or add it with `launch.py video add`") as (path, _name):
        return add(ctx.registry, path, every=every, fps=fps, scene_change=scene_change, max_frames=max_frames,
                   project=project or None)


@router.get("/sources/{source_id}/frames", response_model=FramePage, tags=["sources"])
def list_frames(ctx: Ctx, source_id: str, limit: int = Query(50, ge=1, le=1000),
                offset: int = Query(0, ge=0)) -> dict:
    """A source's stored frames in frame order, each with its ``object_count``, paginated."""
    from registry.frames import count_frames

    reg = ctx.registry
    lookup(reg.get_source, source_id)
    return {"items": [public(ctx, f) for f in reg.list_frames(source_id, limit=limit, offset=offset)],
            "total": count_frames(reg.connection, source_id), "limit": limit, "offset": offset}


@router.post("/sources/{source_id}/track", response_model=TrackRunOut)
def track(ctx: Ctx, source_id: str, body: TrackOptions | None = None) -> dict:
    """Links the video's objects across frames into tracks (``launch.py track``)."""
    from app.workflows.tracking import track_source

    lookup(ctx.registry.get_source, source_id)
    return track_source(ctx.registry, source_id, **(body or TrackOptions()).model_dump())


@router.post("/sources/{source_id}/propagate", response_model=PropagateOut)
def propagate(ctx: Ctx, source_id: str, body: PropagateIn) -> dict:
    """Follows frame ``from_frame``'s masks through the video (``launch.py propagate``)."""
    from app.workflows.propagate import propagate as run

    lookup(ctx.registry.get_source, source_id)
    return run(ctx, ctx.registry, source_id, body.from_frame, object_ids=body.object_ids,
               max_frames=body.max_frames, backward=body.backward, drift_threshold=body.drift_threshold)


@router.get("/sources/{source_id}/tracks", response_model=TrackList, tags=["tracks"])
def list_tracks(ctx: Ctx, source_id: str) -> dict:
    """A source's tracks by first frame (category, start/end frame, object count)."""
    items = lookup(ctx.registry.list_tracks, source_id)
    return {"items": items, "count": len(items)}


def _editor(request: Request, body: Editor | None) -> str | None:
    return (body.edited_by if body else None) or api_user(request)


def _edit_result(out: dict) -> dict:
    return {k: v for k, v in out.items() if k != "queued"}


@router.post("/tracks/{track_id}/merge", response_model=TrackEditOut, tags=["tracks"])
def merge(ctx: Ctx, request: Request, track_id: str, body: MergeIn) -> dict:
    """Moves ``other_id``'s objects into this track and deletes ``other_id``."""
    reg = ctx.registry
    lookup(reg.get_track, track_id)
    lookup(reg.get_track, body.other_id)
    try:
        return reg.merge_tracks(track_id, body.other_id, edited_by=_editor(request, body), keep=body.keep)
    except ValueError as exc:
        if "edited_by" in str(exc):
            raise
        raise ApiError(409, str(exc)) from exc


@router.post("/tracks/{track_id}/split", response_model=TrackEditOut, tags=["tracks"])
def split(ctx: Ctx, request: Request, track_id: str, body: SplitIn) -> dict:
    """Objects on frames ``>= frame_idx`` go to a new track (``new_track_id``)."""
    lookup(ctx.registry.get_track, track_id)
    return ctx.registry.split_track(track_id, body.frame_idx, edited_by=_editor(request, body))


@router.post("/tracks/{track_id}/relabel", response_model=TrackEditOut, tags=["tracks"])
def relabel(ctx: Ctx, request: Request, track_id: str, body: RelabelIn) -> dict:
    """Sets the category of the track and of all its objects."""
    lookup(ctx.registry.get_track, track_id)
    return _edit_result(ctx.registry.relabel_track(track_id, body.category, edited_by=_editor(request, body)))


@router.post("/tracks/{track_id}/approve", response_model=TrackEditOut, tags=["tracks"])
def approve(ctx: Ctx, request: Request, track_id: str, body: Editor | None = None) -> dict:
    """Approves every object of the track (``validated_by`` = the editor)."""
    lookup(ctx.registry.get_track, track_id)
    return _edit_result(ctx.registry.approve_track(track_id, edited_by=_editor(request, body)))


@router.delete("/tracks/{track_id}", response_model=TrackEditOut, tags=["tracks"])
def delete(ctx: Ctx, track_id: str,
           with_objects: bool = Query(False, description="delete the track's objects too")) -> dict:
    """Deletes the track; its objects stay unless ``with_objects``."""
    lookup(ctx.registry.get_track, track_id)
    return _edit_result(ctx.registry.delete_track(track_id, with_objects=with_objects))
