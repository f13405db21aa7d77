"""Refine tab: open an object (by id, or from Review/Search) or an image, click to fix its
mask (positive / negative / box), undo, reset, accept. The mask updates after every click and
the time each click took is shown."""
from __future__ import annotations

import gradio as gr

from app.context import SEGMENTER_LABELS, AppContext
from app.ui.common import Shared, ui_errors
from app.workflows import refine as rf

MODE_CHOICES = [("+ add (positive)", "positive"), ("− remove (negative)", "negative"), ("□ box (two clicks)", "box")]


def _out(s: rf.RefineSession | None, note: str = ""):
    if s is None:
        return None, note or "Open an object by id, or upload an image.", None
    timing = ""
    if s.timings:
        timing = f"<span id='refine-click-ms'>{s.timings[-1] * 1000:.0f}</span>"
        timing = f" · click {len(s.timings)}: {timing} ms"
    return s.render(), (note + "\n\n" if note else "") + s.summary() + timing, s


def build(ctx: AppContext, shared: Shared) -> None:
    state = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            object_id = gr.Textbox(label="Object id", placeholder="obj_…", elem_id="refine-object-id")
            open_btn = gr.Button("Open object", elem_id="refine-open")
            upload = gr.Image(label="…or a new image", type="filepath", sources=["upload", "clipboard"], height=160,
                              elem_id="refine-upload")
            mode = gr.Radio(MODE_CHOICES, value="positive", label="Click mode", elem_id="refine-mode")
            segmenter = gr.Dropdown([(SEGMENTER_LABELS.get(n, n), n) for n in ctx.segmenter_names],
                                    value=ctx.segmenter_names[0], label="Segmenter", elem_id="refine-segmenter")
            with gr.Row():
                undo = gr.Button("Undo", elem_id="refine-undo")
                reset = gr.Button("Reset", elem_id="refine-reset")
            category = gr.Textbox(label="Class (required for a new object)", elem_id="refine-class")
            accept = gr.Button("Accept mask", variant="primary", elem_id="refine-accept")
            info = gr.Markdown("Open an object by id, or upload an image.", elem_id="refine-info")
        with gr.Column(scale=2):
            canvas = gr.Image(label="Click on the image", format="jpeg", interactive=False, elem_id="refine-canvas",
                              height=560)

    outs = [canvas, info, state]

    @ui_errors
    def on_open(oid):
        s = rf.open_object(ctx.registry, oid)
        return (*_out(s, f"Opened **{s.object_id}**."), s.category or "")

    open_btn.click(on_open, [object_id], [*outs, category], api_name="refine_open")
    object_id.submit(on_open, [object_id], [*outs, category], api_visibility="private")

    @ui_errors
    def on_upload(path):
        if not path:
            return _out(None)
        try:
            s = rf.open_image(path)
        except ValueError as exc:
            raise gr.Error(f"Not an image we can read: {exc}") from exc
        return _out(s, "New image: click on the object (or draw a box), type its class, accept.")

    upload.upload(on_upload, [upload], outs, api_visibility="private")

    @ui_errors
    def on_click(s, mode_v, seg_v, evt: gr.SelectData):
        if s is None:
            raise gr.Error("Open an object or upload an image first.")
        rf.click(ctx, s, float(evt.index[0]), float(evt.index[1]), mode_v, seg_v)
        note = "First box corner set: click the opposite corner." if s.box_corner else ""
        return _out(s, note)

    # One segmentation at a time per process queue slot; the context lock also guards the predictor.
    canvas.select(on_click, [state, mode, segmenter], outs, api_visibility="private",
                  concurrency_id="segment", concurrency_limit=2)

    @ui_errors
    def on_undo(s):
        if s is None:
            return _out(None)
        return _out(s, "" if rf.undo_state(s) else "Nothing to undo.")

    undo.click(on_undo, [state], outs, api_visibility="private")

    @ui_errors
    def on_reset(s):
        if s is None:
            return _out(None)
        return _out(rf.reset(s), "Reset to the stored mask.")

    reset.click(on_reset, [state], outs, api_visibility="private")

    @ui_errors
    def on_accept(s, cat_v, request: gr.Request):
        if s is None:
            raise gr.Error("Open an object or upload an image first.")
        oid = rf.accept(ctx.registry, s, category=cat_v, validated_by=ctx.user_name(request, None))
        gr.Info(f"Saved the mask of {oid}.")
        return (*_out(s, f"Saved the mask of **{oid}**."), oid)

    accept.click(on_accept, [state, category], [*outs, object_id], api_visibility="private")

    @ui_errors
    def api_refine(object_id: str, points: list[list[float]], labels: list[int], box: list[float] | None = None,
                   segmenter: str = "", accept: bool = False) -> dict:
        """Refines a stored object's mask from clicks.

        Args:
            object_id: the object (obj_…).
            points: clicks [[x, y], …] in absolute pixels of the source image (x = column).
            labels: 1 (add) / 0 (remove) per click.
            box: optional [x_min, y_min, x_max, y_max] absolute pixels.
            segmenter: "grabcut" or "sam2" ("" = default).
            accept: write the new mask to the registry.
        """
        return rf.refine_once(ctx, object_id, points, labels, box or None, segmenter or None, accept)

    gr.api(api_refine, api_name="refine")

    shared.parts["refine"] = {"object_id": object_id, "open": on_open, "outs": [*outs, category]}
