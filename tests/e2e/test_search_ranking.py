"""The Search tab's "Ranking" accordion in Chromium: search by an object id over objects with
known embeddings, type a "validated" fusion weight, and the validated object moves to the top
(gallery order and the ranking table's stage/score columns)."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.app.test_search_ranking_ui import seed_known
from tests.e2e.ui_helpers import open_tab, shot

pytestmark = pytest.mark.e2e


def table_order(page) -> list[str]:
    """Object ids in the ranking table, top to bottom."""
    return re.findall(r"obj_[0-9A-Za-z_-]+", grid(page).inner_text())


def grid(page):
    """The ranking table (Gradio's Dataframe renders a role=grid)."""
    return page.locator("#search-ranking").get_by_role("grid")


def test_validated_weight_moves_the_validated_object_to_the_top(page, server, artifacts_dir):
    ids = seed_known(server["ctx"].registry, server["root"])
    open_tab(page, "Search")
    page.locator("#search-object-id textarea, #search-object-id input").first.fill(ids["Q"])
    page.locator("#search-run").click()
    expect(page.locator("#search-status")).to_contain_text(f"result(s) similar to {ids['Q']}")
    expect(grid(page)).to_contain_text(ids["C"])
    assert table_order(page)[:3] == [ids["A"], ids["B"], ids["C"]]  # plain similarity 0.9, 0.8, 0.5
    expect(grid(page)).not_to_contain_text("fused")

    page.get_by_text("Ranking", exact=True).first.click()  # the collapsed accordion
    weight = page.locator("#search-w-validated input")
    expect(weight).to_be_visible()
    weight.fill("0.2")
    weight.press("Tab")
    page.locator("#search-run").click()
    expect(grid(page)).to_contain_text("fused")
    assert table_order(page)[:3] == [ids["B"], ids["A"], ids["C"]]  # B: 0.8 + 0.2 > A: 0.9
    cells = [c.strip() for c in grid(page).get_by_role("row").nth(1).get_by_role("gridcell").all_inner_texts()]
    # rank, id, category, stage, score = 0.8 + 0.2, similarity, then w·sim, w·category, w·conf, w·validated
    assert cells == ["1", ids["B"], "cat", "fused", "1", "0.8", "0.8", "0", "0", "0.2"]
    expect(page.locator("#search-gallery")).to_contain_text("cat · fused 1.00 · sim 0.80")
    shot(page, artifacts_dir, "search_ranking")
