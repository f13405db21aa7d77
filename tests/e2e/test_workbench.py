"""Clicking through every tab in Chromium: auto-label, refine, review by keyboard, search,
export (downloaded zips unpacked), stats. The tests share one page and registry, but none
depends on another: those that need objects take the ``seeded`` fixture and read what they
expect from the registry, so each passes alone (``pytest -k``) and in any order.
Screenshots of each tab land in test-artifacts/."""
from __future__ import annotations

import json
import re
import time
import zipfile

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.e2e.ui_helpers import (
    click_canvas_at,
    open_tab,
    search_by_upload_and_select_first,
    shot,
    write_object_crop,
)

pytestmark = pytest.mark.e2e

TIMINGS: dict[str, list[float]] = {}




def test_autolabel_upload_run_and_save(page, server, artifacts_dir):
    open_tab(page, "Auto-label")
    page.locator("#autolabel-files input[type=file]").set_input_files([str(p) for p in server["uploads"]])
    expect(page.locator("#autolabel-status")).to_contain_text("2 image(s) ready")
    page.locator("#autolabel-classes").get_by_role("textbox").fill("red, green, blue")
    page.locator("#autolabel-project").get_by_role("textbox").fill("e2e")
    page.locator("#autolabel-run").click()
    expect(page.locator("#autolabel-status")).to_contain_text("Found **6**".replace("**", ""), timeout=60_000)
    page.wait_for_function("() => { const c = window.aglCanvas.inst.autolabel; return c && c.img && c.data.objects.length === 3; }")
    expect(page.locator("#autolabel-table")).to_contain_text("green")
    shot(page, artifacts_dir, "autolabel")
    page.locator("#autolabel-save").click()
    expect(page.locator("#autolabel-status")).to_contain_text("Saved 6 object(s)")
    assert server["ctx"].registry.count_objects(project="e2e") == 6
    # saving the same images again adds nothing (sources by hash, objects by IoU dedupe)
    page.locator("#autolabel-save").click()
    expect(page.locator("#autolabel-status")).to_contain_text("Saved 0 object(s)")
    assert server["ctx"].registry.count_objects(project="e2e") == 6


def test_refine_two_clicks_and_accept(page, seeded, artifacts_dir, monkeypatch):
    reg = seeded["ctx"].registry
    obj = reg.list_objects(category="green", project="seed", limit=1)[0]
    area_before = obj["area"]
    seg = seeded["ctx"].segmenter("grabcut")
    predictions = []  # what GrabCut returned for each click (the server runs in this process)
    real_predict = seg.predict_points
    monkeypatch.setattr(seg, "predict_points", lambda *a, **k: predictions.append(real_predict(*a, **k)) or predictions[-1])
    open_tab(page, "Refine")
    page.locator("#refine-object-id").get_by_role("textbox").fill(obj["object_id"])
    page.locator("#refine-open").click()
    expect(page.locator("#refine-info")).to_contain_text(obj["object_id"])
    x, y, w, h = obj["bbox_xywh"]
    page.locator("#refine-mode").get_by_text("add (positive)").click()
    for i, (px, py) in enumerate([(x + w * 0.5, y + h * 0.5), (x + w * 0.3, y + h * 0.7)], start=1):
        t0 = time.perf_counter()
        click_canvas_at(page, "refine", px, py)
        expect(page.locator("#refine-info")).to_contain_text(f"{i} clicks", timeout=30_000)
        expect(page.locator("#refine-cv")).to_be_visible()
        TIMINGS.setdefault("click_to_mask_s", []).append(time.perf_counter() - t0)
    server_ms = float(page.locator("#refine-click-ms").inner_text())
    TIMINGS.setdefault("server_ms", []).append(server_ms)
    shot(page, artifacts_dir, "refine")
    page.locator("#refine-accept").click()
    expect(page.locator("#refine-info")).to_contain_text("Saved the mask")
    after = reg.get_object(obj["object_id"])
    assert len(predictions) == 2  # one segmenter run per click
    assert np.array_equal(reg.get_mask(obj["object_id"]), predictions[-1].mask)  # the clicked mask is stored
    assert 0.8 * area_before < after["area"] < 1.2 * area_before
    assert after["updated_at"] != obj["updated_at"]


def test_review_approve_and_reject_with_keyboard(page, seeded, artifacts_dir):
    reg = seeded["ctx"].registry
    total = reg.count_objects()
    validated = reg.count_objects(status=["approved", "rejected"])
    open_tab(page, "Review")
    expect(page.locator("#review-shortcuts")).to_contain_text("approve")
    page.locator("#review-reviewer").get_by_role("textbox").fill("e2e-reviewer")
    page.locator("#review-load").click()
    expect(page.locator("#review-info")).to_contain_text("in queue")
    first = re.search(r"obj_[0-9A-Za-z_-]+", page.locator("#review-info").inner_text()).group(0)
    page.locator("#review-progress").click()  # focus outside any text field
    page.keyboard.press("a")
    expect(page.locator("#review-info")).to_contain_text(f"Approved {first}")
    second = re.findall(r"obj_[0-9A-Za-z_-]+", page.locator("#review-info").inner_text())[-1]
    assert second != first
    page.keyboard.press("r")
    expect(page.locator("#review-info")).to_contain_text(f"Rejected {second}")
    expect(page.locator("#review-progress")).to_contain_text(f"Validated {validated + 2} / {total}")
    shot(page, artifacts_dir, "review")
    a, r = reg.get_object(first), reg.get_object(second)
    assert (a["validation_status"], a["validated_by"]) == ("approved", "e2e-reviewer")
    assert r["validation_status"] == "rejected"
    assert a["confidence"] <= r["confidence"]  # least confident first


