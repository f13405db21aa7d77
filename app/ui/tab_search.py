"""Search tab: query by an uploaded image (whole, or a crop drawn with two clicks) or by an
object id; a paginated JPEG gallery of the top-k similar objects; open a result in Review or
Refine; give several results a class in one action. A collapsed "Ranking" accordion sets
two-stage re-ranking and metadata fusion (docs/search.md); a table shows each result's stage,
score and score components."""
from __future__ import annotations

import gradio as gr
import numpy as np

from app.context import AppContext, is_weights_missing
from app.ui.common import Shared, errors_in_status, ui_errors
from app.workflows import review as rv
from app.workflows import search as sw

PAGE = 24
GET_WEIGHTS = "`python launch.py models download` (or `models import DIR` offline)"
RANKING_HELP = (
    "**Re-rank** takes k × m nearest candidates and re-scores each exactly on its stored vector (0 = off). "
    "**Fusion** re-orders those candidates by score = w·similarity + w·[same category] + w·confidence + "
    "w·[validated]; e.g. a *validated* weight of 0.2 lifts a validated object above others up to 0.2 "
    "more similar. Weights are ≥ 0 and not normalised; 1, 0, 0, 0 is plain similarity. With fusion and "
    "re-rank 0, k × 4 candidates are re-ordered.")


def embedder_available(ctx: AppContext) -> bool:
    """Whether image-embedder weights are there, from the context's model status.

    Production contexts report ``status["embedder"]["weights_present"]`` (nothing is loaded);
    a context without that status (tests, scripts) asks its provider, which raises
    WeightsMissingError / RuntimeError when there is no embedder.
    """
    if ctx.embedder_provider is None:
        return False
    status = ctx.model_status()
    if isinstance(status.get("embedder"), dict) and "weights_present" in status["embedder"]:
        return bool(status["embedder"]["weights_present"])
    try:
        ctx.embedder()
    except Exception:
        return False
    return True


def search_notice(available: bool) -> str:
    """The note at the top of the tab: what works with the weights that are installed."""
    if available:
        return ("Search **by image** (upload, or click two corners for a crop) or **by object id** "
                "(its stored embedding). A typed object id is used first: clear it to search by the image.")
    return ("**No image-embedder weights are installed.** Search **by object id** works: it uses the "
            "embeddings stored when objects were saved. Search **by image** needs the weights: get them with "
            f"{GET_WEIGHTS}.")


def pick_query(img, oid: str) -> str:
    """Which query a search runs on: "object" (a typed id), "image" or "none".

    A typed object id wins over a loaded image: typing an id is a deliberate, recent act,
    while a query image often stays loaded from an earlier search. The status line then says
    the image was not used.
    """
    if (oid or "").strip():
        return "object"
    return "image" if img is not None else "none"


def _new_state() -> dict:
    return {"hits": [], "page": 0, "selected": None, "corner": None, "crop": None}


