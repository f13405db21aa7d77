"""Export tab: build a dataset (filter + split), preview counts per split and class, export
YOLO / COCO (detect or segment) as a folder on disk and a zip to download."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from app.context import AppContext
from app.ui.common import Shared, ui_errors
from app.workflows import export as ex


def build(ctx: AppContext, shared: Shared):
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            name = gr.Textbox(label="Dataset name", value="dataset", elem_id="export-name")
            categories = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True,
                                     label="Categories (empty = all)", elem_id="export-categories")
            min_conf = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Min confidence")
            validated = gr.Checkbox(label="Validated (approved) only", value=False, elem_id="export-validated")
            project = gr.Textbox(label="Project", placeholder="(any)")
            with gr.Row():
                train = gr.Number(value=0.8, label="train", minimum=0, maximum=1, step=0.05)
                val = gr.Number(value=0.1, label="val", minimum=0, maximum=1, step=0.05)
                test = gr.Number(value=0.1, label="test", minimum=0, maximum=1, step=0.05)
            seed = gr.Number(value=0, label="Seed", precision=0)
            preview_btn = gr.Button("Preview split", elem_id="export-preview")
        with gr.Column(scale=1, min_width=300):
            counts = gr.Dataframe(label="Objects per split and class", interactive=False, elem_id="export-counts")
            summary = gr.Markdown(elem_id="export-summary")
            fmt = gr.Radio(list(ex.FORMATS), value="YOLO detect", label="Format", elem_id="export-format")
            export_btn = gr.Button("Export", variant="primary", elem_id="export-run")
            zip_file = gr.File(label="Download", interactive=False, elem_id="export-file")
            folder = gr.Markdown(elem_id="export-folder")

    spec_inputs = [name, categories, min_conf, validated, project, train, val, test, seed]

    def spec_of(n, cats, mc, v, p, tr, va, te, sd) -> ex.ExportSpec:
        return ex.ExportSpec(name=n, categories=list(cats or []), min_confidence=mc or None, validated_only=bool(v),
                             project=p or None, split=(float(tr or 0), float(va or 0), float(te or 0)),
                             seed=int(sd or 0))

    def table(c: dict) -> pd.DataFrame:
        rows = [{"split": s, "class": k, "objects": n} for s, per in c["per_split_class"].items() for k, n in per.items()]
        return pd.DataFrame(rows, columns=["split", "class", "objects"])

    @ui_errors
    def on_preview(*args):
        c = ex.preview(ctx.registry, spec_of(*args))
        return table(c), ex.summary_line(c)

    preview_btn.click(on_preview, spec_inputs, [counts, summary], api_name="export_preview")

    @ui_errors
    def on_export(*args, progress=gr.Progress()):  # noqa: B008 - Gradio injects progress via this default
        *spec_args, fmt_v = args
        progress(0.1, desc="building the dataset")
        res = ex.export(ctx.registry, ctx.data_dir, spec_of(*spec_args), fmt_v)
        progress(1.0, desc="done")
        gr.Info(f"Exported {res['images']} image(s) as {fmt_v}.")
        return (str(res["zip"]), f"Folder on disk: `{res['folder']}`", table(res["counts"]),
                ex.summary_line(res["counts"]))

    export_btn.click(on_export, [*spec_inputs, fmt], [zip_file, folder, counts, summary], api_name="export",
                     concurrency_id="export", concurrency_limit=1)

    def refresh():
        return gr.update(choices=[c["name"] for c in ctx.registry.list_categories()])

    return refresh, categories
