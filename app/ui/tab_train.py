"""Train tab: pick a dataset version and a model, start training (a background thread), watch
the per-epoch chart and the log, stop; the list of runs with their best metrics; evaluate a run
and see its mAP table, confusion matrix and PR curves.

The chart and the log follow the registry (``run_epochs``) and the training thread's log,
polled by a ``gr.Timer`` while a run trains. The workflow is :mod:`app.workflows.train`
(recording, stopping) and :mod:`app.workflows.evaluate` (COCOeval).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from app.context import AppContext
from app.ui.common import Shared, errors_in_status, ui_errors
from app.workflows import train as train_wf

MODELS = ["yolo11n.yaml", "yolo11n-seg.yaml", "yolo11n.pt", "yolo11n-seg.pt"]
RUN_HEADERS = ["run", "status", "model", "task", "dataset", "epochs", "mAP50", "mAP50-95", "mask mAP50", "started"]
CHART_METRICS = {"box_loss": "box loss", "box_map50": "mAP50", "box_map50_95": "mAP50-95", "mask_map50": "mask mAP50"}
EVAL_HEADERS = ["type", "class", "AP", "AP50", "objects"]


def dataset_choices(reg: Any) -> list[tuple[str, str]]:
    """(label, dataset id) of every dataset version, newest first."""
    from registry.dataset_reads import list_datasets

    return [(f"{d['name']} v{d['version']} · {d['object_count']} objects ({d['dataset_id']})", d["dataset_id"])
            for d in list_datasets(reg)]


def _num(v: Any) -> str:
    return "" if v is None else f"{float(v):.3f}"


def runs_table(reg: Any) -> pd.DataFrame:
    """One row per run, newest first, with its best metrics."""
    rows = []
    for r in reg.list_runs():
        best = r.get("best_metrics") or {}
        rows.append([r["run_id"], r["status"], r["model"], r["task"], f"{r['dataset_name']} v{r['dataset_version']}",
                     len(reg.run_epochs(r["run_id"])), _num(best.get("box_map50")), _num(best.get("box_map50_95")),
                     _num(best.get("mask_map50")), r.get("started_at") or ""])
    return pd.DataFrame(rows, columns=RUN_HEADERS)


def chart_frame(reg: Any, run_id: str | None) -> pd.DataFrame | None:
    """Long-format per-epoch values (``epoch``, ``metric``, ``value``) for the line plot; None
    before the first epoch (an empty frame would fix the plot's colour legend to no series)."""
    rows = []
    for e in reg.run_epochs(run_id) if run_id else []:
        for key, label in CHART_METRICS.items():
            if e.get(key) is not None:
                rows.append({"epoch": int(e["epoch"]), "metric": label, "value": float(e[key])})
    if not rows:
        return None
    return pd.DataFrame({"epoch": pd.Series([r["epoch"] for r in rows], dtype="int64"),
                         "metric": pd.Series([r["metric"] for r in rows], dtype="object"),
                         "value": pd.Series([r["value"] for r in rows], dtype="float64")})


def eval_view(report: dict | None) -> tuple[pd.DataFrame, str, str | None, str | None]:
    """(per-class table, summary markdown, confusion-matrix PNG, PR-curves PNG) of an evaluation."""
    if not report:
        return pd.DataFrame([], columns=EVAL_HEADERS), "", None, None
    rows, parts = [], []
    for t in ("bbox", "segm"):
        if t in report:
            parts.append(f"**{t}** mAP {report[t]['map']:.3f} · mAP50 {report[t]['map50']:.3f}")
            for name, c in report[t]["per_class"].items():
                rows.append([t, name, _num(c["ap"]), _num(c["ap50"]), c["gt"]])
    files = report.get("files") or {}
    pr = files.get("pr_curves_segm") or files.get("pr_curves_bbox")
    summary = f"{report['run_id']} on **{report['split']}** ({report['images']} images): " + " · ".join(parts)
    return pd.DataFrame(rows, columns=EVAL_HEADERS), summary, files.get("confusion_matrix"), pr


def build(ctx: AppContext, shared: Shared):
    job = train_wf.shared_training(ctx)  # the REST API's /runs uses the same runner
    gr.Markdown("Train a YOLO model on a dataset version (build one in **Export**), watch it learn, "
                "stop when it is good enough, evaluate it, then pick it as the detector in **Auto-label**.")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            dataset = gr.Dropdown([], label="Dataset version", elem_id="train-dataset", interactive=True)
            model = gr.Dropdown(MODELS, value=MODELS[0], allow_custom_value=True, label="Model",
                                info=".yaml = from scratch; .pt = a local checkpoint (in <data>/models/yolo)",
                                elem_id="train-model")
            with gr.Row():
                epochs = gr.Number(value=10, precision=0, minimum=1, label="Epochs", elem_id="train-epochs")
                imgsz = gr.Number(value=640, precision=0, minimum=32, step=32, label="Image size", elem_id="train-imgsz")
                batch = gr.Number(value=8, precision=0, minimum=1, label="Batch", elem_id="train-batch")
            device = gr.Radio(["cpu", "cuda"], value="cpu", label="Device", elem_id="train-device")
            with gr.Row():
                start = gr.Button("Start training", variant="primary", elem_id="train-start")
                stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
            status = gr.Markdown(elem_id="train-status")
        with gr.Column(scale=2):
            chart = gr.LinePlot(None, x="epoch", y="value", color="metric",
                                title="per-epoch metrics", label="Training", elem_id="train-chart", height=320)
            log = gr.Textbox(label="Log", lines=8, max_lines=8, interactive=False, autoscroll=True, elem_id="train-log")
    runs = gr.Dataframe(headers=RUN_HEADERS, label="Runs", interactive=False, elem_id="train-runs", wrap=True)
    with gr.Row():
        run_pick = gr.Dropdown([], label="Run", interactive=True, elem_id="train-run-pick", scale=2)
        split = gr.Radio(["test", "val", "train"], value="test", label="Split", elem_id="train-split", scale=1)
        evaluate = gr.Button("Evaluate", elem_id="train-evaluate", scale=1)
    eval_summary = gr.Markdown(elem_id="train-eval-summary")
    eval_table = gr.Dataframe(headers=EVAL_HEADERS, label="AP per class", interactive=False, elem_id="train-eval-table")
    with gr.Row():
        cm_img = gr.Image(label="Confusion matrix", interactive=False, elem_id="train-confusion", height=360)
        pr_img = gr.Image(label="Precision-recall", interactive=False, elem_id="train-pr", height=360)
    timer = gr.Timer(1.0, active=False)

    def run_ids() -> list[str]:
        return [r["run_id"] for r in ctx.registry.list_runs()]

    def live(run_id: str | None):
        """(chart, log, runs, status line) for the run being watched."""
        line = ""
        if job.run_id and job.run_id == run_id:
            row = ctx.registry.get_run(run_id)
            n = len(ctx.registry.run_epochs(run_id))
            line = f"`{run_id}` **{row['status']}** · epoch {n}/{row['params'].get('epochs')}"
            if row.get("error"):
                line += f" · {row['error']}"
        return chart_frame(ctx.registry, run_id), "\n".join(job.lines), runs_table(ctx.registry), line

    @ui_errors
    def on_refresh():
        ids = run_ids()
        return (gr.update(choices=dataset_choices(ctx.registry)), runs_table(ctx.registry),
                gr.update(choices=ids, value=job.run_id or (ids[0] if ids else None)))

    @ui_errors
    def on_start(ds, model_v, epochs_v, imgsz_v, batch_v, device_v):
        if not ds:
            raise gr.Error("Pick a dataset version first (build one in the Export tab).")
        req = train_wf.TrainRequest(dataset=ds, model=str(model_v or "").strip(), epochs=int(epochs_v or 1),
                                    imgsz=int(imgsz_v or 640), batch=int(batch_v or 1), device=str(device_v or "cpu"))
        run_id = job.start(ctx.registry, ctx.data_dir, req)
        chart_v, log_v, runs_v, line = live(run_id)
        return (gr.update(choices=run_ids(), value=run_id), chart_v, log_v, runs_v,
                line or f"`{run_id}` started", gr.Timer(active=True))

    start.click(on_start, [dataset, model, epochs, imgsz, batch, device],
                errors_in_status(on_start, [run_pick, chart, log, runs, status, timer], status),
                api_name="train_start", concurrency_id="train")

    @ui_errors
    def on_tick(run_id):
        chart_v, log_v, runs_v, line = live(run_id or job.run_id)
        return chart_v, log_v, runs_v, line, gr.Timer(active=job.running)

    timer.tick(on_tick, [run_pick], [chart, log, runs, status, timer], api_visibility="private")

    @ui_errors
    def on_stop():
        if not job.stop():
            return "No training is running."
        return f"`{job.run_id}`: stop requested; the current epoch is validated and saved (best weights kept)."

    stop.click(on_stop, None, errors_in_status(on_stop, [status], status), api_name="train_stop")

    @ui_errors
    def on_pick(run_id):
        chart_v, log_v, runs_v, line = live(run_id)
        row = ctx.registry.get_run(run_id) if run_id else None
        saved = ((row or {}).get("metadata") or {}).get("eval") or {}
        report = None
        for sp in ("test", "val", "train"):
            metrics = Path((saved.get(sp) or {}).get("files", {}).get("metrics", ""))
            if metrics.is_file():
                import json

                report = json.loads(metrics.read_text(encoding="utf-8"))
                break
        return (chart_v, *eval_view(report))

    run_pick.input(on_pick, [run_pick], [chart, eval_table, eval_summary, cm_img, pr_img], api_visibility="private")

    @ui_errors
    def on_evaluate(run_id, split_v, progress=gr.Progress()):  # noqa: B008 - Gradio injects progress via this default
        from app.workflows.evaluate import evaluate_run

        if not run_id:
            raise gr.Error("Pick a run to evaluate first.")
        if job.running and job.run_id == run_id:
            raise gr.Error(f"{run_id} is still training: stop it or wait for it to finish, then evaluate.")
        progress(0.1, desc=f"predicting the {split_v} split")
        report = evaluate_run(ctx.registry, ctx.data_dir, run_id, split=split_v)
        return (*eval_view(report), runs_table(ctx.registry))

    evaluate.click(on_evaluate, [run_pick, split],
                   errors_in_status(on_evaluate, [eval_table, eval_summary, cm_img, pr_img, runs], eval_summary),
                   api_name="train_evaluate", concurrency_id="train")

    return on_refresh, [dataset, runs, run_pick]
