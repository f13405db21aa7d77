"""REST search exposes two-stage re-ranking and fusion: stage / score / score_components."""
from __future__ import annotations

import numpy as np

from tests.app.api.conftest import seed, unit


def test_search_embedding_reports_stages_and_fuses_by_the_given_weights(ctx, client, tmp_path):
    s = seed(ctx.registry, tmp_path)
    dim = ctx.registry.embedding_dim
    query = unit(dim, 0, 5)  # nearer the cat (e0) than the dog (e5)
    url = "/api/v1/objects/search/embedding"
    body = client.post(url, json={"embedding": query.tolist(), "top_k": 2, "rerank": 4}).json()
    assert [h["object_id"] for h in body["items"]] == [s["cat"], s["dog"]]
    top = body["items"][0]
    assert top["stage"] == "exact" and top["score"] == top["similarity"]
    assert abs(top["score_components"]["exact"] - float(query @ s["cat_v"])) < 1e-5
    one = client.post(url, json={"embedding": query.tolist(), "top_k": 2, "rerank": 0}).json()
    assert {h["stage"] for h in one["items"]} == {"ann"}
    gap = float(query @ s["cat_v"] - query @ s["dog_v"])
    fused = client.post(url, json={"embedding": query.tolist(), "top_k": 2, "fusion": {"category": gap + 0.05},
                                   "fusion_category": "dog"}).json()
    assert [h["object_id"] for h in fused["items"]] == [s["dog"], s["cat"]]
    assert fused["items"][0]["stage"] == "fused"
    assert np.isclose(fused["items"][0]["score_components"]["category"], gap + 0.05)
    bad = client.post(url, json={"embedding": query.tolist(), "fusion": {"colour": 1}})
    assert bad.status_code == 400 and "colour" in bad.json()["detail"]
