"""``/runs``: training runs (:mod:`app.workflows.train`) and their evaluation
(:mod:`app.workflows.evaluate`).

``POST /runs`` records the run and trains it in a background thread, as the Train tab does
(:func:`app.workflows.train.shared_training`: the tab's runner, so one run trains at a time
across both, and either can stop it); poll
``GET /runs/{id}`` for its status and epochs. Metrics are fractions in [0, 1].
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from app.api.deps import Ctx, lookup
from app.api.errors import ApiError
from app.api.schemas_ml import EvaluateIn, RunIn, RunStarted, RunStopping, plain

router = APIRouter(prefix="/runs", tags=["training"])


def trainer(request: Request) -> Any:
    """The background runner this API shares with the Train tab (one per AppContext)."""
    from app.workflows.train import shared_training

    return shared_training(request.app.state.ctx)


@router.get("")
def list_runs(ctx: Ctx, limit: int | None = Query(None, ge=1, le=1000)) -> list[dict]:
    """Training runs, newest first (``status`` queued/running/stopped/finished/failed)."""
    return plain(ctx.registry.list_runs(limit=limit))


@router.get("/{run_id}")
def get_run(ctx: Ctx, run_id: str, request: Request) -> dict:
    """A run with its ``epochs`` (losses and validation metrics, in epoch order), ``training``
    (whether it is the run training in this server now) and ``log`` (the runner's latest lines
    for the current or last run started in this server, else ``[]``)."""
    run = lookup(ctx.registry.get_run, run_id)
    job = trainer(request)
    mine = job.run_id == run_id
    return plain({**run, "epochs": ctx.registry.run_epochs(run_id), "training": mine and job.running,
                  "log": list(job.lines) if mine else []})


@router.post("", status_code=202, response_model=RunStarted)
def start_run(ctx: Ctx, body: RunIn, request: Request) -> dict:
    """Records a run and starts training it in the background → ``{"run_id", "status"}``.
    409 while another run (started here or in the Train tab) is training; 400 for a bad model/dataset/number."""
    from app.workflows.train import TrainRequest

    job = trainer(request)
    if job.running:
        raise ApiError(409, f"run {job.run_id} is still training; POST /api/v1/runs/{job.run_id}/stop first "
                            "or wait for it to finish")
    req = TrainRequest(dataset=body.dataset, model=body.model, epochs=body.epochs, imgsz=body.imgsz,
                       batch=body.batch, device=body.device, workers=0, version=body.version, extra=body.extra)
    try:
        run_id = job.start(ctx.registry, ctx.data_dir, req)
    except RuntimeError as exc:  # lost a race with another start
        raise ApiError(409, str(exc)) from exc
    return {"run_id": run_id, "status": ctx.registry.get_run(run_id)["status"]}


@router.post("/{run_id}/stop", response_model=RunStopping)
def stop_run(ctx: Ctx, run_id: str, request: Request) -> dict:
    """Asks the run to stop after the epoch in progress (it ends ``stopped`` with its best
    weights so far) → ``{"run_id", "stopping": true}``; 409 when it is not training here."""
    run = lookup(ctx.registry.get_run, run_id)
    job = trainer(request)
    if not (job.running and job.run_id == run_id) or not job.stop():
        raise ApiError(409, f"run {run_id} is not training in this server (status {run['status']}); "
                            "only a run started with POST /api/v1/runs can be stopped here")
    return {"run_id": run_id, "stopping": True}


@router.post("/{run_id}/evaluate")
def evaluate_run(ctx: Ctx, run_id: str, request: Request, body: EvaluateIn | None = None) -> dict:
    """COCO evaluation of the run's best weights on ``split`` → ``{"run_id", "split", "images",
    "bbox", "segm" (segment runs), "confusion_matrix", "files"}`` (files written under
    ``<data>/runs/<id>/eval/``). 409 while the run trains here (its ``best.pt`` is rewritten
    after every better epoch), as the Train tab refuses."""
    from app.workflows.evaluate import evaluate_run as run

    lookup(ctx.registry.get_run, run_id)
    job = trainer(request)
    if job.running and job.run_id == run_id:
        raise ApiError(409, f"run {run_id} is still training: POST /api/v1/runs/{run_id}/stop or wait for it "
                            "to finish, then evaluate")
    body = body or EvaluateIn()
    return plain(run(ctx.registry, ctx.data_dir, run_id, split=body.split, conf=body.conf))
