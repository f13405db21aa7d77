"""UI handlers called directly (no server): the Blocks' own event functions, found by name,
fed the values the browser would send, including ``gr.SelectData`` clicks."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import yaml

from app.ui.app import build_app
from app.workflows import render, review
from tests.app.fakes import make_context


def handler(demo: gr.Blocks, name: str, elem_id: str | None = None):
    """The event function named ``name`` (optionally the one touching component ``elem_id``)."""
    found = []
    for f in demo.fns.values():
        if getattr(f.fn, "__name__", None) != name:
            continue
        ids = {getattr(b, "elem_id", None) for b in [*f.inputs, *f.outputs]}
        if (elem_id is None or elem_id in ids) and f.fn not in found:
            found.append(f.fn)
    assert len(found) == 1, f"expected one handler {name!r} near {elem_id!r}, found {len(found)}"
    return found[0]


def click(x: float, y: float) -> gr.SelectData:
    return gr.SelectData(None, {"index": [x, y], "value": None})


def labelled(ctx, scenes: list[Path]) -> list[str]:
    """Registers the scenes through the auto-label handlers; returns the object ids."""
    demo = build_app(ctx)
    run = handler(demo, "on_run", "autolabel-files")
    save = handler(demo, "on_save", "autolabel-status")
    st = {"images": [], "current": 0, "corner": None, "key": None}
    out = run([str(p) for p in scenes], "red, green, blue", 0.3, "proj", False, st)
    st = out[5]
    save(out[2]["value"], "proj", st)
    return [o["object_id"] for o in ctx.registry.list_objects(limit=100)]


def test_overlay_composites_every_mask_into_one_image():
    img = np.full((60, 80, 3), 200, np.uint8)
    masks = np.zeros((2, 60, 80), bool)
    masks[0, 5:20, 5:20] = True
    masks[1, 30:50, 40:70] = True
    out = render.render_overlay(img, [[5, 5, 20, 20], [40, 30, 70, 50]], masks, ["cat", "dog"], [0.9, 0.4])
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out[12, 12], img[12, 12])  # inside mask 0: tinted
    assert not np.array_equal(out[40, 55], out[12, 12])  # different class, different colour
    assert np.array_equal(out[55, 2], img[55, 2])  # background untouched
    assert render.category_color("cat") == render.category_color("cat") != render.category_color("dog")


def test_autolabel_preview_drop_and_save(ctx, scenes, tmp_path):
    demo = build_app(ctx)
    upload = handler(demo, "on_upload", "autolabel-files")
    run = handler(demo, "on_run", "autolabel-files")
    save = handler(demo, "on_save", "autolabel-status")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    st = {"images": [], "current": 0, "corner": None, "key": None}
    out = upload([str(scenes[0]), str(bad)], st)
    assert "1 image(s) ready" in out[4]
    assert ctx.registry.count_sources() == 0  # nothing stored on upload, bad file refused
    overlay, rows, keep, which, status, st, *_ = run([str(scenes[0]), str(bad)], "red, green, blue", 0.3, "p1", False, st)
    view = json.loads(overlay)  # the canvas view of the first image: its size, 3 objects with masks
    assert (view["height"], view["width"]) == (240, 320) and len(view["objects"]) == 3
    assert all(o["mask"]["rle"] for o in view["objects"]) and view["count"] == 1
    assert [r[2] for r in rows] == ["blue", "green", "red"] or sorted(r[2] for r in rows) == ["blue", "green", "red"]
    assert len(keep["choices"]) == 3 and len(keep["value"]) == 3
    assert all(r[4] > 100 for r in rows)  # GrabCut masks have real areas
    assert ctx.registry.count_objects() == 0  # preview only
    dropped = keep["value"][0]
    msg = save([k for k in keep["value"] if k != dropped], "p1", st)
    assert "Saved **2** object(s)" in msg
    objs = ctx.registry.list_objects(limit=10)
    assert len(objs) == 2 and all(o["has_mask"] and o["has_embedding"] for o in objs)
    assert save(keep["value"], "p1", st).count("duplicate") == 1  # re-save adds only the dropped one


def test_no_weights_says_so_and_manual_box_labels(data_dir, scenes):
    ctx = make_context(data_dir, with_labeler=False)
    demo = build_app(ctx)
    run = handler(demo, "on_run", "autolabel-files")
    on_canvas = handler(demo, "on_canvas", "autolabel-canvas-data")
    save = handler(demo, "on_save", "autolabel-status")
    st = {"images": [], "current": 0, "corner": None, "key": None}
    overlay, rows, keep, which, status, st, manual, manual_class = run([str(scenes[0])], "ball", 0.3, "", False, st)
    assert "No detector weights" in status and "label by hand" in status
    assert manual["open"] is True and manual_class["value"] == "ball"
    # The red disc of scene 0 sits around (80, 84); a box dragged around it on the canvas.
    box = json.dumps([{"type": "box", "box": [40, 40, 125, 125]}])
    with pytest.raises(gr.Error, match="Type the class of the box"):
        on_canvas(box, None, "", "", "grabcut", st)  # no class typed
    assert len(st["images"][0].det) == 0  # nothing half-written
    overlay, rows, keep, which, status, st, cls = on_canvas(box, None, "ball", "", "grabcut", st)
    assert len(rows) == 1 and rows[0][2] == "ball" and 1000 < rows[0][4] < 45 * 45 * 4
    assert "Added a **ball** box" in status and json.loads(overlay)["objects"][0]["label"] == "ball"
    assert "Saved **1**" in save(keep["value"], "", st)
    o = ctx.registry.list_objects()[0]
    assert o["category"] == "ball" and o["has_mask"]
    ctx.registry.close()


def test_refine_clicks_undo_accept(ctx, scenes):
    labelled(ctx, scenes[:1])
    red = next(o for o in ctx.registry.list_objects() if o["category"] == "red")
    before = ctx.registry.get_mask(red["object_id"]).copy()
    demo = build_app(ctx)
    on_open = handler(demo, "on_open", "refine-object-id")
    on_upload = handler(demo, "on_upload", "refine-canvas-data")
    on_canvas = handler(demo, "on_canvas", "refine-canvas-data")
    on_undo = handler(demo, "on_undo", "refine-canvas-data")
    on_accept = handler(demo, "on_accept", "refine-canvas-data")

    def on_click(s, mode, segmenter, at):  # a left click on the canvas, as assets/canvas.js sends it
        x, y = at
        return on_canvas(json.dumps([{"type": "point", "x": x, "y": y, "label": 1}]), s, mode, segmenter, "")[:3]

    canvas, info, s, cat = on_open(red["object_id"])
    view = json.loads(canvas)  # the canvas view: image size, the image itself, the object's mask
    assert (view["height"], view["width"]) == (240, 320) and cat == "red"
    assert view["image"].startswith("data:image/jpeg;base64,") and view["objects"][0]["mask"]["rle"]
    x, y, w, h = red["bbox_xywh"]
    canvas, info, s = on_click(s, "positive", "grabcut", (x + w / 2, y + h / 2))
    assert "click 1" in info and "ms" in info and s.mask.sum() > 0.9 * before.sum()
    on_accept(s, "red", gr.Request())
    assert ctx.registry.get_object(red["object_id"])["area"] == int(s.mask.sum())

    # A new image: a box (two clicks) around the disc makes its mask; a box around the square
    # replaces it; undo goes back one click; accept registers a new object.
    canvas, info, s = on_upload(str(scenes[0]))
    assert s.object_id is None and s.mask is None
    on_click(s, "box", "grabcut", (x - 3, y - 3))
    canvas, info, s = on_click(s, "box", "grabcut", (x + w + 3, y + h + 3))
    disc = s.mask.copy()
    assert abs(int(disc.sum()) - int(before.sum())) < 0.1 * before.sum()
    green = next(o for o in ctx.registry.list_objects() if o["category"] == "green")
    gx, gy, gw, gh = green["bbox_xywh"]
    canvas, info, s = on_click(s, "box", "grabcut", (gx - 3, gy - 3))
    assert "opposite corner" in info
    canvas, info, s = on_click(s, "box", "grabcut", (gx + gw + 3, gy + gh + 3))
    assert not (s.mask & disc).any() and s.mask.sum() > 0.9 * gw * gh
    canvas, info, s = on_undo(s)
    assert s.box_corner == (gx - 3.0, gy - 3.0)
    with pytest.raises(gr.Error, match="class"):
        on_accept(s, "", gr.Request())
    canvas, info, s = on_click(s, "box", "grabcut", (gx + gw + 3, gy + gh + 3))
    canvas, info, s, oid = on_accept(s, "square", gr.Request())
    o = ctx.registry.get_object(oid)
    assert o["category"] == "square" and o["area"] == int(s.mask.sum())


def test_shared_segmenter_never_mixes_two_sessions_images(ctx, tmp_path):
    """Two sessions on different images click at once on ONE shared predictor: every
    prediction runs on its own session's image (the segmenter lock spans set_image..predict)."""
    import threading

    from app.workflows import refine as rf
    from tests.app.fakes import write_scene

    seg = ctx.segmenter("grabcut")
    original = seg.predict_points
    seen = []

    def spy(points, labels, **kw):
        seen.append((threading.current_thread().name, seg._image.shape))
        return original(points, labels, **kw)

    seg.predict_points = spy
    a = rf.open_image(write_scene(tmp_path / "a.jpg", seed=1))
    b = rf.open_image(write_scene(tmp_path / "b.jpg", seed=2, size=(200, 300)))
    errors = []

    def session(s, name):
        try:
            for i in range(4):
                rf.click(ctx, s, 70 + i, 80, "positive" if i % 2 == 0 else "negative")
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(s, n), name=n) for s, n in ((a, "A"), (b, "B"))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert {shape for name, shape in seen if name == "A"} == {(240, 320, 3)}
    assert {shape for name, shape in seen if name == "B"} == {(200, 300, 3)}
    assert a.mask.shape == (240, 320) and b.mask.shape == (200, 300) and len(seen) == 8


