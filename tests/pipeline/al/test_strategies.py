"""Uncertainty scores and k-center greedy on small literal inputs whose answers are known."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.al.kcenter import k_center_greedy, min_dist_to, pairwise_dist
from pipeline.al.strategies import select, top_uncertain, uncertainty


def test_uncertainty_from_confidence_alone():
    conf = np.array([0.95, 0.5, 0.1, 0.7])
    assert np.allclose(uncertainty("least-confident", conf), [0.05, 0.5, 0.9, 0.3])
    assert np.allclose(uncertainty("margin", conf), [0.1, 1.0, 0.2, 0.6])
    ent = uncertainty("entropy", conf)
    assert ent[1] == pytest.approx(1.0) and ent[0] < ent[3] < ent[1]
    # least-confident puts 0.1 first; margin and entropy put 0.5 first
    assert list(top_uncertain(uncertainty("least-confident", conf), 2)) == [2, 1]
    assert list(top_uncertain(uncertainty("margin", conf), 2)) == [1, 3]


def test_uncertainty_uses_class_scores_where_present():
    conf = np.array([0.9, 0.9, 0.9])
    scores = [np.array([0.45, 0.44, 0.11]), None, np.array([0.9, 0.05, 0.05])]
    m = uncertainty("margin", conf, scores)
    assert m[0] == pytest.approx(1 - 0.01)  # a near tie between two classes
    assert m[1] == pytest.approx(1 - 0.8)  # binary from confidence
    assert m[2] == pytest.approx(1 - 0.85)
    e = uncertainty("entropy", conf, scores)
    assert e[0] > e[2]
    with pytest.raises(ValueError, match=r"one entry per object \(3\), got 2"):
        uncertainty("margin", conf, scores[:2])
    with pytest.raises(ValueError, match="expected one of"):
        uncertainty("bald", conf)


def test_k_center_covers_clusters_and_respects_seeds():
    rng = np.random.default_rng(0)
    centres = np.eye(4, 8, dtype=np.float32) * 10
    sizes = [50, 5, 5, 5]
    emb = np.concatenate([c + 0.1 * rng.standard_normal((s, 8)).astype(np.float32) for c, s in zip(centres, sizes, strict=True)])
    cluster = np.repeat(np.arange(4), sizes)
    picks = k_center_greedy(emb, 4)
    assert sorted(cluster[picks]) == [0, 1, 2, 3]
    # seeds already in clusters 0 and 1: the first two picks go to the unseen clusters 2 and 3
    seed_dist = min_dist_to(emb, [centres[:1], centres[1:2]])
    picks = k_center_greedy(emb, 2, min_dist=seed_dist)
    assert sorted(cluster[picks]) == [2, 3]
    assert len(set(k_center_greedy(emb, 65).tolist())) == 65  # every candidate once, then stops
    assert len(k_center_greedy(emb, 100)) == 65


def test_min_dist_streams_batches_like_one_block():
    rng = np.random.default_rng(1)
    cand, seeds = rng.standard_normal((30, 5)), rng.standard_normal((17, 5))
    whole = pairwise_dist(cand, seeds).min(1)
    streamed = min_dist_to(cand, [seeds[:4], seeds[4:11], seeds[11:]], block=7)
    assert np.allclose(streamed, whole, atol=1e-5)
    assert min_dist_to(cand, []) is None
    with pytest.raises(ValueError, match=r"expected shape \(B, 5\), got \(2, 3\)"):
        min_dist_to(cand, [np.zeros((2, 3))])


def test_select_hybrid_is_diverse_among_the_uncertain():
    # 6 uncertain objects: 3 near-duplicates at A, 3 near-duplicates at B; 4 confident ones at C
    emb = np.array([[0, 0]] * 3 + [[5, 0]] * 3 + [[0, 5]] * 4, np.float32)
    emb += np.arange(10, dtype=np.float32)[:, None] * 1e-3
    conf = np.array([0.1, 0.11, 0.12, 0.2, 0.21, 0.22, 0.9, 0.9, 0.9, 0.9])
    lc = select("least-confident", 2, confidence=conf)
    assert list(lc) == [0, 1]  # two duplicates
    hy = select("hybrid", 2, confidence=conf, embeddings=emb)
    assert {int(i) // 3 for i in hy} == {0, 1}  # one of A, one of B, none of the confident C
    with pytest.raises(ValueError, match="needs stored embeddings"):
        select("diversity", 2, confidence=conf)
    with pytest.raises(ValueError, match="expected one of"):
        select("coreset", 2, confidence=conf)
