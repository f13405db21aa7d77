"""Errors in the browser show as a toast and in the status line, never as Gradio's red "Error"
badge on the outputs (which covers the image, the table and the Keep list and blocks clicks
until each is dismissed). Screenshots land in test-artifacts/calm_*.png."""
from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.ui_helpers import fresh_page, open_tab

pytestmark = pytest.mark.e2e

OUTPUTS = ["#autolabel-overlay", "#autolabel-canvas-data", "#autolabel-table", "#autolabel-keep", "#autolabel-which"]
# Gradio 6's status tracker marks a failed output with <span class="error">Error</span> (+ a clear button)
ERROR_BADGE = "span.error"


def drag_canvas(page, name: str, a: tuple[float, float], b: tuple[float, float]) -> None:
    """Drags a box on the labeling canvas from image pixel ``a`` to ``b`` (assets/canvas.js)."""
    page.wait_for_function("(n) => { const c = window.aglCanvas && window.aglCanvas.inst[n]; return c && c.img && !c.batch; }",
                           arg=name)
    pts = [page.evaluate("([n, x, y]) => window.aglCanvas.inst[n].clientPoint(x, y)", [name, *p]) for p in (a, b)]
    page.mouse.move(*pts[0])
    page.mouse.down()
    page.mouse.move(*pts[1], steps=5)
    page.mouse.up()


def test_second_corner_without_class_warns_without_covering_outputs(page, server, artifacts_dir: Path):
    open_tab(page, "Auto-label")
    page.locator("#autolabel-files input[type=file]").set_input_files([str(server["uploads"][0])])
    expect(page.locator("#autolabel-status")).to_contain_text("1 image(s) ready")
    page.locator("#autolabel-manual").get_by_text("Label by hand").click()
    page.locator("#autolabel-manual-class").get_by_role("textbox").fill("")
    drag_canvas(page, "autolabel", (40, 40), (160, 140))

    expect(page.locator("#autolabel-status")).to_contain_text("Type the class of the box")
    toast = page.locator(".toast-body", has_text="Type the class of the box")
    expect(toast.first).to_be_visible()
    page.screenshot(path=str(artifacts_dir / "calm_error.png"), full_page=True)
    for sel in OUTPUTS:
        expect(page.locator(f"{sel} {ERROR_BADGE}")).to_have_count(0)
        expect(page.locator(sel).get_by_text("Error", exact=True)).to_have_count(0)

    # the next drag still works: with a class typed, it adds the box
    page.locator("#autolabel-manual-class").get_by_role("textbox").fill("thing")
    drag_canvas(page, "autolabel", (40, 40), (160, 140))
    expect(page.locator("#autolabel-status")).to_contain_text("Added a thing box", timeout=60_000)
    expect(page.locator("#autolabel-table")).to_contain_text("thing")
    page.screenshot(path=str(artifacts_dir / "calm_after.png"), full_page=True)


@pytest.fixture(scope="module")
def no_embedder_server(tmp_path_factory):
    from tests.app.fakes import launch_test_app, make_context, write_scene

    root = tmp_path_factory.mktemp("e2e_noemb")
    ctx = make_context(root / "data", with_embedder=False)
    web, url = launch_test_app(ctx)
    query = write_scene(root / "uploads" / "query.jpg", seed=3, size=(200, 240))
    yield {"ctx": ctx, "url": url, "query": query}
    web.close()
    ctx.registry.close()


def test_search_tab_says_up_front_what_works_without_embedder(browser, no_embedder_server, artifacts_dir: Path):
    with fresh_page(browser) as pg:
        pg.goto(no_embedder_server["url"])
        open_tab(pg, "Search")
        notice = pg.locator("#search-notice")
        expect(notice).to_contain_text("No image-embedder weights are installed")
        expect(notice).to_contain_text("by object id works")
        pg.locator("#search-query input[type=file]").set_input_files(str(no_embedder_server["query"]))
        expect(pg.locator("#search-query img").first).to_be_visible()
        pg.locator("#search-run").click()
        expect(pg.locator("#search-status")).to_contain_text("Search by object id instead")
        expect(pg.locator(f"#search-gallery {ERROR_BADGE}")).to_have_count(0)
        pg.screenshot(path=str(artifacts_dir / "calm_search_notice.png"), full_page=True)