def test_search_with_uploaded_image_and_open_result(page, seeded, artifacts_dir):
    reg = seeded["ctx"].registry
    green = reg.list_objects(category="green", project="seed", limit=1)[0]
    query = write_object_crop(reg, green, seeded["root"] / "queries" / "green.png")
    oid = search_by_upload_and_select_first(page, query, artifacts_dir, "search")
    assert reg.get_object(oid)["category"] == "green"  # a crop of a green square finds a green square
    page.locator("#search-to-refine").click()
    expect(page.get_by_role("tab", name="Refine")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#refine-info")).to_contain_text(oid)


@pytest.mark.parametrize("fmt,expect_file", [("YOLO segment", "data.yaml"), ("COCO detect", "annotations/instances_train.json")])
def test_export_downloads_zip(page, seeded, artifacts_dir, fmt, expect_file):
    server = seeded
    open_tab(page, "Export")
    page.locator("#export-name").get_by_role("textbox").fill("e2e-" + fmt.split()[0].lower())
    page.locator("#export-format").get_by_text(fmt, exact=True).click()
    page.locator("#export-run").click()
    link = page.locator("#export-file a").first
    expect(link).to_be_visible(timeout=60_000)
    with page.expect_download() as dl:
        link.click()
    target = server["root"] / "downloads" / dl.value.suggested_filename
    dl.value.save_as(target)
    names = zipfile.ZipFile(target).namelist()
    assert expect_file in names, names[:20]
    out = server["root"] / "unzipped" / target.stem
    zipfile.ZipFile(target).extractall(out)
    reg = server["ctx"].registry
    expected = reg.count_objects() - reg.count_objects(status="rejected")  # every object but the rejected ones
    assert expected > 0  # the seeded objects (the Review test may have rejected one of them)
    if fmt.startswith("COCO"):
        from pycocotools.coco import COCO

        anns = [a for f in (out / "annotations").glob("instances_*.json") for a in COCO(str(f)).dataset["annotations"]]
        assert len(anns) == expected and all(a["area"] > 0 and a["bbox"][2] > 0 and a["bbox"][3] > 0 for a in anns)
    else:
        rows = [line.split() for p in (out / "labels").rglob("*.txt") for line in p.read_text().splitlines() if line.strip()]
        # segment lines: class id, then a polygon of at least 3 normalised (x, y) points
        assert len(rows) == expected and all(len(r) >= 7 and len(r) % 2 == 1 for r in rows), rows[:3]
        assert all(0 <= float(v) <= 1 for r in rows for v in r[1:])
    expect(page.locator("#export-counts")).to_contain_text("train")
    shot(page, artifacts_dir, f"export_{fmt.split()[0].lower()}")


def test_stats_tab(page, seeded, artifacts_dir):
    open_tab(page, "Stats")
    page.locator("#stats-refresh").click()
    expect(page.locator("#stats-summary")).to_contain_text(f"{seeded['ctx'].registry.count_objects()} objects")
    expect(page.locator("#stats-categories")).to_contain_text("green")
    shot(page, artifacts_dir, "stats")
    (artifacts_dir / "e2e_timings.json").write_text(json.dumps(TIMINGS, indent=2))
    print("click-to-updated-mask (browser, s):", TIMINGS.get("click_to_mask_s"), "server ms:", TIMINGS.get("server_ms"))


def test_after_save_open_the_saved_objects_in_refine_and_review(page, server, artifacts_dir):
    """Save shows the ids it stored, with buttons to open them: Refine (the picked one) and
    Review (a queue of exactly those)."""
    from tests.app.fakes import write_scene

    reg = server["ctx"].registry
    fresh = write_scene(server["root"] / "jump" / "jump_0.jpg", seed=77, size=(360, 480))
    open_tab(page, "Auto-label")
    clear = page.locator("#autolabel-files").get_by_role("button", name="Clear")
    if clear.count():  # an earlier test's uploads: the File box adds to them, so clear first
        clear.first.click()
        expect(page.locator("#autolabel-files").get_by_text(".jpg")).to_have_count(0)
    page.locator("#autolabel-files input[type=file]").set_input_files([str(fresh)])
    expect(page.locator("#autolabel-status")).to_contain_text("1 image(s) ready")
    page.locator("#autolabel-classes").get_by_role("textbox").fill("red, green, blue")
    page.locator("#autolabel-project").get_by_role("textbox").fill("jump")
    page.locator("#autolabel-run").click()
    expect(page.locator("#autolabel-status")).to_contain_text("Found 3", timeout=60_000)
    page.locator("#autolabel-save").click()
    expect(page.locator("#autolabel-status")).to_contain_text("Saved ids")
    ids = [o["object_id"] for o in reg.list_objects(project="jump", limit=10)]
    assert len(ids) == 3
    for oid in ids:
        expect(page.locator("#autolabel-status")).to_contain_text(oid)
    expect(page.locator("#autolabel-saved-row")).to_be_visible()
    picked = page.locator("#autolabel-saved input").input_value()
    assert picked in ids
    shot(page, artifacts_dir, "autolabel_saved")
    page.locator("#autolabel-to-refine").click()
    expect(page.get_by_role("tab", name="Refine")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#refine-info")).to_contain_text(picked)
    expect(page.locator("#refine-object-id").get_by_role("textbox")).to_have_value(picked)
    shot(page, artifacts_dir, "refine_from_save")
    open_tab(page, "Auto-label")
    page.locator("#autolabel-to-review").click()
    expect(page.get_by_role("tab", name="Review")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#review-info")).to_contain_text("of 3 in queue")
    shown = page.locator("#review-info").inner_text()
    assert sum(oid in shown for oid in ids) == 1
