"""After Save (by the button or "save automatically"), Auto-label lists the ids it stored and
opens them in Refine (the picked one) or Review (a queue of exactly those)."""
from __future__ import annotations

import gradio as gr
import pytest

from app.ui.app import build_app
from tests.app.test_ui_handlers import handler


def _st() -> dict:
    return {"images": [], "current": 0, "corner": None, "key": None}


@pytest.mark.parametrize("auto", [False, True])
def test_saved_ids_are_listed_and_open_in_refine_and_review(ctx, scenes, auto):
    demo = build_app(ctx)
    run = handler(demo, "on_run", "autolabel-files")
    save = handler(demo, "on_save", "autolabel-status")
    saved_view = handler(demo, "saved_view", "autolabel-saved")
    to_refine = handler(demo, "on_saved_to_refine", "autolabel-saved")
    to_review = handler(demo, "on_saved_to_review")
    out = run([str(scenes[0])], "red, green, blue", 0.3, "p", auto, _st())
    st = out[5]
    msg = out[4] if auto else save(out[2]["value"], "p", st)
    ids = [o["object_id"] for o in ctx.registry.list_objects(project="p", limit=10)]
    assert len(ids) == 3 and sorted(st["saved"]) == sorted(ids)
    assert "Saved ids" in msg and all(f"`{i}`" in msg for i in ids)
    choices, row = saved_view(st)
    assert row["visible"] is True and choices["value"] == st["saved"][0]
    assert sorted(choices["choices"]) == sorted(ids)
    picked = st["saved"][1]
    got = to_refine(picked, st)
    assert got[0] == picked and got[-1].selected == "refine"
    assert any(isinstance(o, str) and picked in o for o in got[1:-1])
    rv = to_review(st)
    assert rv[-1].selected == "review"
    assert any(isinstance(o, str) and "of 3 in queue" in o and st["saved"][0] in o for o in rv)
    with pytest.raises(gr.Error, match="press Save"):
        to_refine(None, _st())