def test_review_keyboard_actions_queue_order_and_bulk(ctx, scenes):
    labelled(ctx, scenes)
    demo = build_app(ctx)
    on_load = handler(demo, "on_load", "review-info")
    approve = handler(demo, "review_approve")
    reject = handler(demo, "review_reject")
    relabel = handler(demo, "review_relabel")
    out = on_load("", "", "pending", "least confident first")
    q = out[8]
    confs = [ctx.registry.get_object(i)["confidence"] for i in q.ids]
    assert confs == sorted(confs) and len(q.ids) == 9
    assert "Validated 0 / 9" in out[7]
    first = q.current()
    out = approve(q, True, False, False, None, "ann", gr.Request())
    o = ctx.registry.get_object(first)
    assert o["validation_status"] == "approved" and o["validated_by"] == "ann" and o["is_occluded"]
    second = out[8].current()
    assert second != first
    out = reject(out[8], False, False, False, None, "ann", gr.Request())
    assert ctx.registry.get_object(second)["validation_status"] == "rejected"
    third = out[8].current()
    out = relabel(out[8], False, False, False, "sphere", "ann", gr.Request())
    assert ctx.registry.get_object(third)["category"] == "sphere"
    assert "Validated 3 / 9" in out[7]
    confident = {o["object_id"] for o in ctx.registry.list_objects(status="pending", limit=None) if o["confidence"] >= 0.9}
    assert len(confident) == 3  # the largest shape of each scene (FakeLabeler's 0.95)
    n = review.bulk_approve(ctx.registry, review.ReviewQuery(), 0.9, validated_by="bot")
    assert n == 3
    assert {i for i in confident if ctx.registry.get_object(i)["validated_by"] == "bot"} == confident
    assert all(ctx.registry.get_object(i)["validation_status"] == "approved" for i in confident)
    assert ctx.registry.count_objects(status="pending") == 9 - 3 - 3  # the less confident stay pending


