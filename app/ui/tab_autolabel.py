"""Auto-label tab: upload images, type classes, preview one composited overlay + a table,
drop objects, save. Without detector weights: draw boxes by hand (two clicks) and let the
segmenter make the masks."""
from __future__ import annotations

from typing import Any

import gradio as gr

from app.context import AppContext, is_weights_missing
from app.ui.common import Shared, errors_in_status, ui_errors
from app.workflows import autolabel_session as al
from app.workflows import canvas as cw
from app.workflows import canvas_autolabel as cal
from app.workflows import train as train_wf

HEADERS = ["key", "image", "class", "confidence", "area px"]
NO_WEIGHTS = ("**No detector weights are installed**, so automatic labeling is off. "
              "Get them with `python launch.py models download` (or `models import DIR` on an "
              "offline machine). Meanwhile you can label by hand: type a class in *Label by hand* (or press "
              "its number key), then drag a box on the image; the segmenter draws the mask.")


def _new_state() -> dict:
    return {"images": [], "current": 0, "corner": None, "key": None}


def _files(files: Any) -> list[str]:
    if not files:
        return []
    files = files if isinstance(files, list) else [files]
    return [f if isinstance(f, str) else getattr(f, "name", None) or f["path"] for f in files]


def _saved_note(ids: list[str]) -> str:
    """The status line's list of the ids one save stored (first 8)."""
    if not ids:
        return ""
    more = f" and {len(ids) - 8} more" if len(ids) > 8 else ""
    return f" Saved ids: {', '.join(f'`{o}`' for o in ids[:8])}{more}. Open them in Review or Refine below."


def _view(st: dict, keep: list[str] | None, classes: list[str] | None = None, current_class: str | None = None,
          note: str = ""):
    """(canvas view JSON, table rows, keep choices+value, image choices) for the state.

    Unticked rows stay in the table marked "(dropped)" and are drawn dashed on the canvas.
    """
    images = st["images"]
    if not images:
        return (cw.dumps(cal.autolabel_view(st, None, [], note=note)), [], gr.update(choices=[], value=[]),
                gr.update(choices=[], value=None))
    st["current"] = min(st["current"], len(images) - 1)
    cur = images[st["current"]]
    keys = al.keys(images)
    keep_set = set(keys if keep is None else [k for k in keep if k in keys])
    classes = classes if classes is not None else cal.legend(st, None)
    view = cal.autolabel_view(st, keep_set, classes, current_class, note)
    rows = [[*r[:2], r[2] if r[0] in keep_set else f"{r[2]} (dropped)", *r[3:]] for r in al.rows(images)]
    return (cw.dumps(view), rows, gr.update(choices=keys, value=sorted(keep_set, key=keys.index)),
            gr.update(choices=[r.name for r in images], value=cur.name))


