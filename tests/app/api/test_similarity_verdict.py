"""The find-by-upload verdict rule (app/api/similarity.py): class scores, s1, margin, unknown."""
from __future__ import annotations

from app.api.similarity import verdict


def _hits(*pairs):
    return [{"category": c, "similarity": s} for c, s in pairs]


def test_best_score_per_class_and_margin():
    v = verdict(_hits(("cat", 0.9), ("dog", 0.7), ("cat", 0.5), ("bird", 0.2)), top_k=2)
    assert v["top_k"] == [("cat", 0.9), ("dog", 0.7)]
    assert (v["verdict"], v["s1"], v["is_unknown"]) == ("cat", 0.9, False)
    assert abs(v["margin"] - 0.2) < 1e-9


def test_unknown_when_low_or_ambiguous():
    assert verdict(_hits(("cat", 0.25)))["is_unknown"] is True  # s1 < 0.30
    close = verdict(_hits(("cat", 0.80), ("dog", 0.78)))  # margin 0.02 < 0.04
    assert close["is_unknown"] is True and close["verdict"] is None and close["top_k"][0][0] == "cat"
    assert verdict(_hits(("cat", 0.80), ("dog", 0.78)), tau2=0.01)["verdict"] == "cat"


def test_one_class_and_no_hits():
    one = verdict(_hits(("cat", 0.6), ("cat", 0.4)))
    assert one["margin"] == one["s1"] == 0.6 and one["verdict"] == "cat"
    none = verdict([])
    assert none == {"top_k": [], "verdict": None, "s1": 0.0, "margin": 0.0, "is_unknown": True,
                    "tau1": 0.30, "tau2": 0.04}
