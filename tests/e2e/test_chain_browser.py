"""The real chain in a real browser: the app built by the production wiring (``build_context``
-> ``AppContext.from_manager`` -> ``ModelManager``) over the three tiny models imported into the
data folder, driven in Chromium: auto-label -> save -> refine with SAM2 clicks -> review ->
search by an uploaded image -> export. No test double anywhere.

Each test seeds what it needs (``labeled`` saves two other scenes through the same workflows
the tab calls), so any one passes alone and in any order.
"""
from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.chain_models import SCENE_CLASSES, build_chain_models, write_scene
from tests.e2e.conftest import chromium_browser
from tests.e2e.ui_helpers import (
    click_canvas_at,
    open_tab,
    search_by_upload_and_select_first,
    shot,
    write_object_crop,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def chain_server(tmp_path_factory):
    import os

    from app.cli.serve import build_context
    from tests.app.fakes import launch_test_app

    root = tmp_path_factory.mktemp("chain-e2e")
    data = root / "data"
    old = os.environ.pop("AGL_WEIGHTS", None)
    build_chain_models(data / "models")
    ctx = build_context(data, profile="cpu", segmenter="sam2")
    web, url = launch_test_app(ctx)
    uploads = [write_scene(root / "uploads" / f"scene_{i}.png", seed=50 + i) for i in range(2)]
    ui_uploads = [write_scene(root / "ui-uploads" / f"photo_{i}.png", seed=60 + i) for i in range(2)]
    yield {"ctx": ctx, "url": url, "uploads": uploads, "ui_uploads": ui_uploads, "root": root}
    web.close()
    ctx.registry.close()
    if old is not None:
        os.environ["AGL_WEIGHTS"] = old


@pytest.fixture(scope="module")
def chain_page(chain_server):
    with chromium_browser() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        context.set_default_timeout(60_000)
        pg = context.new_page()
        pg.goto(chain_server["url"])
        pg.get_by_role("tab", name="Auto-label").wait_for()
        yield pg
        context.close()


@pytest.fixture
def labeled(chain_server):
    """Two scenes labeled and saved through the workflows (project "chain"), once per module."""
    from app.workflows import autolabel_session as al

    ctx = chain_server["ctx"]
    if ctx.registry.count_objects(project="chain") == 0:  # a refined mask would not dedupe again
        images, _ = al.load_uploads([str(p) for p in chain_server["uploads"]])
        al.label_images(ctx.labeler(), images, SCENE_CLASSES, confidence=0.0)
        al.save(ctx, images, None, project="chain")
        ctx.registry.sync_outbox()
    assert ctx.registry.count_objects(project="chain") == 4
    return chain_server


def test_chain_autolabel_and_save(chain_page, chain_server, artifacts_dir):
    page, reg = chain_page, chain_server["ctx"].registry
    open_tab(page, "Auto-label")
    page.locator("#autolabel-files input[type=file]").set_input_files([str(p) for p in chain_server["ui_uploads"]])
    expect(page.locator("#autolabel-status")).to_contain_text("2 image(s) ready")
    page.locator("#autolabel-classes").get_by_role("textbox").fill("cat, dog")
    page.locator("#autolabel-project").get_by_role("textbox").fill("chain-ui")
    page.locator("#autolabel-run").click()
    expect(page.locator("#autolabel-status")).to_contain_text("Found 4 object(s) in 2 image(s)", timeout=120_000)
    expect(page.locator("#autolabel-table")).to_contain_text("cat")
    expect(page.locator("#autolabel-table")).to_contain_text("dog")
    shot(page, artifacts_dir, "chain_autolabel")
    page.locator("#autolabel-save").click()
    expect(page.locator("#autolabel-status")).to_contain_text("Saved 4 object(s)")
    objs = reg.list_objects(project="chain-ui", limit=10)
    assert sorted(o["category"] for o in objs) == ["cat", "cat", "dog", "dog"]
    assert {o["detection_model"] for o in objs} == {"florence-2-base"}
    assert all(reg.get_embedding(o["object_id"]) is not None for o in objs)


def test_chain_refine_with_sam2_clicks(chain_page, labeled, artifacts_dir, monkeypatch):
    page, ctx = chain_page, labeled["ctx"]
    reg = ctx.registry
    obj = reg.list_objects(category="cat", project="chain", limit=1)[0]
    seg = ctx.segmenter("sam2")
    predictions = []  # what SAM2 returned for each click (the server runs in this process)
    real_predict = seg.predict_points
    monkeypatch.setattr(seg, "predict_points", lambda *a, **k: predictions.append(real_predict(*a, **k)) or predictions[-1])
    open_tab(page, "Refine")
    expect(page.locator("#refine-segmenter").get_by_role("combobox")).to_have_value("SAM2")
    page.locator("#refine-object-id").get_by_role("textbox").fill(obj["object_id"])
    page.locator("#refine-open").click()
    expect(page.locator("#refine-info")).to_contain_text(obj["object_id"])
    calls = seg.encoder_calls
    x, y, w, h = obj["bbox_xywh"]
    page.locator("#refine-mode").get_by_text("add (positive)").click()
    for i, (px, py) in enumerate([(x + w * 0.5, y + h * 0.5), (x + w * 0.3, y + h * 0.6)], start=1):
        click_canvas_at(page, "refine", px, py)
        expect(page.locator("#refine-info")).to_contain_text(f"{i} clicks")
    shot(page, artifacts_dir, "chain_refine")
    # both clicks ran SAM2's decoder on the embedding auto-label (or seeding) computed
    assert len(predictions) == 2 and seg.encoder_calls == calls
    page.locator("#refine-accept").click()
    expect(page.locator("#refine-info")).to_contain_text("Saved the mask")
    after = reg.get_object(obj["object_id"])
    assert after["updated_at"] != obj["updated_at"] and after["area"] == int(predictions[-1].mask.sum()) > 0
    assert np.array_equal(reg.get_mask(obj["object_id"]), predictions[-1].mask)  # the mask SAM2 made is stored


def test_chain_review_approves(chain_page, labeled, artifacts_dir):
    page, reg = chain_page, labeled["ctx"].registry
    open_tab(page, "Review")
    page.locator("#review-reviewer").get_by_role("textbox").fill("chain-reviewer")
    page.locator("#review-load").click()
    expect(page.locator("#review-info")).to_contain_text("in queue")
    first = re.search(r"obj_[0-9A-Za-z_-]+", page.locator("#review-info").inner_text()).group(0)
    page.locator("#review-progress").click()
    page.keyboard.press("a")
    expect(page.locator("#review-info")).to_contain_text(f"Approved {first}")
    shot(page, artifacts_dir, "chain_review")
    got = reg.get_object(first)
    assert (got["validation_status"], got["validated_by"]) == ("approved", "chain-reviewer")


@pytest.mark.parametrize("category", SCENE_CLASSES)
def test_chain_search_by_uploaded_image(chain_page, labeled, artifacts_dir, category):
    """A stored object's own crop, uploaded, is segmented by SAM2 and embedded by DINOv2 like the
    stored objects: the first result is of its class (the tiny random DINOv2 tells a cat from a
    dog, cosine ~0.95 vs ~0.999, but not one cat from another)."""
    reg = labeled["ctx"].registry
    obj = reg.list_objects(category=category, project="chain", limit=1)[0]
    query = write_object_crop(reg, obj, labeled["root"] / "queries" / f"{category}.png")
    oid = search_by_upload_and_select_first(chain_page, query, artifacts_dir, f"chain_search_{category}")
    assert reg.get_object(oid)["category"] == category


def test_chain_export_coco_segment(chain_page, labeled, artifacts_dir):
    page, root = chain_page, labeled["root"]
    open_tab(page, "Export")
    page.locator("#export-name").get_by_role("textbox").fill("chain-coco")
    page.locator("#export-format").get_by_text("COCO segment", exact=True).click()
    page.locator("#export-run").click()
    link = page.locator("#export-file a").first
    expect(link).to_be_visible(timeout=60_000)
    with page.expect_download() as dl:
        link.click()
    target = root / "downloads" / dl.value.suggested_filename
    dl.value.save_as(target)
    out = root / "unzipped" / target.stem
    zipfile.ZipFile(target).extractall(out)
    from pycocotools.coco import COCO

    anns = [a for f in (out / "annotations").glob("instances_*.json") for a in COCO(str(f)).dataset["annotations"]]
    assert len(anns) == labeled["ctx"].registry.count_objects()
    assert all(a["area"] > 0 and a["segmentation"] for a in anns)
    shot(page, artifacts_dir, "chain_export")
