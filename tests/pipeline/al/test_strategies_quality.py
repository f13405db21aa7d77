"""Measured, not assumed: how many planted labeling errors each strategy surfaces in the first N
reviews, against random order, on synthetic embeddings (printed side by side).

The synthetic set: 16 clusters of very different sizes in 32-d (unit vectors, two clusters per
class); 10 % of the objects carry a wrong label and a lower, noisier confidence; one block of 40
near-duplicates is correct but low-confidence (an odd-looking kind of object the detector is
unsure of), the trap that sends least-confident ordering round in circles.
"""
from __future__ import annotations

import numpy as np

from pipeline.al.kcenter import min_dist_to
from pipeline.al.strategies import select

N_REVIEWS = 60


def _synthetic(seed: int = 0):
    rng = np.random.default_rng(seed)
    d, n_clusters = 32, 16
    sizes = [220, 150, 110, 80, 60, 45, 35, 28, 22, 18, 14, 11, 9, 7, 6, 5]
    centres = rng.standard_normal((n_clusters, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    cluster = np.repeat(np.arange(n_clusters), sizes)
    emb = centres[cluster] + 0.35 * rng.standard_normal((cluster.size, d)) / np.sqrt(d)
    wrong = rng.random(cluster.size) < 0.10
    conf = np.where(wrong, rng.normal(0.45, 0.15, cluster.size), rng.normal(0.78, 0.12, cluster.size))
    n_classes = n_clusters // 2
    true_cls = cluster % n_classes
    label = np.where(wrong, (true_cls + rng.integers(1, n_classes, cluster.size)) % n_classes, true_cls)
    scores = []
    for i in range(cluster.size):
        s = np.full(n_classes, 0.02)
        p = float(np.clip(conf[i], 0.05, 0.95))
        s[label[i]] = p
        if wrong[i]:
            s[true_cls[i]] = p * rng.uniform(0.7, 1.0)  # the right class is a close second
        else:
            s[(label[i] + 1) % n_classes] = (1 - p) * 0.6
        scores.append(s)
    # 40 near-duplicates of one correct object, all low-confidence: redundant reviews
    dup_centre = centres[3] + 0.3 * rng.standard_normal(d) / np.sqrt(d)
    dup = dup_centre + 0.002 * rng.standard_normal((40, d))
    emb = np.concatenate([emb, dup])
    cluster = np.concatenate([cluster, np.full(40, 3)])
    wrong = np.concatenate([wrong, np.zeros(40, bool)])
    dup_conf = rng.normal(0.28, 0.02, 40)
    conf = np.concatenate([conf, dup_conf])
    for _ in dup_conf:
        s = np.full(n_classes, 0.02)
        s[3 % n_classes] = 0.5  # right, but unsure between two classes
        s[4] = 0.4
        scores.append(s)
    is_dup = np.concatenate([np.zeros(len(wrong) - 40, bool), np.ones(40, bool)])
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    return {"emb": emb, "conf": np.clip(conf, 0, 1), "scores": scores, "wrong": wrong, "cluster": cluster,
            "dup": is_dup}


def _pending(data, reviewed: np.ndarray) -> dict:
    keep = np.ones(len(data["conf"]), bool)
    keep[reviewed] = False
    return {k: ([v[i] for i in np.flatnonzero(keep)] if isinstance(v, list) else v[keep]) for k, v in data.items()}


def _measure(data, reviewed: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Picks among the pending objects; the reviewed ones only seed the diversity."""
    seeds = None if reviewed is None else data["emb"][reviewed]
    if reviewed is not None:
        data = _pending(data, reviewed)
    conf, emb, scores = data["conf"], data["emb"], data["scores"]
    seed_dist = None if seeds is None else min_dist_to(emb, [seeds])
    out: dict[str, dict[str, float]] = {}
    for strategy in ("least-confident", "margin", "entropy", "diversity", "hybrid"):
        picks = select(strategy, N_REVIEWS, confidence=conf, class_scores=scores, embeddings=emb,
                       seed_min_dist=seed_dist)
        assert len(picks) == N_REVIEWS and len(set(picks.tolist())) == N_REVIEWS
        out[strategy] = {"errors": int(data["wrong"][picks].sum()), "clusters": len(set(data["cluster"][picks])),
                         "duplicates": int(data["dup"][picks].sum())}
    runs = [select("random", N_REVIEWS, confidence=conf, rng=s) for s in range(20)]
    out["random"] = {k: float(np.mean([f(p) for p in runs])) for k, f in (
        ("errors", lambda p: data["wrong"][p].sum()), ("clusters", lambda p: len(set(data["cluster"][p]))),
        ("duplicates", lambda p: data["dup"][p].sum()))}
    return out


def _print(title: str, data, res) -> None:
    print(f"\n{title}: {len(data['conf'])} objects, {int(data['wrong'].sum())} planted errors, "
          f"{len(set(data['cluster']))} clusters; first {N_REVIEWS} reviews")
    print(f"{'strategy':<16}{'errors found':>14}{'clusters seen':>15}{'duplicates':>12}")
    for name, r in res.items():
        print(f"{name:<16}{r['errors']:>14.1f}{r['clusters']:>15.1f}{r['duplicates']:>12.1f}")


def test_strategies_surface_more_planted_errors_than_random():
    data = _synthetic(0)
    res = _measure(data)
    _print("no reviews yet", data, res)
    rnd = res["random"]
    for s in ("least-confident", "margin", "entropy", "hybrid"):
        assert res[s]["errors"] > 2 * rnd["errors"], (s, res[s], rnd)
    assert res["diversity"]["clusters"] > rnd["clusters"] + 3
    assert res["diversity"]["clusters"] == 16  # every cluster, the rare ones too


def test_diversity_seeded_with_reviewed_objects_goes_elsewhere():
    data = _synthetic(1)
    rng = np.random.default_rng(2)  # a reviewer already went through 200 objects of the 4 largest clusters
    big = rng.choice(np.flatnonzero(data["cluster"] < 4), 200, replace=False)
    res = _measure(data, reviewed=big)
    _print("after 200 reviews in the 4 largest clusters", data, res)
    for s in ("least-confident", "margin", "entropy", "hybrid"):
        assert res[s]["errors"] > 2 * res["random"]["errors"], (s, res[s])
    # the near-duplicate trap: uncertainty alone spends reviews on them, the hybrid does not
    assert res["least-confident"]["duplicates"] >= 10 and res["hybrid"]["duplicates"] <= 1
    pending = _pending(data, big)
    picks = select("diversity", 12, confidence=pending["conf"], embeddings=pending["emb"],
                   seed_min_dist=min_dist_to(pending["emb"], [data["emb"][big]]))
    assert set(pending["cluster"][picks]) == set(range(4, 16))  # the 12 unseen clusters come first
