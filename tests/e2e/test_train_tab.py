"""The Train tab in a real browser: pick a dataset version, start a tiny 1-epoch run (64 px), see
the per-epoch chart, the log and the runs list update, evaluate the run and see its AP table,
confusion matrix and PR curves."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from registry.datasets import build_dataset
from tests.app.fakes import launch_test_app, make_context
from tests.e2e.ui_helpers import choose, open_tab, shot
from tests.registry.export_helpers import populate

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def train_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-e2e")
    ctx = make_context(root / "data")
    populate(ctx.registry, root / "raw", 10)
    built = build_dataset(ctx.registry, "shapes", None, [0.6, 0.2, 0.2], 0)
    web, url = launch_test_app(ctx)
    yield {"ctx": ctx, "url": url, "built": built}
    web.close()
    ctx.registry.close()


@pytest.fixture
def train_page(browser, train_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    pg = context.new_page()
    pg.goto(train_server["url"])
    pg.get_by_role("tab", name="Train").wait_for()
    yield pg
    context.close()


def test_train_tab_runs_a_tiny_model_and_shows_chart_runs_and_evaluation(train_page, train_server, artifacts_dir):
    page, reg = train_page, train_server["ctx"].registry
    open_tab(page, "Train")
    choose(page, "#train-dataset", "shapes v1")
    page.locator("#train-epochs input").fill("1")
    page.locator("#train-imgsz input").fill("64")
    page.locator("#train-batch input").fill("4")
    page.locator("#train-start").click()
    expect(page.locator("#train-status")).to_contain_text("run_", timeout=60_000)
    runs = page.locator("#train-runs")
    expect(runs).to_contain_text("finished", timeout=120_000)  # the timer refreshes the list
    expect(page.locator("#train-log textarea")).to_have_value(
        re.compile(r"epoch 1/1: box_loss [0-9.]+ · mAP50 [0-9.]+"), timeout=30_000)
    run = reg.list_runs()[0]
    assert run["status"] == "finished" and len(reg.run_epochs(run["run_id"])) == 1
    expect(runs).to_contain_text(run["run_id"])
    expect(page.locator("#train-chart canvas, #train-chart svg").first).to_be_visible(timeout=30_000)
    # vega draws on a canvas; its accessible text names the axes and the y range of the values
    expect(page.locator("#train-chart")).to_contain_text("epoch")
    expect(page.locator("#train-chart")).to_contain_text("metric")
    shot(page, artifacts_dir, "train_chart")

    page.locator("#train-evaluate").click()
    expect(page.locator("#train-eval-summary")).to_contain_text("bbox mAP", timeout=60_000)
    expect(page.locator("#train-eval-table")).to_contain_text("person/rider")
    expect(page.locator("#train-confusion img")).to_be_visible()
    expect(page.locator("#train-pr img")).to_be_visible()
    assert (reg.get_run(run["run_id"])["metadata"] or {}).get("eval", {}).get("test")
    shot(page, artifacts_dir, "train_eval")

    # the trained run is now a detector choice in the Auto-label tab (listed when the dropdown opens)
    open_tab(page, "Auto-label")
    choose(page, "#autolabel-detector", run["run_id"])
    expect(page.locator("#autolabel-detector input").first).to_have_value(re.compile(run["run_id"]))
