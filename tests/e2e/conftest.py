"""A real browser (Debian's Chromium via Playwright) against the app served in-process, wired
to the deterministic test-double detector and embedder plus the real GrabCut segmenter."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.app.fakes import launch_test_app, make_context, write_scene

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    ctx = make_context(root / "data")
    web, url = launch_test_app(ctx)
    uploads = [write_scene(root / "uploads" / f"photo_{i}.jpg", seed=i + 10, size=(360, 480)) for i in range(2)]
    yield {"ctx": ctx, "url": url, "uploads": uploads, "root": root}
    web.close()
    ctx.registry.close()


@pytest.fixture
def seeded(server):
    """Labeled objects in the registry (project "seed"), whatever ran before: each test that
    needs objects to review, refine, search or export gets them without depending on file order.

    Labeled by the same workflows the Auto-label tab calls (test-double detector, real GrabCut);
    saving again adds nothing (sources by content hash, objects by IoU dedupe).
    """
    from app.workflows import autolabel_session as al

    ctx = server["ctx"]
    paths = [write_scene(server["root"] / "seed" / f"seed_{i}.jpg", seed=i + 40, size=(360, 480)) for i in range(2)]
    images, bad = al.load_uploads([str(p) for p in paths])
    assert not bad
    assert not al.label_images(ctx.labeler(), images, ["red", "green", "blue"], confidence=0.0)
    al.save(ctx, images, None, project="seed")
    ctx.registry.sync_outbox()
    assert ctx.registry.count_objects(project="seed") == 6
    return server


@contextmanager
def chromium_browser():
    """Debian's Chromium under Playwright (never ``playwright install``: no downloads here)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's `chromium` package (./run.sh test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as b:
        yield b


@pytest.fixture(scope="module")
def page(browser, server, artifacts_dir: Path):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(30_000)
    pg = context.new_page()
    pg.on("pageerror", lambda exc: print(f"[browser pageerror] {exc}"))
    pg.goto(server["url"])
    pg.get_by_role("tab", name="Auto-label").wait_for()
    yield pg
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps a screenshot of the page when an e2e test fails."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed and "page" in item.fixturenames:
        pg = item.funcargs.get("page")
        if pg is not None:
            from tests.conftest import ARTIFACTS

            ARTIFACTS.mkdir(exist_ok=True)
            try:
                pg.screenshot(path=str(ARTIFACTS / f"FAILED_{item.name}.png"), full_page=True)
            except Exception:
                pass
