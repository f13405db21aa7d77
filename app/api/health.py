"""``GET /api/v1/health``: is the server up (open even when auth is on; it reveals counts only)."""
from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.deps import Ctx
from app.api.schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut)
def health(ctx: Ctx, request: Request) -> dict:
    reg = ctx.registry
    return {"status": "ok", "api": "v1", "sources": reg.count_sources(), "objects": reg.count_objects(),
            "auth": bool(request.app.state.auth.enabled)}
