"""The Classify tab in Chromium: build a domain from validated objects, classify a stored
object and an uploaded image, look at the most similar pending objects, apply the verdict."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.pipeline.classify.seed import seed_clusters

pytestmark = pytest.mark.e2e


def test_build_classify_and_apply_to_similar_pending(page, server, artifacts_dir):
    ctx = server["ctx"]
    reg = ctx.registry
    info = seed_clusters(reg, server["root"] / "classify-seed", project="clf")
    reg.sync_outbox()
    ants = [i for i, t in info["pending"].items() if t == "ant"]
    assert len(ants) == 2 and len(info["approved"]) == 12

    page.get_by_role("tab", name="Classify").click()
    expect(page.locator("#classify-notice")).to_contain_text("uploaded image")
    page.locator("#classify-build-box").get_by_text("Build a domain from validated objects").click()
    page.locator("#classify-new-name").get_by_role("textbox").fill("bugs")
    page.locator("#classify-new-cats").get_by_role("textbox").fill("ant, bee, cat")
    page.locator("#classify-build").click()
    expect(page.locator("#classify-status")).to_contain_text("Built domain bugs: ant 4, bee 4, cat 4")
    expect(page.locator("#classify-domain").get_by_role("combobox")).to_have_value("bugs")

    # a stored object (its embedding): the S4-shaped answer
    page.locator("#classify-object-id").get_by_role("textbox").fill(ants[0])
    page.locator("#classify-run").click()
    answer = page.locator("#classify-answer")
    expect(answer).to_contain_text(f"Object {ants[0]}: verdict ant")
    expect(answer).to_contain_text("unknown: no")
    expect(answer).to_contain_text("s1")
    expect(answer).to_contain_text("margin")
    expect(page.locator("#classify-topk")).to_contain_text("ant")
    expect(page.locator("#classify-topk")).to_contain_text("bee")

    # the 2 most similar pending objects, then a confirming click
    n = page.locator("#classify-n input[type=number]")
    n.fill("2")
    n.press("Enter")
    page.locator("#classify-show").click()
    expect(page.locator("#classify-status")).to_contain_text("2 similar pending object(s) shown")
    expect(page.locator("#classify-gallery img")).to_have_count(2)
    apply = page.locator("#classify-apply")
    expect(apply).to_have_text("Apply 'ant' to these 2 objects")
    page.screenshot(path=str(artifacts_dir / "tab_classify_similar.png"), full_page=True)
    assert [o["category"] for o in reg.get_objects(ants)] == ["thing", "thing"]
    apply.click()
    expect(page.locator("#classify-status")).to_contain_text("Applied ant to 2 object(s)")
    expect(apply).to_be_hidden()
    after = {o["object_id"]: o for o in reg.get_objects(list(info["pending"]))}
    for oid, truth in info["pending"].items():
        want = "ant" if oid in ants else "thing"
        assert after[oid]["category"] == want, (oid, truth, after[oid]["category"])
        assert after[oid]["validation_status"] == "pending"

    # an uploaded image, embedded by the app's embedder: unlike every bug, so unknown
    page.locator("#classify-object-id").get_by_role("textbox").fill("")
    page.locator("#classify-query input[type=file]").set_input_files(str(server["uploads"][0]))
    page.locator("#classify-run").click()
    expect(answer).to_contain_text("The image: verdict unknown")
    expect(answer).to_contain_text("unknown: yes")
    page.screenshot(path=str(artifacts_dir / "tab_classify_upload.png"), full_page=True)
