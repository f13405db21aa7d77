"""``/categories``: the class ontology (``Registry`` category methods)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import Ctx
from app.api.errors import ApiError, not_found
from app.api.schemas import CategoryIn, CategoryMergeIn, CategoryOut, CategoryPatch

router = APIRouter(prefix="/categories", tags=["categories"])


def _require(reg: Any, name: str) -> dict:
    cat = reg.get_category(name)
    if cat is None:
        raise not_found(f"unknown category {name!r}; GET /api/v1/categories lists them")
    return {**cat, "object_count": reg.count_objects(category=cat["name"])}


@router.get("", response_model=list[CategoryOut])
def list_categories(ctx: Ctx) -> list[dict]:
    """All categories by name, each with ``object_count``."""
    return ctx.registry.list_categories()


@router.post("", response_model=CategoryOut, status_code=201)
def create_category(ctx: Ctx, body: CategoryIn) -> dict:
    """A new category; 409 when the name or a synonym already names one."""
    reg = ctx.registry
    for n in [body.name, *body.synonyms]:
        if n.strip() and reg.get_category(n) is not None:
            raise ApiError(409, f"category {n!r} already exists; PATCH /api/v1/categories/{n} to change it")
    return reg.create_category(body.name, supercategory=body.supercategory, synonyms=body.synonyms,
                               color=body.color, description=body.description)


@router.get("/{name}", response_model=CategoryOut)
def get_category(ctx: Ctx, name: str) -> dict:
    """A category by name or synonym (case-insensitive)."""
    return _require(ctx.registry, name)


@router.patch("/{name}", response_model=CategoryOut)
def patch_category(ctx: Ctx, name: str, body: CategoryPatch) -> dict:
    """Renames (its objects follow) and/or adds synonyms."""
    reg = ctx.registry
    cat = _require(reg, name)
    if body.name is None and not body.add_synonyms:
        raise ApiError(400, "nothing to change: send name and/or add_synonyms")
    current = cat["name"]
    if body.name is not None:
        current = reg.rename_category(current, body.name)["name"]
    if body.add_synonyms:
        reg.add_synonyms(current, body.add_synonyms)
    return _require(reg, current)


@router.post("/{name}/merge", response_model=CategoryOut)
def merge_category(ctx: Ctx, name: str, body: CategoryMergeIn) -> dict:
    """Moves every object of ``name`` into ``into``; ``name`` becomes a synonym of it."""
    reg = ctx.registry
    _require(reg, name)
    target = _require(reg, body.into)
    reg.merge_categories(name, target["name"])
    return _require(reg, target["name"])
