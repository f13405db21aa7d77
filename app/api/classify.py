"""``/domains`` and ``/classify``: few-shot domain packs and classification, thin adapters over
:mod:`app.workflows.classify` and :mod:`registry.domains`.

An answer (S4 shape): ``top_k`` (``[{"class", "score"}, ...]`` best first), ``s1``, ``s2``,
``margin``, ``verdict`` (a class or ``"unknown"``), ``is_unknown``, ``confidence``, ``tau1``,
``tau2``, ``domain``, ``model`` (``domain:<name>@<version>``), plus ``object_id`` for objects.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter

from app.api.deps import Ctx, lookup
from app.api.errors import ApiError, not_found
from app.api.schemas_ml import ClassAnswers, ClassifyIn, DomainClassifyIn, DomainIn, plain

router = APIRouter(tags=["classification"])


def _require_domain(reg: Any, name: str) -> None:
    from registry import domains

    domains.check_name(name)
    if not domains.domain_dir(reg.data_dir, name).is_dir():
        have = [d["domain"] for d in domains.list_domains(reg.data_dir)]
        raise not_found(f"unknown domain {name!r}; domains here: {have or 'none'} (POST /api/v1/domains builds one)")


@router.get("/domains")
def list_domains(ctx: Ctx) -> list[dict]:
    """Every domain pack by name: ``domain``, ``classes``, ``counts``, ``embedding_model``,
    ``embedding_dim``, ``tau1``, ``tau2``, ``created_at``, ``version`` (or ``error``)."""
    from registry import domains

    return plain(domains.list_domains(ctx.registry.data_dir))


@router.post("/domains", status_code=201)
def create_domain(ctx: Ctx, body: DomainIn) -> dict:
    """Builds and calibrates a domain from the approved objects' stored embeddings; its meta.
    409 when the name exists and ``overwrite`` is false."""
    from app.workflows.classify import build_from_validated
    from registry import domains

    reg = ctx.registry
    domains.check_name(body.name)
    if domains.domain_dir(reg.data_dir, body.name).exists() and not body.overwrite:
        raise ApiError(409, f"domain {body.name!r} already exists; send overwrite=true to rebuild it or "
                            f"DELETE /api/v1/domains/{body.name}")
    meta = build_from_validated(reg, body.name, categories=body.categories, min_coverage=body.min_coverage,
                                tau1=body.tau1, tau2=body.tau2, centre=body.centre, overwrite=body.overwrite)
    return plain(meta)


@router.delete("/domains/{name}")
def delete_domain(ctx: Ctx, name: str) -> dict:
    """Removes a domain pack (stored classifications stay on the objects)."""
    from registry import domains

    _require_domain(ctx.registry, name)
    domains.delete_domain(ctx.registry.data_dir, name)
    return {"deleted": name}


@router.post("/domains/{name}/classify", response_model=ClassAnswers, response_model_by_alias=True)
def classify_with_domain(ctx: Ctx, name: str, body: DomainClassifyIn) -> dict:
    """Answers for stored objects (``object_ids``) or one ``embedding`` (exactly one of them);
    nothing is written. → ``{"items": [answer, ...], "count"}``."""
    from app.workflows.classify import classify_object, classify_vector

    reg = ctx.registry
    _require_domain(reg, name)
    if (body.object_ids is None) == (body.embedding is None):
        raise ValueError("send exactly one of object_ids (stored objects) and embedding (a vector), "
                         f"got {'both' if body.object_ids is not None else 'neither'}")
    if body.embedding is not None:
        vec = np.asarray(body.embedding, np.float32)
        if vec.shape != (int(reg.embedding_dim),) or not np.isfinite(vec).all():
            raise ValueError(f"embedding: expected {reg.embedding_dim} finite numbers ({reg.embedding_version!r}), "
                             f"got {vec.size}")
        items = [classify_vector(reg, name, vec, top_k=body.top_k)]
    else:
        if not body.object_ids:
            raise ValueError("object_ids: expected at least one object id, got an empty list")
        for oid in body.object_ids:
            lookup(reg.get_object, oid)
        items = [classify_object(reg, name, oid, top_k=body.top_k) for oid in body.object_ids]
    return {"items": plain(items), "count": len(items)}


@router.post("/classify")
def classify_registry(ctx: Ctx, body: ClassifyIn) -> dict:
    """Classifies the registry's objects (all, or ``only_pending``) and stores the results;
    ``apply`` sets each class verdict as category of objects not validated. → ``{"domain",
    "model", "classified", "skipped", "no_embedding", "applied", "verdicts", "failed"}``."""
    from app.workflows.classify import classify_registry as run

    _require_domain(ctx.registry, body.domain)
    summary = run(ctx.registry, body.domain, only_pending=body.only_pending, apply=body.apply, force=body.force,
                  top_k=body.top_k, progress=False)
    return plain(summary)
