"""``/suggest`` and ``/evaluate/auto-labels``: active learning (:mod:`app.workflows.suggest`)
and the auto-label evaluation (:mod:`app.workflows.autolabel_eval`)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import Ctx
from app.api.schemas_ml import plain

router = APIRouter(tags=["active learning"])


@router.get("/suggest")
def suggest(ctx: Ctx, n: int = Query(20, ge=1, le=10_000), strategy: str = "least-confident",
            category: str | None = None, project: str | None = None, seed: int = 0,
            exclude: Annotated[list[str] | None, Query(description="ids never suggested (e.g. already shown)")] = None,
            ) -> dict:
    """The ``n`` pending objects to review first, in review order. ``strategy``: least-confident,
    margin, entropy, diversity, hybrid, random → ``{"strategy", "n", "ids", "scores", "items"
    (the objects, same order), "candidates", "pool", "without_embedding", "reviewed_seeds"}``."""
    from app.workflows.suggest import suggest as run

    reg = ctx.registry
    out = run(reg, n=n, strategy=strategy, category=category, project=project, seed=seed, exclude=exclude or ())
    by_id = {o["object_id"]: o for o in reg.get_objects(out["ids"])}
    return plain({**out, "items": [by_id[i] for i in out["ids"] if i in by_id]})


@router.get("/evaluate/auto-labels")
def evaluate_auto_labels(ctx: Ctx, detection_model: str | None = None, project: str | None = None,
                         iou_thr: float = Query(0.5, gt=0, le=1)) -> dict:
    """Scores the detector's reviewed proposals against the validated objects: per-class and
    overall TP/FP/FN, precision, recall, F1, macro F1, confidence AUROC, thresholds, outcomes."""
    from app.workflows.autolabel_eval import evaluate_auto_labels as run

    return plain(run(ctx.registry, detection_model=detection_model, project=project, iou_thr=iou_thr))
