"""The review queue: filtered, ordered pages of objects; approve / reject / relabel / flags.

Objects come from the registry as plain dicts (``bbox_xywh`` absolute pixels ``[x, y, w, h]``).
The queue is a snapshot of ids taken page by page, so approving an object (which removes it
from a "pending" filter) does not shift the user's position under their feet.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.workflows.render import IMAGES, object_crop, render_overlay, save_jpeg, thumb_path

ORDERS = {
    "least confident first": "confidence_asc",
    "most confident first": "confidence_desc",
    "newest first": "created_desc",
    "oldest first": "created_asc",
    "least sure classification first": "classification_confidence_asc",
    "lowest quality score first": "quality_score_asc",
}
#: Active-learning orderings (app.workflows.suggest): an id list the queue pages through, the
#: next page suggested again (seeded with what was reviewed meanwhile) when it runs out.
STRATEGY_PREFIX = "al:"
STRATEGY_ORDERS = {
    "margin (uncertainty)": "al:margin",
    "entropy (uncertainty)": "al:entropy",
    "diversity (k-center on embeddings)": "al:diversity",
    "hybrid (uncertain, then diverse)": "al:hybrid",
}
ALL_ORDERS = {**ORDERS, **STRATEGY_ORDERS}
STATES = ("pending", "approved", "rejected", "all")
ACTIONS = ("approve", "reject", "relabel", "flags")


@dataclass
class ReviewQuery:
    """Filters of the queue (None / "" = any)."""

    category: str | None = None
    project: str | None = None
    status: str | None = "pending"
    order: str = "confidence_asc"

    def filters(self) -> dict:
        st = None if self.status in (None, "", "all") else self.status
        return {"category": self.category or None, "project": self.project or None, "status": st}


@dataclass
class ReviewQueue:
    """A page-wise snapshot of object ids and the current position in it."""

    query: ReviewQuery
    ids: list[str] = field(default_factory=list)
    pos: int = 0
    offset: int = 0  # registry offset of ids[0]
    total: int = 0
    page_size: int = 50

    def current(self) -> str | None:
        return self.ids[self.pos] if 0 <= self.pos < len(self.ids) else None


def load_queue(reg: Any, query: ReviewQuery, *, page_size: int = 50, offset: int = 0) -> ReviewQueue:
    """Loads the first page of the queue (a snapshot of ids)."""
    if query.order not in ALL_ORDERS.values():
        raise ValueError(f"order: expected one of {list(ALL_ORDERS.values())}, got {query.order!r}")
    if query.order.startswith(STRATEGY_PREFIX):
        if query.status != "pending":
            raise ValueError(f"order {query.order[len(STRATEGY_PREFIX):]!r} ranks pending objects: expected "
                             f"state 'pending', got {query.status!r}; set State to pending")
        q = ReviewQueue(query=query, ids=[], pos=0, offset=0, total=reg.count_objects(**query.filters()),
                        page_size=page_size)
        q.ids = _suggested(reg, q, [])
        return q
    f = query.filters()
    rows = reg.list_objects(**f, order=query.order, limit=page_size, offset=offset)
    return ReviewQueue(query=query, ids=[r["object_id"] for r in rows], pos=0, offset=offset,
                       total=reg.count_objects(**f), page_size=page_size)


def step(reg: Any, q: ReviewQueue, delta: int) -> ReviewQueue:
    """Moves by ``delta``; loads the next/previous page at either end."""
    new = q.pos + delta
    if 0 <= new < len(q.ids):
        q.pos = new
        return q
    if new >= len(q.ids) and q.query.order.startswith(STRATEGY_PREFIX):
        fresh = _suggested(reg, q, q.ids)
        if fresh:
            q.ids = q.ids + fresh
            q.pos = min(new, len(q.ids) - 1)
        q.total = reg.count_objects(**q.query.filters())
        return q
    if new >= len(q.ids):
        # Re-query from the registry: with a "pending" filter approved objects have left the
        # queue, so the next unseen objects start where the still-pending ones end.
        seen = set(q.ids)
        f = q.query.filters()
        rows = reg.list_objects(**f, order=q.query.order, limit=q.page_size + len(q.ids), offset=q.offset)
        fresh = [r["object_id"] for r in rows if r["object_id"] not in seen]
        if fresh:
            q.ids = q.ids + fresh[: q.page_size]
            q.pos = min(new, len(q.ids) - 1)
        q.total = reg.count_objects(**f)
        return q
    q.pos = 0
    return q


def _suggested(reg: Any, q: ReviewQueue, shown: list[str]) -> list[str]:
    """The next page of an active-learning queue (never an id already shown)."""
    from app.workflows.suggest import suggest

    res = suggest(reg, n=q.page_size, strategy=q.query.order[len(STRATEGY_PREFIX):], category=q.query.category,
                  project=q.query.project, exclude=shown)
    return res["ids"]


def progress(reg: Any, query: ReviewQuery) -> dict:
    """{"validated", "approved", "rejected", "total"} for the queue's category/project."""
    base = {"category": query.category or None, "project": query.project or None}
    approved = reg.count_objects(**base, status="approved")
    rejected = reg.count_objects(**base, status="rejected")
    total = reg.count_objects(**base)
    return {"validated": approved + rejected, "approved": approved, "rejected": rejected, "total": total}