def test_review_validated_by_is_login_user_when_auth_on(data_dir):
    ctx = make_context(data_dir, auth_enabled=True)
    req = gr.Request(username="alice")
    assert ctx.user_name(req, "typed") == "alice"
    ctx.auth_enabled = False
    assert ctx.user_name(req, " bob ") == "bob"
    assert ctx.user_name(None, "") is None
    ctx.registry.close()


def test_search_by_image_and_object_then_assign(ctx, scenes, tmp_path):
    labelled(ctx, scenes)
    demo = build_app(ctx)
    on_search = handler(demo, "on_search", "search-gallery")
    on_select = handler(demo, "on_select", "search-selected")
    on_assign = handler(demo, "on_assign", "search-gallery")
    from app.workflows.render import IMAGES

    img = np.asarray(IMAGES.get(scenes[0]))
    st = {"hits": [], "page": 0, "selected": None, "corner": None, "crop": (40, 40, 125, 125)}  # the red disc
    items, page, pick, msg, sel, st = on_search(img, "", "", 0.0, False, 5, st)
    assert "the crop" in msg and len(items) == 5
    assert st["hits"][0]["category"] == "red" and st["hits"][0]["similarity"] > st["hits"][-1]["similarity"]
    assert Path(items[0][0]).is_file() and Path(items[0][0]).suffix == ".jpg"
    text, st = on_select(st, gr.SelectData(None, {"index": 0, "value": None}))
    assert st["selected"] == st["hits"][0]["object_id"]
    reds = [h["object_id"] for h in st["hits"] if h["category"] == "red"]
    items, page, pick, msg, st = on_assign(reds, "ball", st, gr.Request())
    assert all(ctx.registry.get_object(i)["category"] == "ball" for i in reds)
    items, page, pick, msg, sel, st = on_search(None, reds[0], "ball", 0.0, True, 10, st)
    assert {h["object_id"] for h in st["hits"]} == set(reds) - {reds[0]}


