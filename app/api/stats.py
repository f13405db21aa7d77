"""``/stats``: counts per category, validation rate, confidence histogram (``app.workflows.stats``)."""
from __future__ import annotations

from fastapi import APIRouter, Query

from app.api.deps import Ctx

router = APIRouter(prefix="/stats", tags=["stats"])


@router.get("")
def stats(ctx: Ctx, bins: int = Query(10, ge=1, le=100), recent: int = Query(15, ge=0, le=500)) -> dict:
    """``{"sources", "objects", "approved", "rejected", "pending", "validation_rate", "categories",
    "histogram", "recent"}`` (see ``app.workflows.stats.collect``)."""
    from app.workflows.stats import collect

    return collect(ctx.registry, bins=bins, recent=recent)
