"""Refine tab: open an object (by id, or from Review/Search) or an image, fix its mask on the
labeling canvas (``assets/canvas.js``: clicks, boxes, brush, eraser, polygon, undo/redo, class
keys), reset, accept. The canvas draws the server's mask itself (``app.workflows.canvas``); the
time each segmentation took is shown."""
from __future__ import annotations

import gradio as gr

from app.context import SEGMENTER_LABELS, AppContext
from app.ui.common import Shared, errors_in_status, ui_errors
from app.workflows import canvas as cw
from app.workflows import refine as rf

MODE_CHOICES = [("+ add (positive)", "positive"), ("− remove (negative)", "negative"), ("□ box (two clicks)", "box")]


def _out(s: rf.RefineSession | None, note: str = "", classes: list[str] | None = None,
         siblings: list[str] | None = None):
    """(canvas view JSON, status Markdown, session) for the session."""
    if s is None:
        note = note or "Open an object by id, or upload an image."
        return cw.dumps(cw.refine_view(None, [], note)), note, None
    timing = ""
    if s.timings:
        timing = f"<span id='refine-click-ms'>{s.timings[-1] * 1000:.0f}</span>"
        timing = f" · click {len(s.timings)}: {timing} ms"
    view = cw.refine_view(s, classes if classes is not None else [s.category or ""], note, siblings)
    return cw.dumps(view), (note + "\n\n" if note else "") + s.summary() + timing, s