def build(ctx: AppContext, shared: Shared) -> None:
    state = gr.State(_new_state())  # deep-copied per browser session
    gr.Markdown("Upload images, type the classes to find, run, untick what is wrong, save. "
                "Drag a box on the image to add one by hand; click an object to select it, then Delete, "
                "a number key (class), the brush, eraser or polygon fix it.")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            files = gr.File(label="Images", file_count="multiple", file_types=["image"], type="filepath",
                            elem_id="autolabel-files")
            classes = gr.Textbox(label="Classes (comma-separated)", placeholder="person, car, dog",
                                 elem_id="autolabel-classes")
            confidence = gr.Slider(0.0, 1.0, value=0.3, step=0.05, label="Confidence threshold")
            detector = gr.Dropdown(train_wf.detector_choices(ctx.registry), value="", label="Detector",
                                   info="a trained run (Train tab) can label instead of Florence-2",
                                   interactive=True, elem_id="autolabel-detector")
            project = gr.Textbox(label="Project", placeholder="(optional)", elem_id="autolabel-project")
            auto_register = gr.Checkbox(label="Save automatically after labeling", value=False)
            run = gr.Button("Auto-label", variant="primary", elem_id="autolabel-run")
            status = gr.Markdown(elem_id="autolabel-status")
        with gr.Column(scale=2):
            which = gr.Dropdown(label="Image", choices=[], interactive=True, elem_id="autolabel-which")
            gr.HTML("<div class='agl-canvas-host' data-canvas='autolabel'></div>", elem_id="autolabel-overlay")
            # the canvas bridge (docs/canvas.md): the server's view in, the user's events out
            overlay = gr.Textbox(visible="hidden", elem_id="autolabel-canvas-data")
            events = gr.Textbox(visible="hidden", elem_id="autolabel-canvas-events")
            send = gr.Button("send", visible="hidden", elem_id="autolabel-canvas-send")
            with gr.Accordion("Label by hand", open=False, elem_id="autolabel-manual") as manual:
                with gr.Row():
                    manual_class = gr.Textbox(label="Class of the next box", elem_id="autolabel-manual-class")
                    segmenter = gr.Dropdown(ctx.segmenter_names, value=ctx.segmenter_names[0], label="Segmenter")
                    clear_corner = gr.Button("Clear selection", size="sm")
            table = gr.Dataframe(headers=HEADERS, label="Objects", interactive=False, elem_id="autolabel-table",
                                 wrap=True)
            with gr.Row():
                gr.Markdown("Click a row to select its object on the image.", elem_classes="agl-shortcuts")
                delete_sel = gr.Button("Delete selected object", size="sm", elem_id="autolabel-delete", scale=0)
            keep = gr.CheckboxGroup(label="Keep (untick to drop before saving)", choices=[], elem_id="autolabel-keep")
            save = gr.Button("Save to registry", variant="primary", elem_id="autolabel-save")
            with gr.Row(visible=False, elem_id="autolabel-saved-row") as saved_row:
                saved = gr.Dropdown(label="Just saved", choices=[], interactive=True, elem_id="autolabel-saved",
                                    scale=2)
                to_review = gr.Button("Open in Review", elem_id="autolabel-to-review", scale=1)
                to_refine = gr.Button("Open in Refine", elem_id="autolabel-to-refine", scale=1)

    view_out = [overlay, table, keep, which]

    @ui_errors
    def on_upload(files_v, st):
        st = {**_new_state(), "saved": (st or {}).get("saved", [])}  # "Just saved" stays valid
        images, bad = al.load_uploads(_files(files_v))
        for b in bad:
            gr.Warning(f"Not an image we can read, skipped: {b}")
        st["images"] = images
        msg = f"{len(images)} image(s) ready." if images else ("" if not bad else "No readable image uploaded.")
        return (*_view(st, None), msg, st)

    files.change(on_upload, [files, state], errors_in_status(on_upload, [*view_out, status, state], status), api_visibility="private")

    @ui_errors
    def on_run(files_v, classes_v, conf_v, project_v, auto_v, st, detector_v="", progress=gr.Progress()):  # noqa: B008 - Gradio injects progress via this default
        paths = _files(files_v)
        if not paths:
            raise gr.Error("No image uploaded: drop one or more images in the Images box first.")
        loaded = [r.path for r in st["images"]]
        if loaded != paths:  # API calls (and races with the upload event) start from the files
            st = {**_new_state(), "saved": st.get("saved", [])}
            st["images"], bad = al.load_uploads(paths)
            for b in bad:
                gr.Warning(f"Not an image we can read, skipped: {b}")
        if not st["images"]:
            raise gr.Error("None of the uploads is a readable image (JPEG, PNG, WebP, BMP, TIFF).")
        class_list = al.parse_classes(classes_v)
        if not class_list:
            raise gr.Error("Type at least one class name, e.g. `person, car`.")
        try:
            labeler = train_wf.ui_labeler(ctx, detector_v)
        except Exception as exc:
            if is_weights_missing(exc) or ("weights" in str(exc).lower() and not train_wf.is_run_detector(detector_v)):
                return (*_view(st, None), NO_WEIGHTS, st, gr.update(open=True),
                        gr.update(value=class_list[0]))
            raise

        def report(i, n, name):
            progress((i, n), desc=f"labeling {name}", unit="images")

        try:
            failed = al.label_images(labeler, st["images"], class_list, confidence=conf_v, progress=report)
        except Exception as exc:
            if is_weights_missing(exc):
                return (*_view(st, None), NO_WEIGHTS, st, gr.update(open=True), gr.update(value=class_list[0]))
            raise
        n = sum(len(r.det) for r in st["images"])
        msg = f"Found **{n}** object(s) in {len(st['images'])} image(s)."
        if failed:
            msg += f" {len(failed)} of {len(st['images'])} failed: " + "; ".join(failed[:3])
        if auto_v:
            for r in st["images"]:
                r.saved_ids = []
            res = al.save(ctx, st["images"], None, project=project_v)
            st["saved"] = [o for r in st["images"] for o in r.saved_ids if o]
            msg += f" Saved {res['objects']} object(s)" + (f", {res['duplicates']} duplicate(s) skipped." if res["duplicates"] else ".")
            msg += _saved_note(st["saved"])
        else:
            msg += " Untick what is wrong, then **Save**."
        return (*_view(st, None), msg, st, gr.update(), gr.update(value=class_list[0]))

    detector.focus(lambda: gr.update(choices=train_wf.detector_choices(ctx.registry)), None, detector,
                   api_visibility="private")
    run_event = run.click(on_run, [files, classes, confidence, project, auto_register, state, detector],
              errors_in_status(on_run, [*view_out, status, state, manual, manual_class], status), api_name="auto_label", concurrency_id="models")

    @ui_errors
    def on_which(name, keep_v, st):
        names = [r.name for r in st["images"]]
        if name in names:
            st["current"] = names.index(name)
        st["corner"], st["selected"] = None, None
        return (_view(st, keep_v)[0], st)

    which.input(on_which, [which, keep, state], [overlay, state], api_visibility="private")

    @ui_errors
    def on_keep(keep_v, st):
        return _view(st, keep_v)[:2]  # the canvas draws a dropped object dashed, the table marks its row

    keep.input(on_keep, [keep, state], [overlay, table], api_visibility="private")

    @ui_errors
    def on_canvas(events_v, keep_v, cls_v, classes_v, seg_v, st, request: gr.Request = None):
        """What the canvas sent: a dragged box (a hand-made object of the next-box class),
        clicks (select), brush/eraser/polygon edits, Delete, class keys, ←/→, undo/redo."""
        legend = cal.legend(st, classes_v, cls_v)
        note, keep_now, cls_now = cal.autolabel_events(ctx, st, cw.parse_events(events_v), keep_v, legend, cls_v,
                                                       seg_v, user=ctx.user_name(request))
        legend = cal.legend(st, classes_v, cls_now)
        return (*_view(st, keep_now, legend, cls_now, note), note or gr.skip(), st, cls_now or "")

    send.click(on_canvas, [events, keep, manual_class, classes, segmenter, state],
               errors_in_status(on_canvas, [*view_out, status, state, manual_class], status),
               api_visibility="private", js="(e, ...rest) => [window.aglCanvas.take('autolabel'), ...rest]", show_progress="hidden",
               concurrency_id="segment", trigger_mode="multiple",
               ).then(None, None, None, js="() => window.aglCanvas.done('autolabel')")

    @ui_errors
    def on_cancel(keep_v, st):
        st["corner"], st["selected"] = None, None
        return _view(st, keep_v)[0], st

    clear_corner.click(on_cancel, [keep, state], [overlay, state], api_visibility="private")

    @ui_errors
    def on_row(keep_v, st, evt: gr.SelectData):
        """A table row picked: show its image with the object selected (Delete / keys then act on it)."""
        key = str((evt.row_value or [""])[0])
        for i, r in enumerate(st["images"]):
            if key.startswith(f"{r.name}#"):
                st["current"], st["selected"] = i, int(key.rsplit("#", 1)[1]) - 1
        return (*_view(st, keep_v, note=f"Selected {key}."), st)

    table.select(on_row, [keep, state], [*view_out, state], api_visibility="private")

    @ui_errors
    def on_delete(keep_v, classes_v, st):
        note, keep_now, _ = cal.autolabel_events(ctx, st, [{"type": "delete"}], keep_v, [], None, None)
        return (*_view(st, keep_now, cal.legend(st, classes_v), note=note), note, st)

    delete_sel.click(on_delete, [keep, classes, state], errors_in_status(on_delete, [*view_out, status, state], status),
                     api_visibility="private")

    @ui_errors
    def on_save(keep_v, project_v, st):
        if not st["images"]:
            raise gr.Error("Nothing to save: upload and label images first.")
        for r in st["images"]:
            r.saved_ids = []  # what *this* save registered
        res = al.save(ctx, st["images"], set(keep_v or []), project=project_v)
        st["saved"] = [o for r in st["images"] for o in r.saved_ids if o]
        msg = f"Saved **{res['objects']}** object(s) from {res['sources']} image(s)."
        if res["duplicates"]:
            msg += f" {res['duplicates']} duplicate(s) of stored objects skipped."
        gr.Info(msg.replace("**", ""))
        msg += _saved_note(st["saved"])
        return msg  # st["saved"] persists: Gradio hands handlers the session's own State object

    def saved_view(st):
        """The "Just saved" row: the ids of the last save, first selected; hidden when none."""
        ids = list(st.get("saved") or [])
        return gr.update(choices=ids, value=ids[0] if ids else None), gr.update(visible=bool(ids))

    # the API result stays the status text; the "Just saved" row follows from the state
    save.click(on_save, [keep, project, state], errors_in_status(on_save, [status], status),
               api_name="save_labels").then(saved_view, [state], [saved, saved_row], api_visibility="private")
    run_event.then(saved_view, [state], [saved, saved_row], api_visibility="private")

    def wire_open() -> None:
        """Open in Review (a queue of just the saved objects) / Refine (the one picked)."""
        review, refine = shared.parts.get("review"), shared.parts.get("refine")

        def just_saved(st) -> list[str]:
            ids = list(st.get("saved") or [])
            if not ids:
                raise gr.Error("Nothing saved yet in this session: press Save to registry first.")
            return ids

        if review and "open_many" in review:
            @ui_errors
            def on_saved_to_review(st):
                ids = just_saved(st)
                return (*review["open_many"](ids, f"The {len(ids)} object(s) just saved."), gr.Tabs(selected="review"))

            to_review.click(on_saved_to_review, [state], [*review["view"], shared.tabs], api_visibility="private")
        if refine:
            @ui_errors
            def on_saved_to_refine(oid, st):
                ids = just_saved(st)
                oid = oid if oid in ids else ids[0]
                return (oid, *refine["open"](oid), gr.Tabs(selected="refine"))

            to_refine.click(on_saved_to_refine, [saved, state], [refine["object_id"], *refine["outs"], shared.tabs],
                            api_visibility="private")

    shared.after.append(wire_open)

    shared.parts["autolabel"] = {"status": status, "overlay": overlay, "table": table}
