"""Every named endpoint, called with gradio_client against the app served on 127.0.0.1."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from tests.app.fakes import launch_test_app, make_context, write_scene


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    ctx = make_context(root / "data")
    demo, url = launch_test_app(ctx)
    client = Client(url, verbose=False, download_files=str(root / "downloads"))
    scenes = [write_scene(root / "uploads" / f"s{i}.jpg", seed=i) for i in range(2)]
    yield ctx, client, scenes
    client.close() if hasattr(client, "close") else None
    demo.close()
    ctx.registry.close()


def test_named_endpoints_are_public(served):
    _, client, _ = served
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    for name in ("auto_label", "save_labels", "refine", "search", "search_image", "review", "review_queue",
                 "bulk_approve", "assign_class", "export_preview", "export", "stats"):
        assert f"/{name}" in names


def test_auto_label_then_save(served):
    ctx, client, scenes = served
    out = client.predict([handle_file(str(p)) for p in scenes], "red, green, blue", 0.3, "api", False,
                         api_name="/auto_label")
    overlay, table, keep, which, status = out[:5]
    assert "Found **6** object(s) in 2 image(s)" in status
    assert len(table["data"]) == 6
    assert ctx.registry.count_objects() == 0
    # The session (gr.State) is kept by the client between calls.
    kept = keep["value"] if isinstance(keep, dict) else keep
    assert len(kept) == 6
    assert "Saved **6**" in client.predict(kept, "api", api_name="/save_labels")
    assert ctx.registry.count_objects(project="api") == 6


def test_refine_search_review_stats_export(served):
    ctx, client, scenes = served
    if ctx.registry.count_objects() == 0:
        test_auto_label_then_save(served)
    red = ctx.registry.list_objects(category="red", limit=1)[0]
    x, y, w, h = red["bbox_xywh"]
    res = client.predict(red["object_id"], [[x + w / 2, y + h / 2]], [1], [x - 2, y - 2, x + w + 2, y + h + 2],
                         "grabcut", True, api_name="/refine")
    assert res["accepted"] and 0.9 * red["area"] < res["area"] < 1.1 * red["area"] and res["seconds"] > 0
    assert ctx.registry.get_object(red["object_id"])["area"] == res["area"]

    hits = client.predict(red["object_id"], 3, "", 0.0, False, api_name="/search")
    assert hits and hits[0]["category"] == "red" and hits[0]["object_id"] != red["object_id"]

    done = client.predict(hits[0]["object_id"], "approve", "", "api-user", api_name="/review")
    assert done["validation_status"] == "approved" and done["validated_by"] == "api-user"

    gallery, page, pick, status, selected = client.predict(
        handle_file(str(scenes[1])), "", "", 0.0, False, 4, api_name="/search_image")
    assert "4 result(s)" in status and len(gallery) == 4

    stats = client.predict(api_name="/stats")
    assert stats["objects"] == 6 and stats["approved"] == 1 and len(stats["histogram"]) == 10

    zip_file, folder, counts, summary = client.predict(
        "api-ds", [], 0.0, False, "", 0.5, 0.5, 0.0, 0, "COCO detect", api_name="/export")
    assert Path(zip_file).is_file()
    with zipfile.ZipFile(zip_file) as zf:
        docs = [json.loads(zf.read(n)) for n in zf.namelist() if n.startswith("annotations/") and n.endswith(".json")]
    assert sum(len(d["annotations"]) for d in docs) == 6  # every object, once
    assert {c["name"] for d in docs for c in d["categories"]} == {"red", "green", "blue"}


def test_errors_come_back_as_messages(served):
    _, client, _ = served
    with pytest.raises(Exception, match="obj_nope|unknown|not found|no object"):
        client.predict("obj_nope", [[1, 1]], [1], None, "", False, api_name="/refine")
