"""The Gradio Blocks workbench: one module per tab. ``build_app`` never launches.

Launch options that belong to ``launch()`` in Gradio 6 (theme, css, head/js, allowed paths,
upload limit) come from :func:`launch_kwargs`, shared by ``launch.py serve`` and the tests.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from app.context import AppContext
from app.ui import (
    tab_autolabel,
    tab_classify,
    tab_export,
    tab_refine,
    tab_review,
    tab_search,
    tab_stats,
    tab_train,
    tab_video,
)
from app.ui.common import TAB_IDS, Shared

ASSETS = Path(__file__).resolve().parents[2] / "assets"
MAX_FILE_SIZE = "50mb"


def build_app(ctx: AppContext) -> gr.Blocks:
    """Builds the workbench UI around ``ctx`` (registry, model providers, data folder)."""
    shared = Shared()
    with gr.Blocks(title="AgenticLabeling", analytics_enabled=False) as demo:
        gr.HTML("<div class='agl-header'><h1>AgenticLabeling</h1>"
                "<span>auto-label · refine · review · video · search · classify · export · train</span></div>")
        with gr.Tabs(selected="autolabel", elem_id="agl-tabs") as tabs:
            shared.tabs = tabs
            with gr.Tab("Auto-label", id=TAB_IDS["Auto-label"], elem_id="tab-autolabel"):
                tab_autolabel.build(ctx, shared)
            with gr.Tab("Refine", id=TAB_IDS["Refine"], elem_id="tab-refine"):
                tab_refine.build(ctx, shared)
            with gr.Tab("Review", id=TAB_IDS["Review"], elem_id="tab-review"):
                tab_review.build(ctx, shared)
            with gr.Tab("Video", id=TAB_IDS["Video"], elem_id="tab-video"):
                tab_video.build(ctx, shared)
            with gr.Tab("Search", id=TAB_IDS["Search"], elem_id="tab-search") as search_tab:
                tab_search.build(ctx, shared)
            with gr.Tab("Classify", id=TAB_IDS["Classify"], elem_id="tab-classify") as classify_tab:
                tab_classify.build(ctx, shared)
            with gr.Tab("Export", id=TAB_IDS["Export"], elem_id="tab-export") as export_tab:
                export_refresh, export_cats = tab_export.build(ctx, shared)
            with gr.Tab("Train", id=TAB_IDS["Train"], elem_id="tab-train") as train_tab:
                train_refresh, train_outs = tab_train.build(ctx, shared)
            with gr.Tab("Stats", id=TAB_IDS["Stats"], elem_id="tab-stats") as stats_tab:
                stats_refresh, stats_outs = tab_stats.build(ctx, shared)
        # Lists that depend on what other tabs wrote are refreshed when their tab opens.
        stats_tab.select(stats_refresh, None, stats_outs, api_visibility="private")
        export_tab.select(export_refresh, None, export_cats, api_visibility="private")
        train_tab.select(train_refresh, None, train_outs, api_visibility="private")
        for wire in shared.after:  # cross-tab events of tabs built before their targets
            wire()
        refresh_search, search_cats = shared.parts["search"]["refresh"]
        search_tab.select(refresh_search, None, search_cats, api_visibility="private")
        refresh_classify, classify_ins, classify_outs = shared.parts["classify"]["refresh"]
        classify_tab.select(refresh_classify, classify_ins, classify_outs, api_visibility="private",
                            **tab_classify.DOMAIN_EVENTS)
    demo.queue(default_concurrency_limit=4)
    return demo


#: Shown on the login page. Gradio's page reacts only to 200 (in) and 400 (wrong password):
#: while ``app.web_security.LoginThrottle`` answers 429, Login does nothing visible, so the page
#: says so beforehand.
LOGIN_NOTICE = ("After repeated failed logins from one address, logins from it are refused for a while, "
                "longer after each further failure: if Login does nothing, wait a minute and try again.")


def launch_kwargs(ctx: AppContext, *, auth: tuple[str, str] | None = None) -> dict:
    """Keyword arguments for ``demo.launch()``: security defaults plus theme/css/js.

    Files are served only from ``<data>/media``, ``<data>/thumbs`` and ``<data>/exports`` (and
    Gradio's own upload/cache folder); the database, its WAL/SHM and the index folders are
    blocked (:func:`app.web_security.served_paths`). No share link; uploads are capped at
    ``MAX_FILE_SIZE``. ``app.server.create_web_app`` passes the same options to
    ``gr.mount_gradio_app`` (all but ``share``).
    """
    from app.web_security import served_paths

    js = "\n".join((ASSETS / name).read_text(encoding="utf-8") for name in ("shortcuts.js", "video.js", "canvas.js", "canvas_draw.js"))
    allowed, blocked = served_paths(ctx.data_dir)
    return {
        "share": False,
        "allowed_paths": allowed,
        "blocked_paths": blocked,
        "max_file_size": MAX_FILE_SIZE,
        "auth": auth,
        "auth_message": LOGIN_NOTICE if auth else None,
        "theme": gr.themes.Soft(),
        "css": "\n".join((ASSETS / name).read_text(encoding="utf-8") for name in ("app.css", "canvas.css")),
        "head": f"<script>{js}</script>",
        "show_error": False,  # every handler converts its own errors (app.ui.common.ui_errors)
        "footer_links": ["api", "settings"],
    }
