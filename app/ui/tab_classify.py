"""Classify tab: few-shot classification with a domain (prototype pack).

Pick a domain (or build one from the validated objects), then classify an uploaded image (needs
the image embedder's weights) or a stored object (its stored embedding, no weights): the answer
shows the top classes with their scores, the verdict, ``s1``, the margin and whether it is
unknown. Then look at the N pending objects most similar to the query and, after that look,
apply the verdict to them with one confirming click.
"""
from __future__ import annotations

import gradio as gr
import numpy as np

from app.context import AppContext, is_weights_missing
from app.ui.common import Shared, errors_in_status, ui_errors
from app.ui.tab_search import GET_WEIGHTS, embedder_available
from app.workflows import classify as cw
from app.workflows import review as rv
from app.workflows import search as sw
from registry.domains import list_domains

# Events that read or write the domain list run one at a time, in order: the list refreshed
# when the tab opens must never land after (and overwrite) the domain a click just built.
DOMAIN_EVENTS = {"concurrency_id": "classify-domains", "concurrency_limit": 1}


def classify_notice(available: bool) -> str:
    """The note at the top of the tab: what works with the weights that are installed."""
    if available:
        return ("Classify **an uploaded image** or **an object id** (its stored embedding) with a domain. "
                "A typed object id is used first.")
    return ("**No image-embedder weights are installed:** only **pick an object** (type its id) works; it uses "
            f"the embeddings stored with each object. Classifying an uploaded image needs the weights: {GET_WEIGHTS}.")


def answer_markdown(ans: dict, what: str) -> str:
    """The answer as Markdown: verdict, s1, margin, unknown or not, confidence, thresholds."""
    verdict = "**unknown**" if ans["is_unknown"] else f"**{ans['verdict']}**"
    why = ""
    if ans["is_unknown"]:
        reasons = []
        if ans["s1"] < ans["tau1"]:
            reasons.append(f"s1 {ans['s1']:.3f} < τ1 {ans['tau1']:.3f}")
        if ans["margin"] < ans["tau2"]:
            reasons.append(f"margin {ans['margin']:.3f} < τ2 {ans['tau2']:.3f}")
        why = f" ({'; '.join(reasons)}; best class: {ans['top_k'][0]['class']})"
    return (f"{what}: verdict {verdict}{why}  \n"
            f"s1 **{ans['s1']:.3f}** · margin **{ans['margin']:.3f}** · unknown: **{'yes' if ans['is_unknown'] else 'no'}**"
            f" · confidence {ans['confidence']:.2f} · τ1 {ans['tau1']:.3f} · τ2 {ans['tau2']:.3f} · {ans['model']}")


def _new_state() -> dict:
    return {"vector": None, "answer": None, "similar": []}


