"""Prototype + kNN scoring, the answer's fields, and leave-one-out calibration (numpy only)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.classify import UNKNOWN, build_model, calibrate, confidence, loo_scores
from pipeline.classify.prototypes import fused_scores, knn_votes


def _clusters(seed: int = 0, dim: int = 16, per: int = 4):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:3] * 3 + 1.0  # a shared offset: raw cosines between classes are high
    x = np.concatenate([c + 0.1 * rng.standard_normal((per, dim)) for c in centres]).astype(np.float32)
    y = [n for n in ("ant", "bee", "cat") for _ in range(per)]
    return x, y, centres


def test_build_model_centres_normalises_and_sorts_classes():
    x, y, _ = _clusters()
    m = build_model(x, y)
    assert m.classes == ["ant", "bee", "cat"]
    assert m.counts() == {"ant": 4, "bee": 4, "cat": 4}
    assert np.allclose(np.linalg.norm(m.prototypes, axis=1), 1.0, atol=1e-5)
    assert np.allclose(np.linalg.norm(m.support, axis=1), 1.0, atol=1e-5)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert np.allclose(m.centre, xn.mean(0), atol=1e-6)
    # centring removes the shared offset: prototypes of different classes are far apart
    off_diag = ~np.eye(3, dtype=bool)
    assert (m.prototypes @ m.prototypes.T)[off_diag].max() < 0.0
    raw = build_model(x, y, centre=False).prototypes
    assert (raw @ raw.T)[off_diag].min() > 0.5


def test_fused_score_is_the_documented_mix():
    x, y, _ = _clusters()
    m = build_model(x, y, k=3, knn_weight=0.25)
    q = m.transform(x[:2] + 0.05)
    proto = q @ m.prototypes.T
    sims = q @ m.support.T
    votes = np.zeros((2, 3))
    for i in range(2):
        for j in np.argsort(-sims[i])[:3]:
            votes[i, m.labels[j]] += sims[i, j] / 3
    assert np.allclose(knn_votes(sims, m.labels, 3, 3), votes, atol=1e-6)
    assert np.allclose(fused_scores(q, m.prototypes, m.support, m.labels, k=3, knn_weight=0.25),
                       0.75 * proto + 0.25 * votes, atol=1e-6)


def test_answers_have_the_similarity_server_shape():
    x, y, centres = _clusters()
    m = build_model(x, y)
    m.tau1, m.tau2 = 0.2, 0.05
    out = m.classify(np.stack([centres[1], -centres[0]]), top_k=2)
    a = out[0]
    assert a["verdict"] == "bee" and not a["is_unknown"]
    assert [t["class"] for t in a["top_k"]][0] == "bee" and len(a["top_k"]) == 2
    assert a["s1"] == a["top_k"][0]["score"] and a["s2"] == a["top_k"][1]["score"]
    assert a["margin"] == pytest.approx(a["s1"] - a["s2"], abs=1e-5)
    assert a["confidence"] == pytest.approx(a["margin"] / (a["margin"] + m.confidence_scale), abs=1e-5)
    assert out[1]["verdict"] == UNKNOWN and out[1]["is_unknown"]  # unlike every class


def test_tau2_rejects_a_query_between_two_classes():
    x, y, centres = _clusters()
    m = build_model(x, y)
    m.tau1, m.tau2 = -1.0, 0.05
    mid = m.classify(((centres[0] + centres[1]) / 2)[None])[0]
    assert mid["top_k"][0]["class"] in ("ant", "bee") and mid["margin"] < 0.05
    assert mid["is_unknown"] and mid["verdict"] == UNKNOWN


def test_confidence_formula():
    assert confidence(0.0, 0.1) == 0.0
    assert confidence(0.1, 0.1) == pytest.approx(0.5)
    assert confidence(-0.2, 0.1) == 0.0
    assert 0.9 < confidence(2.0, 0.1) <= 1.0


def test_loo_scores_match_refitting_without_each_item():
    x, y, _ = _clusters(seed=3, per=3)
    m = build_model(x, y, k=2, knn_weight=0.4)
    fast = loo_scores(m)
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        # same centre (documented), prototypes and neighbours without item i
        z, lab = m.support[keep], m.labels[keep]
        protos = np.stack([z[lab == c].mean(0) for c in range(3)])
        protos /= np.linalg.norm(protos, axis=1, keepdims=True)
        ref = fused_scores(m.support[i:i + 1], protos, z, lab, k=2, knn_weight=0.4)[0]
        assert np.allclose(fast[i], ref, atol=1e-5), i


def test_calibration_reports_the_chosen_point_and_keeps_coverage():
    x, y, centres = _clusters(seed=1, per=10)
    m = build_model(x, y)
    rep = calibrate(m, min_coverage=0.9)
    assert rep["coverage"] >= 0.9 and rep["accuracy"] == 1.0 and rep["items"] == 30
    assert m.tau1 == pytest.approx(rep["tau1"], abs=1e-6) and m.tau1 > 0.0
    assert m.calibration is rep
    # what the thresholds mean on fresh data: a new in-domain point is known, an outsider is not
    rng = np.random.default_rng(9)
    fresh = m.classify(centres[2] + 0.1 * rng.standard_normal(16))[0]
    other = m.classify(rng.standard_normal(16) * 3)[0]
    assert fresh["verdict"] == "cat"
    assert other["is_unknown"]


def test_bad_support_is_refused_with_the_reason():
    x, y, _ = _clusters()
    with pytest.raises(ValueError, match="expected 12"):
        build_model(x, y[:-1])
    with pytest.raises(ValueError, match="zero row"):
        build_model(np.zeros((2, 4)), ["a", "b"])
    with pytest.raises(ValueError, match="'unknown'"):
        build_model(x[:2], ["a", "Unknown"])
    m = build_model(x, y)
    with pytest.raises(ValueError, match="expected dimension 16"):
        m.classify(np.ones((1, 8)))


def test_blocked_similarities_give_the_same_scores(monkeypatch):
    import pipeline.classify.prototypes as P

    x, y, centres = _clusters(seed=5, per=6)
    m = build_model(x, y, k=3)
    q = np.concatenate([x + 0.05, centres])
    whole, loo_whole = m.scores(q), loo_scores(m)
    monkeypatch.setattr(P, "SIM_BUDGET", 40)  # 2 rows of 18 support items per block
    assert len(P.row_chunks(len(q), len(m.support))) == -(-len(q) // 2)
    calls = []
    real = P.knn_votes
    monkeypatch.setattr(P, "knn_votes", lambda sims, *a: calls.append(sims.shape) or real(sims, *a))
    assert np.allclose(m.scores(q), whole, atol=1e-6)
    assert calls and all(shape[0] <= 2 for shape in calls)  # the blocked path ran
    assert np.allclose(loo_scores(m), loo_whole, atol=1e-6)


def test_one_class_domain_keeps_its_class_and_rejects_unrelated_queries():
    # Centring on the mean of a single class removes the class itself (only noise is left), so a
    # one-class domain ("bird or unknown") must not be centred; calibration must keep coverage.
    rng = np.random.default_rng(0)
    dim = 32
    u = rng.standard_normal(dim)
    u /= np.linalg.norm(u)
    support = (u + 0.15 * rng.standard_normal((20, dim))).astype(np.float32)
    m = build_model(support, ["bird"] * 20)
    assert m.centre is None
    report = calibrate(m)
    assert report["coverage"] >= 0.95
    inside = m.classify((u + 0.15 * rng.standard_normal((10, dim))).astype(np.float32))
    outside = m.classify(rng.standard_normal((10, dim)).astype(np.float32))
    assert [a["verdict"] for a in inside].count("bird") >= 9
    assert all(a["verdict"] == UNKNOWN for a in outside)


def test_class_sums_do_not_build_a_classes_by_support_matrix():
    # A dense (C, N) one-hot is C*N*4 bytes: 400 MB for 1,000 classes over 100k support items.
    import tracemalloc

    rng = np.random.default_rng(0)
    n_classes, per, dim = 1000, 10, 8
    x = rng.standard_normal((n_classes * per, dim)).astype(np.float32)
    y = [f"c{i:04d}" for i in range(n_classes) for _ in range(per)]
    tracemalloc.start()
    try:
        m = build_model(x, y, knn_weight=0.0)
        loo = loo_scores(m)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert loo.shape == (n_classes * per, n_classes)
    # the (N, C) LOO score matrix itself is 40 MB; a one-hot would add another 40 MB on top
    assert peak < 1.5 * loo.nbytes
    z = m.support
    assert np.allclose(m.prototypes[3], z[30:40].sum(0) / np.linalg.norm(z[30:40].sum(0)), atol=1e-5)