def build(ctx: AppContext, shared: Shared) -> None:
    state = gr.State(_new_state())  # deep-copied per browser session
    notice = gr.Markdown(search_notice(embedder_available(ctx)), elem_id="search-notice")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            query = gr.Image(label="Query image (click two corners to search a crop)", type="numpy",
                             sources=["upload", "clipboard"], height=260, elem_id="search-query")
            clear_crop = gr.Button("Use the whole image", size="sm")
            object_id = gr.Textbox(label="…or an object id", placeholder="obj_…", elem_id="search-object-id")
            f_category = gr.Dropdown([""], value="", label="Category", allow_custom_value=True)
            f_min_conf = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Min confidence")
            f_validated = gr.Checkbox(label="Validated only", value=False)
            k = gr.Slider(1, 200, value=48, step=1, label="Top k")
            with gr.Accordion("Ranking", open=False, elem_id="search-ranking-options"):
                gr.Markdown(RANKING_HELP)
                rerank = gr.Slider(0, 16, value=0, step=1, label="re-rank exactly (×m candidates)",
                                   elem_id="search-rerank")
                w_sim = gr.Number(1.0, minimum=0, step=0.05, label="weight: similarity", elem_id="search-w-similarity")
                with gr.Row():
                    w_cat = gr.Number(0.0, minimum=0, step=0.05, label="weight: same category as",
                                      elem_id="search-w-category")
                    fusion_cat = gr.Dropdown([""], value="", label="favoured category", allow_custom_value=True,
                                             elem_id="search-fusion-category")
                w_conf = gr.Number(0.0, minimum=0, step=0.05, label="weight: confidence", elem_id="search-w-confidence")
                w_val = gr.Number(0.0, minimum=0, step=0.05, label="weight: validated", elem_id="search-w-validated")
            go = gr.Button("Search", variant="primary", elem_id="search-run")
            status = gr.Markdown(elem_id="search-status")
        with gr.Column(scale=2):
            gallery = gr.Gallery(label="Similar objects", format="jpeg", columns=6, height="auto", object_fit="contain",
                                 allow_preview=False, elem_id="search-gallery")
            with gr.Row():
                prev_page = gr.Button("← Page", size="sm")
                page_md = gr.Markdown("", elem_id="search-page")
                next_page = gr.Button("Page →", size="sm")
            selected_md = gr.Markdown("Click a result to select it.", elem_id="search-selected")
            table = gr.Dataframe(headers=sw.RANKING_HEADERS, value=None, interactive=False, label="Ranking of this page",
                                 wrap=True, column_widths=["4%", "24%", "9%", "8%"] + ["9%"] * 6,
                                 elem_id="search-ranking")
            with gr.Row():
                to_review = gr.Button("Open in Review", elem_id="search-to-review")
                to_refine = gr.Button("Open in Refine", elem_id="search-to-refine")
            pick = gr.CheckboxGroup(label="Select results", choices=[], elem_id="search-pick")
            with gr.Row():
                assign_cls = gr.Textbox(label="Class for the selected results", elem_id="search-assign-class")
                assign = gr.Button("Assign class", elem_id="search-assign")

    def render_page(st: dict):
        hits = st["hits"]
        n_pages = max(1, -(-len(hits) // PAGE))
        st["page"] = min(max(0, st["page"]), n_pages - 1)
        chunk = hits[st["page"] * PAGE:(st["page"] + 1) * PAGE]
        items = [(str(rv.thumbnail(ctx.registry, h, ctx.data_dir)), sw.caption(h)) for h in chunk]
        choices = [(sw.caption(h), h["object_id"]) for h in chunk]
        return items, f"page {st['page'] + 1} / {n_pages} · {len(hits)} results", gr.update(choices=choices, value=[])

    def filters(cat, mc, val):
        return sw.SearchFilters(category=cat or None, min_confidence=mc or None, validated_only=bool(val))

    def page_table(st: dict):
        start = st["page"] * PAGE
        return sw.ranking_rows(st["hits"][start:start + PAGE], start=start + 1)

    @ui_errors
    def on_search(img, oid, cat, mc, val, kk, st, rr=0, ws=1.0, wc=0.0, fc="", wco=0.0, wv=0.0):
        st = {**_new_state(), "crop": st.get("crop")}
        f = filters(cat, mc, val)
        num = [1.0 if ws is None else ws, wc or 0.0, wco or 0.0, wv or 0.0]
        ranking = sw.SearchRanking(int(rr or 0), *num[:2], fusion_category=fc or None, confidence=num[2],
                                   validated=num[3])
        ranking.kwargs()  # bad options fail before any model runs
        oid = (oid or "").strip()
        which = pick_query(img, oid)
        if which == "image":
            try:
                emb = ctx.embedder()
            except Exception as exc:
                if is_weights_missing(exc) or isinstance(exc, RuntimeError):
                    raise gr.Error("Searching by image needs image-embedder weights, which are not installed. "
                                   "Search by object id instead: it uses the embeddings stored with each object. "
                                   f"Get the weights with {GET_WEIGHTS}.") from exc
                raise
            st["hits"] = sw.search_by_image(ctx.registry, emb, np.asarray(img), xyxy=st["crop"], k=kk, filters=f,
                                            segment=sw.context_segment(ctx), ranking=ranking)
            what = "the crop" if st["crop"] else "the image"
        elif which == "object":
            try:
                st["hits"] = sw.search_by_object(ctx.registry, oid, k=kk, filters=f, ranking=ranking)
            except ValueError as exc:
                if "no stored embedding" in str(exc) and not embedder_available(ctx):
                    raise gr.Error(f"Object {oid} has no stored embedding (it was saved without embedder "
                                   "weights), and searching by image needs those weights too: get them with "
                                   f"{GET_WEIGHTS}; objects saved from then on can be searched.") from exc
                raise
            what = f"`{oid}`"
        else:
            raise gr.Error("Upload a query image or type an object id first.")
        items, pg, choices = render_page(st)
        msg = f"{len(st['hits'])} result(s) similar to {what}." if st["hits"] else f"Nothing similar to {what} (check the filters)."
        if which == "object" and img is not None:
            msg += " Searched by the object id; the query image was not used (clear the id to search by the image)."
        return items, pg, choices, msg, "Click a result to select it.", st

    search_outs = errors_in_status(on_search, [gallery, page_md, pick, status, selected_md, state], status)
    search_ins = [query, object_id, f_category, f_min_conf, f_validated, k, state,
                  rerank, w_sim, w_cat, fusion_cat, w_conf, w_val]
    go.click(on_search, search_ins, search_outs, api_name="search_image").then(
        page_table, [state], [table], api_visibility="private")
    object_id.submit(on_search, search_ins, search_outs, api_visibility="private").then(
        page_table, [state], [table], api_visibility="private")

    @ui_errors
    def on_query_click(img, st, evt: gr.SelectData):
        if img is None:
            return gr.update(), st
        x, y = float(evt.index[0]), float(evt.index[1])
        if st.get("corner") is None:
            st["corner"], st["crop"] = (x, y), None
            return gr.update(), st
        (ax, ay), st["corner"] = st["corner"], None
        x0, x1 = sorted((ax, x))
        y0, y1 = sorted((ay, y))
        if x1 - x0 < 4 or y1 - y0 < 4:
            raise gr.Error("The crop is too small: click two opposite corners.")
        st["crop"] = (x0, y0, x1, y1)
        gr.Info(f"Searching the crop {int(x1 - x0)}×{int(y1 - y0)} px: press Search.")
        return gr.update(), st

    query.select(on_query_click, [query, state], errors_in_status(on_query_click, [status, state], status),
                 api_visibility="private")

    @ui_errors
    def on_clear(st):
        st["crop"], st["corner"] = None, None
        return "Searching the whole image.", st

    clear_crop.click(on_clear, [state], [status, state], api_visibility="private")
    query.clear(on_clear, [state], [status, state], api_visibility="private")

    @ui_errors
    def on_page(st, delta):
        st["page"] += delta
        return (*render_page(st), st)

    for btn, delta in ((prev_page, -1), (next_page, +1)):
        btn.click(lambda st, d=delta: on_page(st, d), [state], [gallery, page_md, pick, state],
                  api_visibility="private").then(page_table, [state], [table], api_visibility="private")

    @ui_errors
    def on_select(st, evt: gr.SelectData):
        i = st["page"] * PAGE + int(evt.index)
        if not 0 <= i < len(st["hits"]):
            return "Click a result to select it.", st
        h = st["hits"][i]
        st["selected"] = h["object_id"]
        return f"Selected **{h['object_id']}** · {h['category']} · similarity {h.get('similarity', 0):.3f}", st

    gallery.select(on_select, [state], [selected_md, state], api_visibility="private")

    @ui_errors
    def on_assign(ids, cls, st, request: gr.Request):
        n = sw.assign_class(ctx.registry, list(ids or []), cls, validated_by=ctx.user_name(request, None))
        sel = set(ids)
        for h in st["hits"]:
            if h["object_id"] in sel:
                h.update(ctx.registry.get_object(h["object_id"]))
        gr.Info(f"{n} object(s) are now '{cls.strip()}'.")
        items, pg, choices = render_page(st)
        return items, pg, choices, f"Assigned **{cls.strip()}** to {n} object(s).", st

    assign.click(on_assign, [pick, assign_cls, state],
                 errors_in_status(on_assign, [gallery, page_md, pick, status, state], status), api_name="assign_class")

    @ui_errors
    def api_search(object_id: str, k: int = 10, category: str = "", min_confidence: float = 0.0,
                   validated_only: bool = False) -> list[dict]:
        """Objects similar to a stored object (its stored embedding), best first.

        Returns a list of {"object_id", "category", "confidence", "similarity", "bbox_xywh", "source_id"}.
        """
        hits = sw.search_by_object(ctx.registry, object_id, k=k,
                                   filters=sw.SearchFilters(category or None, min_confidence or None, validated_only))
        keys = ("object_id", "category", "confidence", "similarity", "bbox_xywh", "source_id", "validation_status")
        return [{key: h.get(key) for key in keys} for h in hits]

    gr.api(api_search, api_name="search")

    # Cross-tab opening: selection -> Review / Refine, switching tabs.
    review = shared.parts.get("review")
    refine = shared.parts.get("refine")

    def selected(st) -> str:
        if not st.get("selected"):
            raise gr.Error("Click a result in the gallery first.")
        return st["selected"]

    if review:
        @ui_errors
        def on_to_review(st):
            return (*review["open"](selected(st)), gr.Tabs(selected="review"))

        to_review.click(on_to_review, [state], [*review["view"], shared.tabs], api_visibility="private")
    if refine:
        @ui_errors
        def on_to_refine(st):
            oid = selected(st)
            return (oid, *refine["open"](oid), gr.Tabs(selected="refine"))

        to_refine.click(on_to_refine, [state], [refine["object_id"], *refine["outs"], shared.tabs],
                        api_visibility="private")

    def refresh_categories():
        names = [""] + [c["name"] for c in ctx.registry.list_categories()]
        return gr.update(choices=names), search_notice(embedder_available(ctx)), gr.update(choices=names)

    shared.parts["search"] = {"refresh": (refresh_categories, [f_category, notice, fusion_cat])}
