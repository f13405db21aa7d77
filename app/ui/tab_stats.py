"""Stats tab: counts per category, validation rate, confidence histogram, recent activity."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from app.context import AppContext
from app.ui.common import Shared, ui_errors
from app.workflows import stats as stw


def build(ctx: AppContext, shared: Shared):
    refresh = gr.Button("Refresh", elem_id="stats-refresh")
    summary = gr.Markdown(elem_id="stats-summary")
    with gr.Row():
        per_cat = gr.Dataframe(headers=["category", "objects", "approved"], label="Objects per category",
                               interactive=False, elem_id="stats-categories")
        hist = gr.BarPlot(x="bin", y="count", title="Confidence histogram", x_title="confidence",
                          y_title="objects", elem_id="stats-hist", sort=None)
    recent = gr.Dataframe(label="Recent activity", interactive=False, elem_id="stats-recent")
    with gr.Accordion("Models", open=False):
        models = gr.JSON(label="Model status")

    @ui_errors
    def on_refresh():
        s = stw.collect(ctx.registry)
        md = (f"**{s['objects']}** objects in **{s['sources']}** images · approved {s['approved']} · "
              f"rejected {s['rejected']} · pending {s['pending']} · validation rate "
              f"**{100 * s['validation_rate']:.0f}%**")
        cats = pd.DataFrame(s["categories"], columns=["category", "objects", "approved"])
        h = pd.DataFrame(s["histogram"], columns=["bin", "low", "high", "count"])[["bin", "count"]]
        rec = pd.DataFrame(s["recent"], columns=["object_id", "category", "confidence", "validation_status",
                                                 "validated_by", "updated_at"])
        return md, cats, h, rec, ctx.model_status()

    outs = [summary, per_cat, hist, recent, models]
    refresh.click(on_refresh, None, outs, api_visibility="private")

    @ui_errors
    def api_stats() -> dict:
        """Registry statistics: counts, validation rate, confidence histogram, recent activity."""
        return stw.collect(ctx.registry)

    gr.api(api_stats, api_name="stats")
    return on_refresh, outs