def build(ctx: AppContext, shared: Shared) -> None:
    state = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            object_id = gr.Textbox(label="Object id", placeholder="obj_…", elem_id="refine-object-id")
            open_btn = gr.Button("Open object", elem_id="refine-open")
            upload = gr.Image(label="…or a new image", type="filepath", sources=["upload", "clipboard"], height=160,
                              elem_id="refine-upload")
            mode = gr.Radio(MODE_CHOICES, value="positive", label="Left click on the canvas", elem_id="refine-mode",
                            info="right-click or Shift+click removes; a drag draws a box")
            segmenter = gr.Dropdown([(SEGMENTER_LABELS.get(n, n), n) for n in ctx.segmenter_names],
                                    value=ctx.segmenter_names[0], label="Segmenter", elem_id="refine-segmenter")
            with gr.Row():
                undo = gr.Button("Undo", elem_id="refine-undo")
                reset = gr.Button("Reset", elem_id="refine-reset")
            category = gr.Textbox(label="Class (required for a new object)", elem_id="refine-class")
            with gr.Row():
                accept = gr.Button("Accept mask", variant="primary", elem_id="refine-accept")
                delete = gr.Button("Delete object", variant="stop", elem_id="refine-delete")
            info = gr.Markdown("Open an object by id, or upload an image.", elem_id="refine-info")
        with gr.Column(scale=2):
            gr.HTML("<div class='agl-canvas-host' data-canvas='refine'></div>", elem_id="refine-canvas")
            # the canvas bridge (docs/canvas.md): the server's view in, the user's events out
            canvas = gr.Textbox(visible="hidden", elem_id="refine-canvas-data")
            events = gr.Textbox(visible="hidden", elem_id="refine-canvas-events")
            send = gr.Button("send", visible="hidden", elem_id="refine-canvas-send")

    outs = [canvas, info, state]

    def classes(s):
        return cw.refine_classes(ctx.registry, s)

    def out(s, note: str = ""):
        """_out with the legend and the objects on the same image (←/→), cached per session."""
        if s is None:
            return _out(None, note)
        if getattr(s, "canvas_siblings", None) is None or s.object_id not in s.canvas_siblings:
            s.canvas_siblings = cw.refine_siblings(ctx.registry, s)
        return _out(s, note, classes(s), s.canvas_siblings)

    @ui_errors
    def on_open(oid):
        s = rf.open_object(ctx.registry, oid)
        return (*out(s, f"Opened **{s.object_id}**."), s.category or "")

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
        return out(s, "New image: click on the object (or drag a box), type its class (or press its number), accept.")

    upload.upload(on_upload, [upload], outs, api_visibility="private")

    @ui_errors
    def on_canvas(events_v, s, mode_v, seg_v, cat_v):
        """What the canvas sent: clicks (the Click mode radio decides what a left click is;
        right/Shift-click is always negative), dragged boxes, brush/eraser/polygon edits,
        undo/redo, Delete (asks first; Shift+Delete clears the mask), Esc, class keys."""
        if s is None:
            raise gr.Error("Open an object or upload an image first.")
        evs = cw.parse_events(events_v)
        if (cat_v or "").strip() and cat_v.strip() != s.category:
            s.category = cat_v.strip()
        for ev in evs:
            if ev["type"] == "point" and mode_v in ("negative", "box") and int(ev.get("label", 1)):
                ev["label"] = 0 if mode_v == "negative" else 1
                if mode_v == "box":
                    ev["type"] = "corner"
        note = ""
        for ev in evs:
            if ev["type"] == "delete" and not ev.get("clear") and s.object_id:
                s, note = cw.refine_delete(ctx.registry, s)
                if s is None:  # the image's last object is gone
                    gr.Info(note.replace("**", ""))
                    return (*out(None, note), "", "")
                continue
            if ev["type"] != "cancel":
                cw.disarm_delete(s)
            if ev["type"] == "corner":
                x, y = cw._xy(ev)
                rf.click(ctx, s, x, y, "box", seg_v)
                note = "First box corner set: click the opposite corner." if s.box_corner else ""
            elif ev["type"] == "nav":  # ←/→: the previous / next object on the same image
                s = cw.refine_nav(ctx.registry, s, int(ev.get("delta", 1)))
                note = f"Opened **{s.object_id}**."
            else:
                note = cw.refine_events(ctx, s, [ev], seg_v, classes(s)) or note
        if note.startswith("Deleted"):
            gr.Info(note.replace("**", ""))
        return (*out(s, note), s.category or "", s.object_id or "")

    # One segmentation at a time per process queue slot; the context lock also guards the predictor.
    send.click(on_canvas, [events, state, mode, segmenter, category],
               errors_in_status(on_canvas, [*outs, category, object_id], info), api_visibility="private",
               js="(e, ...rest) => [window.aglCanvas.take('refine'), ...rest]", show_progress="hidden",
               concurrency_id="segment", concurrency_limit=2, trigger_mode="multiple",
               ).then(None, None, None, js="() => window.aglCanvas.done('refine')")

    @ui_errors
    def on_delete(s):
        """The *Delete object* button: the same two steps as the Delete key."""
        if s is None:
            raise gr.Error("Open an object first: Delete object removes it from the registry.")
        s, note = cw.refine_delete(ctx.registry, s)
        if note.startswith("Deleted"):
            gr.Info(note.replace("**", ""))
        if s is None:
            return (*out(None, note), "", "")
        return (*out(s, note), s.category or "", s.object_id or "")

    delete.click(on_delete, [state], [*outs, category, object_id], api_visibility="private")

    @ui_errors
    def on_undo(s):
        if s is None:
            return _out(None)
        cw.disarm_delete(s)
        return out(s, "" if rf.undo_state(s) else "Nothing to undo.")

    undo.click(on_undo, [state], outs, api_visibility="private")

    @ui_errors
    def on_reset(s):
        if s is None:
            return _out(None)
        cw.disarm_delete(s)
        return out(rf.reset(s), "Reset to the stored mask.")

    reset.click(on_reset, [state], outs, api_visibility="private")

    @ui_errors
    def on_accept(s, cat_v, request: gr.Request):
        if s is None:
            raise gr.Error("Open an object or upload an image first.")
        cw.disarm_delete(s)
        oid = rf.accept(ctx.registry, s, category=cat_v, validated_by=ctx.user_name(request, None))
        gr.Info(f"Saved the mask of {oid}.")
        return (*out(s, f"Saved the mask of **{oid}**."), oid)

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
