"""Two-stage retrieval: k·m ANN candidates re-ranked exactly, then optional metadata fusion."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from registry.facade import ObjectIn, Registry
from registry.vectors import ExactIndex
from tests.registry.conftest import make_image
from tests.registry.search_seed import DIM, exact_top, seeded


class CoarseIndex(ExactIndex):
    """An "ANN" that finds the right neighbourhood but scores it badly: the true top-``k`` set,
    each similarity moved by a fixed pseudo-random amount in [-0.1, 0.1] and re-sorted by it."""

    def query(self, vector, k, where=None):
        hits = super().query(vector, k, where)
        noisy = [(i, s + (zlib.crc32(i.encode()) % 2001 - 1000) / 10_000) for i, s in hits]
        return sorted(noisy, key=lambda h: -h[1])


def test_reranking_restores_the_exact_order(data_dir):
    reg, vectors = seeded(data_dir, {"ant": 60, "bee": 60}, index=CoarseIndex(DIM))
    try:
        q = np.random.default_rng(3).standard_normal(DIM).astype(np.float32)
        truth = exact_top(reg, vectors, q, 10)
        one = reg.search(q, k=10, rerank=0, explain=True)
        assert one["plan"]["stages"] == ["ann"] and {h["stage"] for h in one["results"]} == {"ann"}
        stage1 = [h["object_id"] for h in one["results"]]
        assert stage1 != truth  # the coarse scores scramble the order
        two = reg.search(q, k=10, rerank=4, explain=True)
        assert two["plan"]["stages"] == ["ann", "exact"] and two["plan"]["fetch"] == 40
        assert [h["object_id"] for h in two["results"]] == truth
        for h in two["results"]:
            assert h["stage"] == "exact" and h["score"] == h["similarity"] == pytest.approx(h["score_components"]["exact"])
            assert h["score_components"]["ann"] is not None
            assert h["similarity"] == pytest.approx(float(vectors[h["object_id"]] @ q / np.linalg.norm(vectors[h["object_id"]]) / np.linalg.norm(q)), abs=1e-5)
        # the default configuration is stage 1 alone (DEFAULT_RERANK = 0: see registry.search)
        assert [h["object_id"] for h in reg.search(q, k=10)] == stage1
    finally:
        reg.close()


def _two_objects(data_dir):
    """Query q; A (sim 0.9, dog, pending, conf 0.1) and B (sim 0.8, cat, approved, conf 0.9)."""
    reg = Registry(data_dir, embedding_dim=2, embedding_version="fuse", index="exact")
    sid = reg.register_source(make_image(data_dir.parent / "f.png"), copy=False)
    def at(c):
        return np.array([c, np.sqrt(1 - c * c)], np.float32)
    a, b = reg.register_objects(sid, [
        ObjectIn("dog", (1, 1, 5, 5), confidence=0.1, embedding=at(0.9)),
        ObjectIn("cat", (1, 1, 5, 5), confidence=0.9, embedding=at(0.8), validation_status="approved",
                 validated_by="t"),
    ], dedupe=False).object_ids
    return reg, np.array([1, 0], np.float32), a, b


def test_fusion_weights_change_the_order_as_documented(data_dir):
    reg, q, a, b = _two_objects(data_dir)
    try:
        assert [h["object_id"] for h in reg.search(q, k=2)] == [a, b]
        # B: 0.8 + 0.2 = 1.0 beats A: 0.9 when the favoured category is B's.
        res = reg.search(q, k=2, fusion={"category": 0.2}, fusion_category="CAT", explain=True)
        assert [h["object_id"] for h in res["results"]] == [b, a] and res["plan"]["stages"][-1] == "fused"
        top = res["results"][0]
        assert top["stage"] == "fused" and top["score"] == pytest.approx(1.0)
        assert top["score_components"]["category"] == pytest.approx(0.2)
        assert top["score_components"]["similarity"] == pytest.approx(0.8)
        assert top["similarity"] == pytest.approx(0.8)
        # a weight below the similarity gap (0.1) keeps the similarity order
        assert [h["object_id"] for h in reg.search(q, k=2, fusion={"category": 0.05}, fusion_category="cat")] == [a, b]
        # validated (B approved): 0.8 + 0.15 > 0.9; confidence: 0.8 + 0.5·0.9 > 0.9 + 0.5·0.1
        assert [h["object_id"] for h in reg.search(q, k=2, fusion={"validated": 0.15})] == [b, a]
        assert [h["object_id"] for h in reg.search(q, k=2, fusion={"confidence": 0.5})] == [b, a]
        # similarity weight 0 ranks by metadata alone
        by_conf = reg.search(q, k=2, fusion={"similarity": 0, "confidence": 1})
        assert [h["object_id"] for h in by_conf] == [b, a] and by_conf[1]["score"] == pytest.approx(0.1)
    finally:
        reg.close()


def test_bad_fusion_weights_are_refused_with_the_fix(data_dir):
    reg, q, _, _ = _two_objects(data_dir)
    try:
        with pytest.raises(ValueError, match=r"unknown key\(s\) \['colour'\]"):
            reg.search(q, fusion={"colour": 1.0})
        with pytest.raises(ValueError, match="'confidence': expected a finite number >= 0, got -1"):
            reg.search(q, fusion={"confidence": -1})
        with pytest.raises(ValueError, match="needs fusion_category"):
            reg.search(q, fusion={"category": 0.3})
    finally:
        reg.close()
