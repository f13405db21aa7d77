"""``POST /sync/embeddings``: relay pending outbox rows to the vector index now (``Registry.sync_outbox``).

The server relays every 2 s on its own; this is for scripts that search right after writing.
"""
from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import Ctx
from app.api.schemas import SyncOut

router = APIRouter(prefix="/sync", tags=["index"])


@router.post("/embeddings", response_model=SyncOut)
def sync_embeddings(ctx: Ctx) -> dict:
    """``{"synced", "failed", "pending"}`` (and ``writer_pid`` when another process is the index writer)."""
    return ctx.registry.sync_outbox()
