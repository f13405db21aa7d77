"""Playwright helpers shared by the browser tests: open a tab, click an image or the labeling
canvas at a natural pixel, pick a dropdown option, save a screenshot. (x, y) = (column, row)
in the image's own pixels."""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from playwright.sync_api import expect


@contextmanager
def fresh_page(browser) -> Iterator:
    """A page in a browser context of its own (no cookies shared with the module's ``page``),
    closed afterwards."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    expect(page.get_by_role("tab", name=name)).to_have_attribute("aria-selected", "true")


def click_image_at(page, container: str, x: float, y: float) -> None:
    """Clicks natural pixel (x, y) of the <img> in ``container``.

    Gradio shows images scaled down to fit, never up (object-fit: scale-down), centred in the
    <img> box; its own click mapping uses the same rule.
    """
    img = page.locator(f"{container} img").first
    expect(img).to_be_visible()
    page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=img.element_handle())
    nw, nh = img.evaluate("el => [el.naturalWidth, el.naturalHeight]")
    box = img.bounding_box()
    scale = min(box["width"] / nw, box["height"] / nh, 1.0)
    ox = box["x"] + (box["width"] - nw * scale) / 2
    oy = box["y"] + (box["height"] - nh * scale) / 2
    page.mouse.click(ox + (x + 0.5) * scale, oy + (y + 0.5) * scale)


def click_canvas_at(page, name: str, x: float, y: float, **kw) -> None:
    """Clicks image pixel (x, y) on the labeling canvas ``name`` (assets/canvas.js: "refine",
    "autolabel") and waits until the canvas shows the server's answer."""
    page.wait_for_function("(n) => { const c = window.aglCanvas && window.aglCanvas.inst[n]; return c && c.img && c.data; }",
                           arg=name)
    before = page.evaluate("(n) => window.aglCanvas.inst[n].data.seq", name)
    cx, cy = page.evaluate("([n, x, y]) => window.aglCanvas.inst[n].clientPoint(x + 0.5, y + 0.5)", [name, x, y])
    page.mouse.click(cx, cy, **kw)
    page.wait_for_function("([n, s]) => { const c = window.aglCanvas.inst[n]; return c.data.seq > s && !c.batch; }",
                           arg=[name, before])


def shot(page, artifacts_dir: Path, name: str) -> None:
    page.screenshot(path=str(artifacts_dir / f"tab_{name}.png"), full_page=True)


def choose(page, container: str, option_text: str) -> None:
    """Opens a Gradio dropdown and clicks the option whose label contains ``option_text``."""
    page.locator(f"{container} input").first.click()
    page.get_by_role("option").filter(has_text=option_text).first.click()


def search_by_upload_and_select_first(page, image: Path, artifacts_dir: Path, name: str) -> str:
    """Uploads ``image`` in the Search tab, runs the search, clicks the first result; its id."""
    open_tab(page, "Search")
    page.locator("#search-query input[type=file]").set_input_files(str(image))
    expect(page.locator("#search-query img")).to_be_visible()
    page.locator("#search-run").click()
    expect(page.locator("#search-status")).to_contain_text("result(s) similar to the image")
    thumbs = page.locator("#search-gallery img")
    expect(thumbs.first).to_be_visible()
    shot(page, artifacts_dir, name)
    thumbs.first.click()
    expect(page.locator("#search-selected")).to_contain_text("Selected")
    return re.search(r"obj_[0-9A-Za-z_-]+", page.locator("#search-selected").inner_text()).group(0)


def write_object_crop(reg, obj: dict, path: Path) -> Path:
    """Writes the box of a stored object, cut out of its source image, as a PNG to upload."""
    import cv2

    from pipeline.image_io import load_image

    image = load_image(reg.get_source(obj["source_id"])["file_path"])
    x, y, w, h = obj["bbox_xywh"]
    crop = image[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2BGR))
    return path
