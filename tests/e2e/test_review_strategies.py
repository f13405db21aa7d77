"""Review tab in Chromium: choosing the "diversity" order changes the queue. Seeded objects with
known embeddings: three low-confidence near-duplicates next to an already approved object
(cluster A), and one object each in clusters B and C. Least-confident shows A's duplicates first;
diversity (k-center seeded with the approved object) shows B and C first; "lowest quality score
first" follows the stored quality scores (shown in the info line)."""
from __future__ import annotations

import re

import numpy as np
from playwright.sync_api import expect

from registry.facade import ObjectIn
from tests.app.fakes import write_scene
from tests.e2e.ui_helpers import open_tab, shot

CONF = {"a1": 0.11, "a2": 0.12, "a3": 0.13, "b": 0.55, "c": 0.65}


def _seed(server, category: str, image_seed: int) -> dict:
    """The six objects (class ``category``) on a new scene; returns name -> object id."""
    reg = server["ctx"].registry
    dim = reg.embedding_dim
    src = reg.register_source(write_scene(server["root"] / category / "scene.jpg", seed=image_seed, size=(240, 320)))
    basis = np.eye(dim, dtype=np.float32)
    rows = {"a0": (basis[0], None, "approved"), "a1": (basis[0] + 0.01 * basis[3], CONF["a1"], "pending"),
            "a2": (basis[0] + 0.011 * basis[4], CONF["a2"], "pending"),
            "a3": (basis[0] + 0.012 * basis[5], CONF["a3"], "pending"),
            "b": (basis[1], CONF["b"], "pending"), "c": (basis[2], CONF["c"], "pending")}
    objs = [ObjectIn(category=category, xyxy=(10 + 40 * k, 20, 45 + 40 * k, 60), confidence=conf if conf else 0.9,
                     embedding=vec / np.linalg.norm(vec), validation_status=status,
                     validated_by="seed" if status != "pending" else None, metadata={"seed": name})
            for k, (name, (vec, conf, status)) in enumerate(rows.items())]
    ids = reg.register_objects(src, objs, dedupe=False).object_ids
    return dict(zip(rows, ids, strict=True))


def _load(page, category: str, order: str) -> str:
    page.locator("#review-filter-category input").first.fill(category)
    page.locator("#review-filter-category input").first.press("Enter")
    page.locator("#review-filter-order input").first.click()
    page.get_by_role("option").filter(has_text=order).first.click()
    page.locator("#review-load").click()
    # The info line names the shown object's category: waiting for it (not only "in queue",
    # which the previous queue's text also holds) waits for this load's answer.
    expect(page.locator("#review-info")).to_contain_text(f"{category} · ")
    expect(page.locator("#review-info")).to_contain_text("in queue")
    return page.locator("#review-info").inner_text()


def _shown(page) -> str:
    return re.search(r"obj_[0-9A-Za-z_-]+", page.locator("#review-info").inner_text()).group(0)


def test_review_diversity_order_changes_the_queue(page, server, artifacts_dir):
    ids = _seed(server, "widget", 77)
    name_of = {v: k for k, v in ids.items()}
    open_tab(page, "Review")
    info = _load(page, "widget", "least confident first")
    assert name_of[_shown(page)] == "a1" and "confidence 0.110" in info
    info = _load(page, "widget", "diversity (k-center on embeddings)")
    expect(page.locator("#review-info")).not_to_contain_text(ids["a1"])
    first = name_of[_shown(page)]
    assert first in ("b", "c"), info
    assert "of 5 in queue" in info
    shot(page, artifacts_dir, "review_diversity")
    page.locator("#review-next").click()
    expect(page.locator("#review-info")).not_to_contain_text(ids[first])
    second = name_of[_shown(page)]
    assert {first, second} == {"b", "c"}  # both new clusters before any of A's near-duplicates
    page.locator("#review-next").click()
    expect(page.locator("#review-info")).not_to_contain_text(ids[second])
    assert name_of[_shown(page)] in ("a1", "a2", "a3")


def test_review_lowest_quality_first(page, server, artifacts_dir):
    from registry.patches import set_quality_scores

    ids = _seed(server, "gadget", 78)
    set_quality_scores(server["ctx"].registry.connection, {ids["c"]: 0.05, ids["a2"]: 0.2, ids["b"]: 0.9})
    open_tab(page, "Review")
    info = _load(page, "gadget", "lowest quality score first")
    assert _shown(page) == ids["c"] and "quality 0.05" in info, info
    page.locator("#review-next").click()
    expect(page.locator("#review-info")).to_contain_text("quality 0.20")
    assert _shown(page) == ids["a2"]
    shot(page, artifacts_dir, "review_quality")