def build(ctx: AppContext, shared: Shared) -> None:
    state = gr.State(_new_state())
    notice = gr.Markdown(classify_notice(embedder_available(ctx)), elem_id="classify-notice")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            with gr.Row():
                domain = gr.Dropdown([], value=None, label="Domain", elem_id="classify-domain", scale=3)
                refresh = gr.Button("↻", size="sm", scale=0, min_width=40, elem_id="classify-refresh")
            with gr.Accordion("Build a domain from validated objects", open=False, elem_id="classify-build-box"):
                new_name = gr.Textbox(label="Name", placeholder="e.g. birds-v1", elem_id="classify-new-name")
                new_cats = gr.Textbox(label="Only these categories (a, b; empty = all)", elem_id="classify-new-cats")
                build_btn = gr.Button("Build domain", elem_id="classify-build")
            query = gr.Image(label="Query image", type="numpy", sources=["upload", "clipboard"], height=220,
                             elem_id="classify-query")
            object_id = gr.Textbox(label="…or an object id", placeholder="obj_…", elem_id="classify-object-id")
            go = gr.Button("Classify", variant="primary", elem_id="classify-run")
            status = gr.Markdown(elem_id="classify-status")
        with gr.Column(scale=2):
            answer = gr.Markdown("Pick a domain and classify an image or an object.", elem_id="classify-answer")
            topk = gr.Dataframe(headers=["class", "score"], datatype=["str", "number"], interactive=False,
                                label="Top classes", elem_id="classify-topk")
            with gr.Row():
                n_similar = gr.Slider(1, 100, value=12, step=1, label="N most similar pending objects",
                                      elem_id="classify-n")
                show = gr.Button("Show the N most similar pending", elem_id="classify-show")
            gallery = gr.Gallery(label="Most similar pending objects", format="jpeg", columns=6, height="auto",
                                 object_fit="contain", allow_preview=False, elem_id="classify-gallery")
            apply_btn = gr.Button("Apply the verdict to these objects", variant="stop", visible=False,
                                  elem_id="classify-apply")

    def domain_choices() -> list[str]:
        return [d["domain"] for d in list_domains(ctx.data_dir) if "error" not in d]

    def on_refresh(current):
        names = domain_choices()
        value = current if current in names else (names[0] if names else None)
        return gr.update(choices=names, value=value), classify_notice(embedder_available(ctx))

    refresh.click(on_refresh, [domain], [domain, notice], api_visibility="private", **DOMAIN_EVENTS)

    @ui_errors
    def on_build(name, cats):
        name = (name or "").strip()
        if not name:
            raise gr.Error("Type a name for the new domain first (letters, digits, . _ -).")
        categories = [c.strip() for c in (cats or "").split(",") if c.strip()] or None
        meta = cw.build_from_validated(ctx.registry, name, categories=categories)
        cal = meta.get("calibration") or {}
        counts = ", ".join(f"{c} {n}" for c, n in meta["counts"].items())
        msg = (f"Built domain **{name}**: {counts}; τ1 {meta['tau1']:.3f}, τ2 {meta['tau2']:.3f} "
               f"(leave-one-out accuracy {cal.get('accuracy', 0):.2f} at coverage {cal.get('coverage', 0):.2f}).")
        return gr.update(choices=domain_choices(), value=name), msg

    build_btn.click(on_build, [new_name, new_cats], errors_in_status(on_build, [domain, status], status),
                    api_name="build_domain", **DOMAIN_EVENTS)

    @ui_errors
    def on_classify(dom, img, oid, st):
        if not dom:
            raise gr.Error("Pick a domain first (or build one from validated objects).")
        oid = (oid or "").strip()
        if oid:  # a typed id wins over a loaded image (as in Search)
            vec = ctx.registry.get_embedding(oid)
            if vec is None:
                raise gr.Error(f"Object {oid} has no stored embedding; classify another object"
                               + (" or an uploaded image." if embedder_available(ctx) else "."))
            what = f"Object `{oid}`"
        elif img is not None:
            try:
                emb = ctx.embedder()
            except Exception as exc:
                if is_weights_missing(exc) or isinstance(exc, RuntimeError):
                    raise gr.Error("Classifying an uploaded image needs image-embedder weights, which are not "
                                   f"installed. Type an object id instead, or get the weights with {GET_WEIGHTS}.") from exc
                raise
            vec = sw.embed_query(emb, np.asarray(img), segment=sw.context_segment(ctx))
            what = "The image"
        else:
            raise gr.Error("Upload a query image or type an object id first.")
        ans = cw.classify_vector(ctx.registry, dom, vec, top_k=5)
        st = {**_new_state(), "vector": np.asarray(vec, np.float32).tolist(), "answer": ans}
        rows = [[t["class"], round(t["score"], 4)] for t in ans["top_k"]]
        msg = f"Classified with **{dom}**."
        if oid and img is not None:
            msg += " Used the object id; the query image was not used (clear the id to classify the image)."
        return answer_markdown(ans, what), rows, [], gr.update(visible=False), msg, st

    cls_outs = errors_in_status(on_classify, [answer, topk, gallery, apply_btn, status, state], status)
    go.click(on_classify, [domain, query, object_id, state], cls_outs, api_name="classify")
    object_id.submit(on_classify, [domain, query, object_id, state], cls_outs, api_visibility="private")

    @ui_errors
    def on_show(n, st):
        if st.get("vector") is None:
            raise gr.Error("Classify an image or an object first.")
        hits = cw.similar_pending(ctx.registry, np.asarray(st["vector"], np.float32), int(n))
        st = {**st, "similar": [h["object_id"] for h in hits]}
        items = [(str(rv.thumbnail(ctx.registry, h, ctx.data_dir)), sw.caption(h)) for h in hits]
        ans = st["answer"]
        if not hits:
            return items, gr.update(visible=False), "No pending objects are similar (all reviewed?).", st
        if ans["is_unknown"]:
            return (items, gr.update(visible=False),
                    f"{len(hits)} similar pending object(s). The verdict is unknown: nothing to apply.", st)
        label = f"Apply '{ans['verdict']}' to these {len(hits)} objects"
        return (items, gr.update(visible=True, value=label),
                f"{len(hits)} similar pending object(s) shown. Look at them, then confirm with “{label}”.", st)

    show.click(on_show, [n_similar, state], errors_in_status(on_show, [gallery, apply_btn, status, state], status),
               api_visibility="private")

    @ui_errors
    def on_apply(st):
        ans, ids = st.get("answer"), list(st.get("similar") or [])
        if not ans or not ids:
            raise gr.Error("Show the most similar pending objects first, then apply.")
        n = cw.apply_verdict(ctx.registry, ids, ans["verdict"])
        hits = ctx.registry.get_objects(ids)
        items = [(str(rv.thumbnail(ctx.registry, h, ctx.data_dir)), f"{h['category']} · {h['object_id']}")
                 for h in hits]
        gr.Info(f"{n} object(s) are now '{ans['verdict']}'.")
        return items, gr.update(visible=False), f"Applied **{ans['verdict']}** to {n} object(s) (still pending review).", \
            {**st, "similar": []}

    apply_btn.click(on_apply, [state], errors_in_status(on_apply, [gallery, apply_btn, status, state], status),
                    api_visibility="private")

    shared.parts["classify"] = {"refresh": (on_refresh, [domain], [domain, notice])}
