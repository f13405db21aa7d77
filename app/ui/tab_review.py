"""Review tab: a queue (least-confident first by default) with approve / reject / relabel /
flags, keyboard shortcuts, bulk approve and a progress line."""
from __future__ import annotations

import gradio as gr

from app.context import AppContext
from app.ui.common import Shared, ui_errors
from app.workflows import review as rv

SHORTCUTS = "Keys: <kbd>A</kbd> approve · <kbd>R</kbd> reject · <kbd>N</kbd>/<kbd>→</kbd> next · <kbd>P</kbd>/<kbd>←</kbd> previous"


def _categories(ctx: AppContext) -> list[str]:
    return [c["name"] for c in ctx.registry.list_categories()]


def build(ctx: AppContext, shared: Shared) -> None:
    state = gr.State(None)
    with gr.Row():
        f_category = gr.Dropdown([""] + _categories(ctx), value="", label="Category", allow_custom_value=True,
                                 elem_id="review-filter-category")
        f_project = gr.Textbox(label="Project", placeholder="(any)")
        f_state = gr.Radio(list(rv.STATES), value="pending", label="State", elem_id="review-filter-state")
        f_order = gr.Dropdown(list(rv.ALL_ORDERS), value="least confident first", label="Order",
                              elem_id="review-filter-order")
        load = gr.Button("Load queue", variant="primary", elem_id="review-load")
    progress_md = gr.Markdown(elem_id="review-progress")
    gr.HTML(f"<div class='agl-shortcuts' id='review-shortcuts'>{SHORTCUTS}</div>")
    with gr.Row():
        crop = gr.Image(label="Object", format="jpeg", interactive=False, height=300, elem_id="review-crop")
        whole = gr.Image(label="Whole image", format="jpeg", interactive=False, height=300, elem_id="review-whole")
        with gr.Column(min_width=260):
            info = gr.Markdown("Press **Load queue**.", elem_id="review-info")
            with gr.Row():
                approve = gr.Button("Approve (A)", variant="primary", elem_id="review-approve")
                reject = gr.Button("Reject (R)", variant="stop", elem_id="review-reject")
            with gr.Row():
                prev = gr.Button("← Previous (P)", elem_id="review-prev")
                nxt = gr.Button("Next (N) →", elem_id="review-next")
            with gr.Row():
                occluded = gr.Checkbox(label="occluded")
                truncated = gr.Checkbox(label="truncated")
                difficult = gr.Checkbox(label="difficult")
            save_flags = gr.Button("Save flags", size="sm")
            relabel_to = gr.Dropdown(_categories(ctx), label="Relabel as (type a new name to create it)",
                                     allow_custom_value=True, elem_id="review-relabel-class")
            relabel = gr.Button("Relabel", elem_id="review-relabel")
            reviewer = gr.Textbox(label="Reviewer name", visible=not ctx.auth_enabled, elem_id="review-reviewer")
            to_refine = gr.Button("Open in Refine", size="sm", elem_id="review-to-refine")
    with gr.Accordion("Queue page and bulk approve", open=False):
        page = gr.Gallery(label="This page (click to jump)", format="jpeg", columns=8, height="auto", object_fit="contain",
                          allow_preview=False, elem_id="review-page")
        with gr.Row():
            bulk_thr = gr.Slider(0.0, 1.0, value=0.9, step=0.01, label="Approve every pending object at or above")
            bulk = gr.Button("Bulk approve", elem_id="review-bulk")

    view = [crop, whole, info, occluded, truncated, difficult, relabel_to, progress_md, state]

    def show(q: rv.ReviewQueue | None, note: str = ""):
        if q is None:
            return None, None, "Press **Load queue**.", False, False, False, gr.update(), "", q
        p = rv.progress_line(rv.progress(ctx.registry, q.query))
        oid = q.current()
        if oid is None:
            return (None, None, (note + "\n\n" if note else "") + "**The queue is empty.** Change the filters or label more images.",
                    False, False, False, gr.update(choices=_categories(ctx)), p, q)
        c, w, o = rv.object_views(ctx.registry, oid, ctx.data_dir)
        conf = o.get("confidence")
        text = (f"{note}\n\n" if note else "") + (
            f"**{o['category']}** · confidence {conf:.3f}" if conf is not None else f"**{o['category']}**") + (
            f" · quality {o['quality_score']:.2f}" if o.get("quality_score") is not None else "") + (
            f"\n\n`{oid}` · {q.pos + 1 + q.offset} of {q.total} in queue\n\n"
            f"source: {o['source_file']} · model: {o.get('detection_model') or '-'} · "
            f"state: **{o['validation_status']}**" + (f" by {o['validated_by']}" if o.get("validated_by") else ""))
        return (c, w, text, bool(o.get("is_occluded")), bool(o.get("is_truncated")), bool(o.get("is_difficult")),
                gr.update(choices=_categories(ctx), value=o["category"]), p, q)

    def page_items(q: rv.ReviewQueue | None):
        if q is None:
            return []
        out = []
        for oid in q.ids:
            try:
                o = ctx.registry.get_object(oid)
            except (ValueError, KeyError):
                continue
            out.append((str(rv.thumbnail(ctx.registry, o, ctx.data_dir)), f"{o['category']} {o.get('confidence') or 0:.2f}"))
        return out

    def query_of(cat, proj, st, order) -> rv.ReviewQuery:
        return rv.ReviewQuery(category=cat or None, project=proj or None, status=st, order=rv.ALL_ORDERS.get(order, order))

    @ui_errors
    def on_load(cat, proj, st, order):
        q = rv.load_queue(ctx.registry, query_of(cat, proj, st, order))
        return (*show(q), page_items(q), gr.update(choices=[""] + _categories(ctx)))

    load.click(on_load, [f_category, f_project, f_state, f_order], [*view, page, f_category], api_name="review_queue")

    def act(action: str):
        @ui_errors
        def handler(q, occ, tru, dif, cat, who, request: gr.Request):
            if q is None or q.current() is None:
                raise gr.Error("No object selected: press Load queue first.")
            oid = q.current()
            rv.apply(ctx.registry, oid, action, validated_by=ctx.user_name(request, who), category=cat,
                     occluded=occ, truncated=tru, difficult=dif)
            note = {"approve": "Approved", "reject": "Rejected", "relabel": f"Relabelled as {cat}",
                    "flags": "Flags saved"}[action]
            if action != "flags":
                rv.step(ctx.registry, q, +1)
            return show(q, f"{note} `{oid}`.")

        handler.__name__ = f"review_{action}"
        return handler

    act_inputs = [state, occluded, truncated, difficult, relabel_to, reviewer]
    approve.click(act("approve"), act_inputs, view, api_visibility="private")
    reject.click(act("reject"), act_inputs, view, api_visibility="private")
    relabel.click(act("relabel"), act_inputs, view, api_visibility="private")
    save_flags.click(act("flags"), act_inputs, view, api_visibility="private")

    @ui_errors
    def on_step(q, delta):
        if q is None:
            raise gr.Error("Press Load queue first.")
        return show(rv.step(ctx.registry, q, delta))

    prev.click(lambda q: on_step(q, -1), [state], view, api_visibility="private")
    nxt.click(lambda q: on_step(q, +1), [state], view, api_visibility="private")

    @ui_errors
    def on_page_select(q, evt: gr.SelectData):
        if q is not None and 0 <= evt.index < len(q.ids):
            q.pos = int(evt.index)
        return show(q)

    page.select(on_page_select, [state], view, api_visibility="private")

    @ui_errors
    def on_bulk(q, thr, cat, proj, st, order, who, request: gr.Request):
        query = q.query if q is not None else query_of(cat, proj, st, order)
        n = rv.bulk_approve(ctx.registry, query, thr, validated_by=ctx.user_name(request, who))
        gr.Info(f"Approved {n} object(s) at confidence ≥ {thr:.2f}.")
        q = rv.load_queue(ctx.registry, query)
        return (*show(q, f"Bulk-approved **{n}** object(s)."), page_items(q))

    bulk.click(on_bulk, [state, bulk_thr, f_category, f_project, f_state, f_order, reviewer], [*view, page],
               api_name="bulk_approve")

    @ui_errors
    def api_review(object_id: str, action: str, category: str = "", validated_by: str = "") -> dict:
        """Approves, rejects or relabels one object.

        Args:
            object_id: the object (obj_…).
            action: "approve", "reject" or "relabel".
            category: the new class for "relabel".
            validated_by: reviewer name.
        """
        o = rv.apply(ctx.registry, object_id, action, validated_by=validated_by or None, category=category or None)
        return {k: o.get(k) for k in ("object_id", "category", "validation_status", "validated_by")}

    gr.api(api_review, api_name="review")

    def open_object(oid: str):
        """Makes a one-object queue starting at ``oid`` (next continues with the pending queue)."""
        q = rv.ReviewQueue(query=rv.ReviewQuery(), ids=[oid], total=ctx.registry.count_objects(status="pending"))
        return show(q)

    # Cross-tab: Refine from Review.
    refine = shared.parts.get("refine")
    if refine:
        @ui_errors
        def on_to_refine(q):
            if q is None or q.current() is None:
                raise gr.Error("No object selected.")
            return (q.current(), *refine["open"](q.current()), gr.Tabs(selected="refine"))

        to_refine.click(on_to_refine, [state], [refine["object_id"], *refine["outs"], shared.tabs],
                        api_visibility="private")

    def open_objects(ids: list[str], note: str = ""):
        """A queue of exactly ``ids`` (e.g. what Auto-label just saved), first one shown."""
        q = rv.ReviewQueue(query=rv.ReviewQuery(), ids=list(ids), total=len(ids), page_size=max(1, len(ids)))
        return show(q, note)

    shared.parts["review"] = {"open": open_object, "open_many": open_objects, "view": view}
