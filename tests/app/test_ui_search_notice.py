"""The Search tab says up front what works without embedder weights, never sends a user in a
circle between the two methods, and says which query it used when both are given."""
from __future__ import annotations

from contextvars import copy_context

import gradio as gr
import numpy as np
import pytest

from app.ui.app import build_app
from app.ui.tab_search import embedder_available, pick_query, search_notice
from app.workflows.render import IMAGES
from tests.app.fakes import make_context
from tests.app.test_ui_handlers import handler, labelled


def _st() -> dict:
    return {"hits": [], "page": 0, "selected": None, "corner": None, "crop": None}


def _notice(demo: gr.Blocks) -> str:
    (md,) = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "search-notice"]
    return md.value


def test_notice_without_embedder_says_object_id_works_and_image_needs_weights(data_dir):
    ctx = make_context(data_dir, with_embedder=False)
    assert embedder_available(ctx) is False
    text = _notice(build_app(ctx))
    assert "No image-embedder weights are installed" in text
    assert "by object id** works" in text and "models download" in text
    ctx.registry.close()


def test_notice_with_embedder_offers_both_and_says_the_id_comes_first(ctx):
    assert embedder_available(ctx) is True
    text = _notice(build_app(ctx))
    assert "No image-embedder" not in text and "by image" in text and "object id is used first" in text
    assert search_notice(True) != search_notice(False)


def test_notice_follows_the_production_status_without_loading_the_embedder(data_dir):
    ctx = make_context(data_dir)
    ctx.embedder_provider = lambda: pytest.fail("the notice must not load the embedder")
    ctx.status_provider = lambda: {"embedder": {"weights_present": False}}
    assert embedder_available(ctx) is False
    ctx.status_provider = lambda: {"embedder": {"weights_present": True}}
    assert embedder_available(ctx) is True
    ctx.registry.close()


def test_typed_object_id_wins_over_a_loaded_image_and_the_status_says_so(ctx, scenes):
    ids = labelled(ctx, scenes)
    on_search = handler(build_app(ctx), "on_search", "search-gallery")
    img = np.asarray(IMAGES.get(scenes[0]))
    assert pick_query(img, ids[0]) == "object" and pick_query(img, " ") == "image" and pick_query(None, "") == "none"
    _, _, _, msg, _, st = on_search(img, ids[0], "", 0.0, False, 5, _st())
    _, _, _, msg_id_only, _, st_id = on_search(None, ids[0], "", 0.0, False, 5, _st())
    assert st["hits"] and [h["object_id"] for h in st["hits"]] == [h["object_id"] for h in st_id["hits"]]
    assert ids[0] not in {h["object_id"] for h in st["hits"]}
    assert f"`{ids[0]}`" in msg and "query image was not used" in msg
    assert "not used" not in msg_id_only


def test_object_without_embedding_and_no_embedder_does_not_point_to_image_search(data_dir, scenes):
    ctx = make_context(data_dir, with_embedder=False)
    ids = labelled(ctx, scenes)
    assert ids
    on_search = handler(build_app(ctx), "on_search", "search-gallery")
    with pytest.raises(gr.Error) as err:
        on_search(None, ids[0], "", 0.0, False, 5, _st())
    text = str(err.value)
    assert ids[0] in text and "no stored embedding" in text and "models download" in text
    assert "or search by image" not in text
    with pytest.raises(gr.Error, match="object id instead"):
        on_search(np.zeros((20, 20, 3), np.uint8), "", "", 0.0, False, 5, _st())
    ctx.registry.close()


def test_browser_errors_skip_the_outputs_and_fill_the_status(data_dir):
    """In a page's event (a request without ``x-gradio-user: api``) the error is no exception:
    every output but the status line is skipped; a gradio_client request still raises."""
    from gradio.context import LocalContext

    ctx = make_context(data_dir, with_embedder=False)
    on_search = handler(build_app(ctx), "on_search", "search-gallery")

    class Req:
        def __init__(self, headers):
            self.headers = headers

    def call(headers):
        LocalContext.request.set(Req(headers))
        return on_search(None, "", "", 0.0, False, 5, _st())

    out = copy_context().run(call, {"user-agent": "Chromium", "referer": "http://127.0.0.1:7860/"})
    assert len(out) == 6 and out[3].startswith("⚠") and "object id first" in out[3]
    assert all(o == gr.skip() for i, o in enumerate(out) if i != 3)
    with pytest.raises(gr.Error, match="object id first"):
        copy_context().run(call, {"x-gradio-user": "api", "referer": "http://127.0.0.1:7860/"})
    with pytest.raises(gr.Error, match="object id first"):  # curl & co: no Referer / Origin
        copy_context().run(call, {"user-agent": "curl/8"})
    ctx.registry.close()