def progress_line(p: dict) -> str:
    pct = 100.0 * p["validated"] / p["total"] if p["total"] else 0.0
    return (f"Validated {p['validated']} / {p['total']} ({pct:.0f}%) · "
            f"approved {p['approved']} · rejected {p['rejected']}")


def object_views(reg: Any, object_id: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """The object's crop (mask outlined) and the whole image with its mask, plus its dict."""
    obj = reg.get_object(object_id)
    src = reg.get_source(obj["source_id"])
    image = IMAGES.get(str(reg.image_path(obj)))  # a video frame's PNG, else the source file
    x, y, w, h = obj["bbox_xywh"]
    xyxy = (x, y, x + w, y + h)
    mask = reg.get_mask(object_id)
    crop = object_crop(image, xyxy, mask, label=obj["category"])
    whole = render_overlay(image, [xyxy], None if mask is None else mask[None], [obj["category"]],
                           [obj.get("confidence")], numbers=False)
    obj["source_file"] = src.get("file_name") or Path(src["file_path"]).name
    return crop, whole, obj


def thumbnail(reg: Any, obj: dict, data_dir: Path) -> Path:
    """The object's JPEG thumbnail, written once under ``<data>/thumbs`` (keyed by version)."""
    path = thumb_path(data_dir, obj["object_id"], f"{obj.get('updated_at')}|{obj.get('category')}")
    if path.exists():
        return path
    image = IMAGES.get(str(reg.image_path(obj)))  # a video frame's PNG, else the source file
    x, y, w, h = obj["bbox_xywh"]
    crop = object_crop(image, (x, y, x + w, y + h), reg.get_mask(obj["object_id"]), label=obj["category"], max_side=192)
    return save_jpeg(crop, path)


def apply(reg: Any, object_id: str, action: str, *, validated_by: str | None = None, category: str | None = None,
          occluded: bool | None = None, truncated: bool | None = None, difficult: bool | None = None) -> dict:
    """Applies one review action and returns the updated object.

    Args:
        action: "approve", "reject", "relabel" (needs ``category``; a new name creates the
            category and approves the object) or "flags" (only the three flags).
    """
    if action not in ACTIONS:
        raise ValueError(f"action: expected one of {ACTIONS}, got {action!r}")
    flags = {"is_occluded": occluded, "is_truncated": truncated, "is_difficult": difficult}
    if action == "approve":
        return reg.update_object(object_id, status="approved", validated_by=validated_by, **flags)
    if action == "reject":
        return reg.update_object(object_id, status="rejected", validated_by=validated_by, **flags)
    if action == "relabel":
        category = (category or "").strip()
        if not category:
            raise ValueError("relabel: expected a class name, got nothing; pick or type one")
        return reg.update_object(object_id, category=category, status="approved", validated_by=validated_by, **flags)
    return reg.update_object(object_id, **flags)


def bulk_approve(reg: Any, query: ReviewQuery, min_confidence: float, *, validated_by: str | None = None) -> int:
    """Approves every pending object of the queue's category/project with confidence >= threshold."""
    if not 0.0 <= float(min_confidence) <= 1.0:
        raise ValueError(f"min confidence: expected a value in [0, 1], got {min_confidence}")
    ids = [o["object_id"] for o in reg.iter_objects(category=query.category or None, project=query.project or None,
                                                  status="pending", min_confidence=float(min_confidence))]
    if not ids:
        return 0
    for oid in ids:
        reg.update_object(oid, status="approved", validated_by=validated_by)
    return len(ids)
