"""Video tab: pick (or upload) a video source, step through its frames (slider, play/pause, ←/→
and Shift+←/→ for ×10), see masks, boxes and track numbers in per-track colours, use the track
list (a row click jumps to the track's first frame), merge / split / delete / relabel / approve
tracks, and click an object to re-prompt mask propagation from that frame.

Handlers are thin adapters over :mod:`app.workflows.video_review` (and the registry's track
edits); errors become a toast plus the status line (:func:`app.ui.common.ui_errors`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import gradio as gr

from app.context import AppContext
from app.ui.common import Shared, errors_in_status, ui_errors
from app.workflows import video_review as vr

KEYS = ("Keys: <kbd>←</kbd>/<kbd>→</kbd> previous/next frame · <kbd>Shift</kbd>+<kbd>←</kbd>/<kbd>→</kbd> "
        "10 frames · click an object to pick it for propagation")
PLAY_INTERVAL_S = 0.4
log = logging.getLogger(__name__)
PLAY, PAUSE = "Play ▶", "Pause ❚❚"


def propagate_impl() -> Callable[..., dict]:
    """V3's :func:`app.workflows.propagate.propagate` (imported when first used: it pulls in the
    SAM2 video stack). Tests replace this function to record the call."""
    from app.workflows.propagate import propagate

    return propagate


def _track_choices(view: vr.VideoView | None) -> list[tuple[str, str]]:
    if view is None:
        return []
    return [(f"#{t['number']} {t['category'] or '?'} ({t['start']}–{t['end']})", t["track_id"]) for t in view.tracks]


def build(ctx: AppContext, shared: Shared) -> None:
    reg = ctx.registry
    view_state = gr.State(None)
    with gr.Row():
        source = gr.Dropdown(vr.source_choices(reg), value=None, label="Video source", scale=4,
                             elem_id="video-source")
        reload_btn = gr.Button("Reload", size="sm", scale=1, elem_id="video-reload")
    with gr.Accordion("Add a video", open=False):
        with gr.Row():
            upload = gr.File(label="Video file", file_types=["video"], type="filepath", elem_id="video-upload")
            every = gr.Number(value=1, precision=0, minimum=1, label="Keep every N-th frame", elem_id="video-every")
            max_frames = gr.Number(value=0, precision=0, minimum=0, label="At most M frames (0 = all)",
                                   elem_id="video-max-frames")
            add_btn = gr.Button("Add video", variant="primary", elem_id="video-add")
        with gr.Row():
            classes = gr.Textbox(label="Classes to auto-label (comma separated)", elem_id="video-classes")
            label_btn = gr.Button("Auto-label its frames", elem_id="video-label")
    status = gr.Markdown("Pick a video source.", elem_id="video-status")
    gr.HTML(f"<div class='agl-shortcuts' id='video-shortcuts'>{KEYS}</div>")
    with gr.Row():
        with gr.Column(scale=3):
            frame_img = gr.Image(label="Frame (click an object to pick it)", format="jpeg", interactive=False,
                                 height=480, elem_id="video-frame")
            caption = gr.Markdown(elem_id="video-caption")
            slider = gr.Slider(0, 1, value=0, step=1, label="Frame position", elem_id="video-slider")
            with gr.Row():
                back10 = gr.Button("« −10", size="sm", min_width=60, elem_id="video-back10")
                prev = gr.Button("‹ Prev", size="sm", min_width=60, elem_id="video-prev")
                play = gr.Button(PLAY, size="sm", min_width=60, elem_id="video-play")
                nxt = gr.Button("Next ›", size="sm", min_width=60, elem_id="video-next")
                fwd10 = gr.Button("+10 »", size="sm", min_width=60, elem_id="video-fwd10")
                drift_btn = gr.Button("Next drift ⚑", size="sm", min_width=60, elem_id="video-next-drift")
            timer = gr.Timer(PLAY_INTERVAL_S, active=False)
        with gr.Column(scale=2):
            table = gr.Dataframe(headers=vr.TRACK_HEADERS, interactive=False, label="Tracks (click a row to jump)",
                                 elem_id="video-tracks", max_height=320)
            track_run = gr.Button("Link objects into tracks (keeps edited tracks)", size="sm",
                                  elem_id="video-track-run")
            track = gr.Textbox(label="Selected track", placeholder="click a row, or type #2 / trk_…",
                               elem_id="video-track")
            with gr.Row():
                merge_with = gr.Dropdown([], label="Merge with", elem_id="video-merge-with")
                merge_keep = gr.Checkbox(False, label="on shared frames keep the higher-confidence object",
                                         elem_id="video-merge-keep")
            merge_btn = gr.Button("Merge into selected", elem_id="video-merge")
            split_btn = gr.Button("Split at current frame", elem_id="video-split")
            with gr.Row():
                relabel_to = gr.Dropdown([c["name"] for c in reg.list_categories()], label="Relabel as",
                                         allow_custom_value=True, elem_id="video-relabel-class")
                relabel_btn = gr.Button("Relabel track", elem_id="video-relabel")
            with gr.Row():
                approve_btn = gr.Button("Approve whole track", variant="primary", elem_id="video-approve")
                to_review = gr.Button("Open its objects in Review", elem_id="video-to-review")
            with gr.Row():
                delete_objects = gr.Checkbox(False, label="also delete its objects", elem_id="video-delete-objects")
                delete_btn = gr.Button("Delete track", variant="stop", elem_id="video-delete")
            reviewer = gr.Textbox(label="Your name (stamped on edits)", visible=not ctx.auth_enabled,
                                  elem_id="video-reviewer")
            with gr.Accordion("Re-prompt propagation", open=True):
                picked = gr.Textbox(label="Picked object", placeholder="click an object on the frame",
                                    elem_id="video-object")
                with gr.Row():
                    prop_max = gr.Number(value=0, precision=0, minimum=0, label="Max frames (0 = to the end)",
                                         elem_id="video-prop-max")
                    prop_back = gr.Checkbox(False, label="backward", elem_id="video-prop-back")
                prop_btn = gr.Button("Propagate from this frame", elem_id="video-propagate")

    def render(view: vr.VideoView, pos) -> tuple:
        p = vr.clip_position(view, pos)
        image, objs = vr.render_frame(reg, view, p)
        return image, vr.frame_caption(view, p, objs), p

    def full(view: vr.VideoView, pos, note: str) -> tuple:
        image, cap, p = render(view, pos)
        slider_upd = gr.Slider(minimum=0, maximum=max(1, len(view.frames) - 1), value=p)
        return (view, vr.track_table(view), image, cap, slider_upd,
                gr.Dropdown(choices=_track_choices(view), value=None), note)

    edit_outs = [view_state, table, frame_img, caption, slider, merge_with, status]
    frame_outs = [frame_img, caption, slider, status]

    def need(view: vr.VideoView | None) -> vr.VideoView:
        if view is None:
            raise gr.Error("Pick a video source first.")
        return view

    @ui_errors
    def on_source(sid):
        # a track or object picked on another video means nothing here
        if not sid:
            return (None, [], None, "", gr.Slider(value=0), gr.Dropdown(choices=[]), "Pick a video source.", "", "")
        view = vr.load_view(reg, sid)
        return (*full(view, 0, f"**{len(view.frames)}** frame(s) · **{len(view.tracks)}** track(s) of `{sid}`."),
                "", "")

    @ui_errors
    def on_reload(sid, pos):
        """Re-reads the video list and the shown video (objects other tabs or the CLI wrote)."""
        choices = vr.source_choices(reg)
        if not sid or sid not in {c[1] for c in choices}:
            return (gr.Dropdown(choices=choices), *[gr.skip()] * 6, "Video list reloaded.")
        view = vr.load_view(reg, sid)
        return (gr.Dropdown(choices=choices),
                *full(view, pos, f"Video list reloaded; **{len(view.tracks)}** track(s) of `{sid}`."))

    reload_btn.click(on_reload, [source, slider], errors_in_status(on_reload, [source, *edit_outs], status),
                     api_visibility="private")

    @ui_errors
    def on_slide(view, pos):
        image, cap, _ = render(need(view), pos)
        return image, cap, gr.skip(), gr.skip()

    slider.input(on_slide, [view_state, slider], errors_in_status(on_slide, list(frame_outs), status),
                 api_visibility="private", trigger_mode="always_last")

    def stepper(delta: int):
        @ui_errors
        def on_step(view, pos):
            image, cap, p = render(need(view), (pos or 0) + delta)
            return image, cap, p, gr.skip()

        on_step.__name__ = f"video_step_{delta}"
        return on_step

    for btn, delta in ((back10, -10), (prev, -1), (nxt, 1), (fwd10, 10)):
        fn = stepper(delta)
        btn.click(fn, [view_state, slider], errors_in_status(fn, list(frame_outs), status),
                  api_visibility="private", trigger_mode="always_last")

    @ui_errors
    def on_next_drift(view, pos):
        view = need(view)
        p, t = vr.next_drift(view, pos)
        image, cap, p = render(view, p)
        k = view.frames[p]["frame_idx"]
        return (image, cap, p, t["track_id"],
                f"Drift on frame {k} in track **#{t['number']}**: click the object and re-prompt propagation.")

    drift_outs = [frame_img, caption, slider, track, status]
    drift_btn.click(on_next_drift, [view_state, slider], errors_in_status(on_next_drift, drift_outs, status),
                    api_visibility="private")

    @ui_errors
    def on_play(view, pos, active):
        view = need(view)
        start = not active
        p = vr.clip_position(view, pos)
        if start and p >= len(view.frames) - 1:
            p = 0  # play again from the start
        return (gr.Timer(active=start), gr.Button(PAUSE if start else PLAY), start, p,
                "Playing…" if start else "Paused.")

    playing = gr.State(False)
    play_outs = [timer, play, playing, slider, status]
    play.click(on_play, [view_state, slider, playing], errors_in_status(on_play, play_outs, status),
               api_visibility="private")

    def on_tick(view, pos):
        stop = (gr.Timer(active=False), gr.Button(PLAY), False)
        if view is None:
            return (None, "", gr.skip(), *stop)
        try:
            p = vr.clip_position(view, pos)
            last = p >= len(view.frames) - 1
            image, cap, p = render(view, p if last else p + 1)
        except Exception as exc:  # stop playing: one message, not one per tick
            log.warning("playing %s stopped: %s", view.source_id, exc)
            gr.Warning(f"Playing stopped: {exc}")
            return (gr.skip(), gr.skip(), gr.skip(), *stop)
        if last:
            return (image, cap, p, *stop)
        return image, cap, p, gr.skip(), gr.skip(), gr.skip()

    timer.tick(on_tick, [view_state, slider], [frame_img, caption, slider, timer, play, playing],
               api_visibility="private", trigger_mode="always_last")

    @ui_errors
    def on_row(view, evt: gr.SelectData):
        view = need(view)
        row = evt.row_value or []
        if not row or not str(row[-1]).startswith("trk_"):
            raise gr.Error("Click a row of the track list.")
        tid = str(row[-1])
        image, cap, p = render(view, vr.jump_to_track(view, tid))
        t = view.track(tid)
        return tid, image, cap, p, f"Track **#{t['number']}** `{tid}` ({t['category']}): frames {t['start']}–{t['end']}."

    table.select(on_row, [view_state], errors_in_status(on_row, [track, frame_img, caption, slider, status], status),
                 api_visibility="private")

    def editor(action: str):
        @ui_errors
        def on_edit(view, pos, tref, other, keep, new_cat, with_objs, who, request: gr.Request):
            view = need(view)
            tid = vr.resolve_track(view, tref)
            user = ctx.user_name(request, who) or "anonymous"
            if action == "merge":
                if not other:
                    raise gr.Error("Pick the track to merge in under “Merge with”.")
                out = reg.merge_tracks(tid, vr.resolve_track(view, other), edited_by=user,
                                       keep="confidence" if keep else "refuse")
                note = f"Merged `{out['merged']}` into `{tid}` ({out['moved']} object(s) moved" + (
                    f", {len(out['dropped'])} left out on shared frames)." if out["dropped"] else ").")
            elif action == "split":
                k = view.frame_at(pos)["frame_idx"]
                out = reg.split_track(tid, k, edited_by=user)
                note = f"Split `{tid}` at frame {k}: {out['moved']} object(s) now in `{out['new_track_id']}`."
            elif action == "relabel":
                if not (new_cat or "").strip():
                    raise gr.Error("Type or pick the new class under “Relabel as”.")
                out = reg.relabel_track(tid, new_cat, edited_by=user)
                note = f"Relabelled `{tid}` and its {out['objects']} object(s) as **{out['category']}**."
            elif action == "approve":
                out = reg.approve_track(tid, edited_by=user)
                note = f"Approved {out['approved']} object(s) of `{tid}` (by {user})."
            else:
                out = reg.delete_track(tid, with_objects=bool(with_objs))
                note = f"Deleted track `{tid}`" + (f" and its {out['deleted_objects']} object(s)." if with_objs
                                                    else "; its objects stay.")
            view = vr.load_view(reg, view.source_id)
            outs = full(view, pos, note)
            keep_track = "" if action in ("delete",) else tid
            return (*outs, keep_track, gr.Dropdown(choices=[c["name"] for c in reg.list_categories()]))

        on_edit.__name__ = f"video_{action}"
        return on_edit

    edit_ins = [view_state, slider, track, merge_with, merge_keep, relabel_to, delete_objects, reviewer]
    for btn, action in ((merge_btn, "merge"), (split_btn, "split"), (relabel_btn, "relabel"),
                        (approve_btn, "approve"), (delete_btn, "delete")):
        fn = editor(action)
        btn.click(fn, edit_ins, errors_in_status(fn, [*edit_outs, track, relabel_to], status),
                  api_visibility="private")

    @ui_errors
    def on_pick(view, pos, evt: gr.SelectData):
        view = need(view)
        x, y = float(evt.index[0]), float(evt.index[1])
        objs = vr.frame_objects(reg, view, pos)
        hit = vr.object_at(objs, reg, x, y)
        if hit is None:
            raise gr.Error(f"No object at ({x:.0f}, {y:.0f}) on this frame: click inside a mask or box.")
        where = f"#{hit['track_number']} " if hit.get("track_number") else "untracked "
        k = view.frame_at(pos)["frame_idx"]
        return hit["object_id"], (f"Picked `{hit['object_id']}` ({where}{hit['category']}) on frame {k}: "
                                  "press **Propagate from this frame**.")

    frame_img.select(on_pick, [view_state, slider], errors_in_status(on_pick, [picked, status], status),
                     api_visibility="private")

    @ui_errors
    def on_propagate(view, pos, oid, n_max, backward):
        view = need(view)
        oid = (oid or "").strip()
        if not oid:
            raise gr.Error("Click an object on the frame first (or paste its id under “Picked object”).")
        k = view.frame_at(pos)["frame_idx"]
        result = vr.reprompt(propagate_impl(), ctx, reg, view, pos, oid, max_frames=n_max, backward=backward)
        log.info("propagated %s from frame %s of %s: %s", oid, k, view.source_id, result)
        view = vr.load_view(reg, view.source_id)
        return full(view, pos, vr.propagation_summary(result))

    prop_btn.click(on_propagate, [view_state, slider, picked, prop_max, prop_back],
                   errors_in_status(on_propagate, list(edit_outs), status), api_visibility="private",
                   concurrency_id="segment", concurrency_limit=1)

    @ui_errors
    def on_add(path, every_n, max_n):
        if not path:
            raise gr.Error("Choose a video file first.")
        from app.workflows.video import add_video

        out = add_video(reg, path, every=int(every_n) if every_n else None,
                        max_frames=int(max_n) if max_n else None)
        sid = out["source_id"]
        return gr.Dropdown(choices=vr.source_choices(reg), value=sid), f"Added `{sid}`: {out['frames']} frame(s)."

    add_btn.click(on_add, [upload, every, max_frames], errors_in_status(on_add, [source, status], status),
                  api_visibility="private")

    @ui_errors
    def on_label(view, classes_text):
        view = need(view)
        names = [c.strip() for c in (classes_text or "").split(",") if c.strip()]
        if not names:
            raise gr.Error("Type the classes to look for, e.g. “car, person”.")
        from app.workflows.video import label_video_frames

        report = label_video_frames(reg, ctx.labeler(), view.source_id, names, progress=False)
        view = vr.load_view(reg, view.source_id)
        return full(view, 0, f"Auto-labelled: {report.summary()}")

    label_btn.click(on_label, [view_state, classes], errors_in_status(on_label, list(edit_outs), status),
                    api_visibility="private", concurrency_id="segment", concurrency_limit=1)

    @ui_errors
    def on_track_run(view, pos):
        from app.workflows.tracking import track_source

        view = need(view)
        out = track_source(reg, view.source_id)
        view = vr.load_view(reg, view.source_id)
        note = (f"Tracker: **{out['tracks']}** new track(s), {out['objects_linked']} object(s) linked; "
                f"{out['replaced_tracks']} tracker track(s) replaced, {out['kept_tracks']} edited track(s) kept.")
        return full(view, pos, note)

    track_run.click(on_track_run, [view_state, slider], errors_in_status(on_track_run, list(edit_outs), status),
                    api_visibility="private")

    source.change(on_source, [source], errors_in_status(on_source, [*edit_outs, track, picked], status),
                  api_visibility="private")

    @ui_errors
    def api_track_edit(track_id: str, action: str, other_track_id: str = "", frame_idx: int = -1,
                       category: str = "", keep_higher_confidence: bool = False, with_objects: bool = False,
                       edited_by: str = "") -> dict:
        """Edits one track as the Video tab does; returns what the registry reports.

        Args:
            track_id: the track (trk_…).
            action: "merge" (other_track_id into track_id), "split" (at frame_idx: objects on
                frames >= frame_idx go to a new track), "relabel" (to category), "approve"
                (every object approved by edited_by) or "delete" (objects stay unless with_objects).
            other_track_id: the track merged in ("merge").
            frame_idx: original 0-based frame index ("split").
            category: the new class ("relabel").
            keep_higher_confidence: "merge": on frames both tracks cover keep the higher-confidence
                object instead of refusing.
            with_objects: "delete": delete the track's objects too.
            edited_by: who edits (stamped as metadata.edited_by; default "api").
        """
        who = (edited_by or "").strip() or "api"
        if action == "merge":
            return reg.merge_tracks(track_id, other_track_id, edited_by=who,
                                    keep="confidence" if keep_higher_confidence else "refuse")
        if action == "split":
            return reg.split_track(track_id, int(frame_idx), edited_by=who)
        if action == "relabel":
            return reg.relabel_track(track_id, category, edited_by=who)
        if action == "approve":
            return reg.approve_track(track_id, edited_by=who)
        if action == "delete":
            return reg.delete_track(track_id, with_objects=bool(with_objects))
        raise ValueError(f"action: expected one of merge, split, relabel, approve, delete, got {action!r}")

    gr.api(api_track_edit, api_name="track_edit")

    def wire_review() -> None:
        """Open in Review: a queue of exactly the selected track's objects, in frame order."""
        review = shared.parts.get("review")
        if not (review and "open_many" in review):
            to_review.visible = False
            return

        @ui_errors
        def on_to_review(view, tref):
            view = need(view)
            t = view.track(vr.resolve_track(view, tref))
            note = f"The {len(t['object_ids'])} object(s) of track #{t['number']} ({t['category']}), in frame order."
            return (*review["open_many"](t["object_ids"], note), gr.Tabs(selected="review"))

        to_review.click(on_to_review, [view_state, track], [*review["view"], shared.tabs], api_visibility="private")

    shared.after.append(wire_review)  # the Tabs handle is complete once every tab is built
    shared.parts["video"] = {"source": source, "refresh": on_reload}