def test_search_without_embedder_says_what_to_do(data_dir, scenes):
    ctx = make_context(data_dir, with_embedder=False)
    on_search = handler(build_app(ctx), "on_search", "search-gallery")
    with pytest.raises(gr.Error, match="object id instead"):
        on_search(np.zeros((20, 20, 3), np.uint8), "", "", 0.0, False, 5,
                  {"hits": [], "page": 0, "selected": None, "corner": None, "crop": None})
    ctx.registry.close()


def test_export_preview_and_zip(ctx, scenes):
    import zipfile

    labelled(ctx, scenes)
    demo = build_app(ctx)
    on_preview = handler(demo, "on_preview", "export-counts")
    on_export = handler(demo, "on_export", "export-file")
    args = ["ds", [], 0.0, False, "", 0.6, 0.2, 0.2, 1]
    counts, summary = on_preview(*args)
    assert set(counts["split"]) <= {"train", "val", "test"} and counts["objects"].sum() == 9
    zip_path, folder, counts, summary = on_export(*args, "COCO segment")
    with zipfile.ZipFile(zip_path) as zf:
        docs = [json.loads(zf.read(n)) for n in zf.namelist() if n.startswith("annotations/") and n.endswith(".json")]
    anns = [a for d in docs for a in d["annotations"]]
    assert len(anns) == 9 and all(a["segmentation"] and a["area"] > 0 for a in anns)  # every object, with its mask
    assert sorted({c["name"] for d in docs for c in d["categories"]}) == ["blue", "green", "red"]
    zip_path, folder, counts, summary = on_export(*args, "YOLO detect")
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        rows = [line.split() for n in names if n.startswith("labels/") and n.endswith(".txt")
                for line in zf.read(n).decode().splitlines() if line.strip()]
        yaml_names = yaml.safe_load(zf.read(next(n for n in names if n.endswith("data.yaml"))))["names"]
    classes = yaml_names if isinstance(yaml_names, list) else [yaml_names[k] for k in sorted(yaml_names)]
    got = sorted((classes[int(r[0])], *(round(float(v), 3) for v in r[1:])) for r in rows)
    expected = []
    for o in ctx.registry.list_objects(limit=None):  # every object, at its box, normalised by its image
        x, y, w, h = o["bbox_xywh"]
        src = ctx.registry.get_source(o["source_id"])
        iw, ih = src["width"], src["height"]
        expected.append((o["category"], *(round(v, 3) for v in ((x + w / 2) / iw, (y + h / 2) / ih, w / iw, h / ih))))
    assert len(rows) == 9
    np.testing.assert_allclose([g[1:] for g in got], [e[1:] for e in sorted(expected)], atol=2e-3)
    assert [g[0] for g in got] == [e[0] for e in sorted(expected)]


def test_stats_and_errors_are_short_text(ctx, scenes):
    labelled(ctx, scenes[:1])
    demo = build_app(ctx)
    on_refresh = handler(demo, "on_refresh", "stats-summary")
    md, cats, hist, recent, models = on_refresh()
    assert "**3** objects" in md and int(hist["count"].sum()) == 3 and len(recent) == 3
    on_open = handler(demo, "on_open", "refine-object-id")
    with pytest.raises(gr.Error) as err:
        on_open("obj_does_not_exist")
    assert "Traceback" not in str(err.value)
