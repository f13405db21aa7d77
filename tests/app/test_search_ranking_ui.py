"""The Search tab's "Ranking" options (re-rank ×m, fusion weights) reach ``Registry.search`` and
change the order as docs/search.md says, on objects seeded with known embeddings."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from app.ui.app import build_app
from app.workflows import search as sw
from registry.facade import ObjectIn
from tests.app.fakes import make_context, write_scene
from tests.app.test_ui_handlers import handler


def seed_known(reg, root: Path) -> dict[str, str]:
    """Four objects with known embeddings (any dim >= 3) in one scene, project "ranking".

    Cosines to the query object Q (e0): A 0.9 (dog, pending, conf 0.1), B 0.8 (cat, approved,
    conf 0.9), C 0.5 (cat, pending, conf 0.5). Plain similarity ranks A, B, C; a "validated"
    weight above 0.1 lifts B over A (0.8 + w > 0.9).

    Returns:
        {"Q": id, "A": id, "B": id, "C": id}.
    """
    dim = reg.embedding_dim

    def vec(c: float, axis: int) -> np.ndarray:
        v = np.zeros(dim, np.float32)
        v[0], v[axis] = c, np.sqrt(1 - c * c)
        return v

    src = write_scene(root / "ranking_scene.png", seed=77, size=(200, 240))
    sid = reg.register_source(src, project="ranking")
    ids = reg.register_objects(sid, [
        ObjectIn("query", (10, 10, 60, 60), confidence=0.5, embedding=vec(1.0, 1)),
        ObjectIn("dog", (70, 10, 120, 60), confidence=0.1, embedding=vec(0.9, 1)),
        ObjectIn("cat", (130, 10, 180, 60), confidence=0.9, embedding=vec(0.8, 2), validation_status="approved",
                 validated_by="seed"),
        ObjectIn("cat", (10, 100, 60, 150), confidence=0.5, embedding=vec(0.5, 1)),
    ], dedupe=False).object_ids
    reg.sync_outbox()
    return dict(zip("QABC", ids, strict=True))


@pytest.fixture
def ranked(data_dir):
    ctx = make_context(data_dir)
    ids = seed_known(ctx.registry, data_dir.parent)
    yield ctx, ids
    ctx.registry.close()


def _order(hits: list[dict], ids: dict[str, str]) -> str:
    name = {v: k for k, v in ids.items()}
    return "".join(name[h["object_id"]] for h in hits)


def test_ranking_options_reach_registry_search_and_reorder_as_documented(ranked, monkeypatch):
    ctx, ids = ranked
    reg = ctx.registry
    calls: list[dict] = []
    real = reg.search

    def spy(vector, **kw):
        calls.append(kw)
        return real(vector, **kw)

    monkeypatch.setattr(reg, "search", spy)
    plain = sw.search_by_object(reg, ids["Q"], k=3)
    assert _order(plain, ids) == "ABC"
    assert not {"rerank", "fusion", "fusion_category"} & set(calls[-1])  # defaults: today's call
    assert sw.search_by_object(reg, ids["Q"], k=3, ranking=sw.SearchRanking()) == plain

    # validated: B 0.8 + 0.15 = 0.95 > A 0.9; C stays last
    val = sw.search_by_object(reg, ids["Q"], k=3, ranking=sw.SearchRanking(validated=0.15))
    assert calls[-1]["fusion"] == {"similarity": 1.0, "category": 0.0, "confidence": 0.0, "validated": 0.15}
    assert _order(val, ids) == "BAC"
    top = val[0]
    assert top["stage"] == "fused" and top["score"] == pytest.approx(0.95)
    assert top["score_components"]["validated"] == pytest.approx(0.15)
    assert top["score_components"]["similarity"] == pytest.approx(0.8)
    # a weight below the 0.1 gap keeps the similarity order
    assert _order(sw.search_by_object(reg, ids["Q"], k=3, ranking=sw.SearchRanking(validated=0.05)), ids) == "ABC"

    # category: both cats gain 0.6 -> B 1.4, C 1.1, A 0.9
    cat = sw.search_by_object(reg, ids["Q"], k=3, ranking=sw.SearchRanking(category=0.6, fusion_category="cat"))
    assert calls[-1]["fusion_category"] == "cat" and _order(cat, ids) == "BCA"
    # confidence alone (similarity weight 0): B 0.9, C 0.5, A 0.1
    conf = sw.search_by_object(reg, ids["Q"], k=3, ranking=sw.SearchRanking(similarity=0.0, confidence=1.0))
    assert _order(conf, ids) == "BCA" and conf[2]["score"] == pytest.approx(0.1)

    # re-rank alone: stage 2 on k·m candidates, exact cosines, same order
    rr = sw.search_by_object(reg, ids["Q"], k=3, ranking=sw.SearchRanking(rerank=4))
    assert calls[-1]["rerank"] == 4 and "fusion" not in calls[-1]
    assert _order(rr, ids) == "ABC" and {h["stage"] for h in rr} == {"exact"}
    assert rr[0]["similarity"] == pytest.approx(0.9, abs=1e-5)

    rows = sw.ranking_rows(val)
    assert rows[0][:4] == [1, ids["B"], "cat", "fused"] and rows[0][4] == pytest.approx(0.95)
    assert rows[0][sw.RANKING_HEADERS.index("w·validated")] == pytest.approx(0.15)
    assert rows[1][sw.RANKING_HEADERS.index("w·validated")] == 0.0
    assert "fused 0.95" in sw.caption(val[0]) and "fused" not in sw.caption(plain[0])


def test_bad_ranking_options_fail_with_one_clear_error(ranked):
    ctx, ids = ranked
    with pytest.raises(ValueError, match="no category is chosen"):
        sw.search_by_object(ctx.registry, ids["Q"], k=3, ranking=sw.SearchRanking(category=0.2))
    with pytest.raises(ValueError, match="expected m >= 0"):
        sw.SearchRanking(rerank=-1).kwargs()
    with pytest.raises(ValueError, match="finite number >= 0"):
        sw.search_by_object(ctx.registry, ids["Q"], k=3, ranking=sw.SearchRanking(validated=-1.0))


def test_tab_handler_passes_the_accordion_values_and_fills_the_table(ranked):
    ctx, ids = ranked
    demo = build_app(ctx)
    on_search = handler(demo, "on_search", "search-gallery")
    page_table = handler(demo, "page_table", "search-ranking")
    _, _, fusion_choices = handler(demo, "refresh_categories", "search-fusion-category")()
    assert {"cat", "dog"} <= set(fusion_choices["choices"])  # the favoured-category list follows the registry
    st = {"hits": [], "page": 0, "selected": None, "corner": None, "crop": None}
    _, _, _, msg, _, st = on_search(None, ids["Q"], "", 0.0, False, 3, st)  # accordion untouched
    assert msg.startswith("3 result(s)") and _order(st["hits"], ids) == "ABC"
    _, _, _, _, _, st = on_search(None, ids["Q"], "", 0.0, False, 3, st, 0, 1.0, 0.0, "", 0.0, 0.2)
    assert _order(st["hits"], ids) == "BAC"
    rows = page_table(st)
    assert [r[1] for r in rows] == [ids["B"], ids["A"], ids["C"]] and rows[0][3] == "fused"
    with pytest.raises(gr.Error, match="no category is chosen"):
        on_search(None, ids["Q"], "", 0.0, False, 3, st, 0, 1.0, 0.3, "", 0.0, 0.0)
    # by image: the same options reach the search (every hit fused; B gets exactly its weight)
    img = np.zeros((60, 60, 3), np.uint8)
    img[10:50, 10:50] = (40, 200, 40)
    _, _, _, msg, _, st = on_search(img, "", "", 0.0, False, 4, st, 2, 1.0, 0.0, "", 0.0, 0.2)
    assert msg.startswith("4 result(s)") and {h["stage"] for h in st["hits"]} == {"fused"}
    (b,) = [h for h in st["hits"] if h["object_id"] == ids["B"]]
    assert b["score_components"]["validated"] == pytest.approx(0.2)
    assert b["score"] == pytest.approx(b["similarity"] + 0.2)
