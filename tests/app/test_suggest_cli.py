"""``launch.py suggest`` and the suggest workflow on a seeded registry whose right answers are
known: confidence order, tied class scores first under margin, diversity seeded by reviewed
objects, paging/reservoir invariance, clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli.main import main
from app.workflows.suggest import class_scores_of, suggest
from tests.app.al_fixtures import DIM, add_image, add_objects, open_registry

CLUSTERS = {"a": np.eye(DIM)[0], "b": np.eye(DIM)[1], "c": np.eye(DIM)[2]}
SPREAD = {"a": 0.05, "b": 0.001, "c": 0.001}  # b and c are near-duplicates: one review each says it all


def _seed(data_dir: Path, tmp_path: Path) -> dict:
    """Cluster a: 4 approved + 3 pending; clusters b and c: 3 pending near-duplicates each (b least confident)."""
    rng = np.random.default_rng(0)
    with open_registry(data_dir) as reg:
        src = add_image(reg, tmp_path / "imgs", 0)
        rows, names = [], []
        for name, status, conf in ([("a", "approved", 0.9)] * 4 + [("a", "pending", 0.5), ("a", "pending", 0.45),
                                   ("a", "pending", 0.4)] + [("b", "pending", 0.1), ("b", "pending", 0.15),
                                   ("b", "pending", 0.2)] + [("c", "pending", 0.8), ("c", "pending", 0.85),
                                   ("c", "pending", 0.7)]):
            rows.append({"category": "thing", "confidence": conf, "status": status,
                         "embedding": CLUSTERS[name] + SPREAD[name] * rng.standard_normal(DIM)})
            names.append(name)
        ids = add_objects(reg, src, rows)
    return {"ids": ids, "cluster": dict(zip(ids, names, strict=True)),
            "conf": {i: r["confidence"] for i, r in zip(ids, rows, strict=True)}}


def test_suggest_cli_least_confident_and_diversity(data_dir: Path, tmp_path: Path, capsys):
    seeded = _seed(data_dir, tmp_path)
    assert main(["suggest", "--data", str(data_dir), "--n", "3", "--strategy", "least-confident", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["confidence"] for o in out["objects"]] == [0.1, 0.15, 0.2]
    assert out["candidates"] == 9 and out["reviewed_seeds"] == 0
    # diversity: cluster a is already reviewed, so b and c come first (one each), then a
    assert main(["suggest", "--data", str(data_dir), "--n", "3", "--strategy", "diversity", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reviewed_seeds"] == 4 and out["pool"] == 9
    clusters = [seeded["cluster"][o["object_id"]] for o in out["objects"]]
    assert sorted(clusters[:2]) == ["b", "c"] and clusters[2] == "a"
    # hybrid: the 6 least confident (b and a's pending), then diverse among them: b first (farthest from reviewed a)
    assert main(["suggest", "--data", str(data_dir), "--n", "2", "--strategy", "hybrid"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("hybrid: 2 of 9 pending object(s) (pool 6, 4 reviewed seed(s)")
    lines = [ln.split()[1] for ln in text.splitlines()[1:]]
    assert [seeded["cluster"][i] for i in lines] == ["b", "a"]


def test_suggest_pages_and_pool_sample_do_not_change_answers(data_dir: Path, tmp_path: Path):
    seeded = _seed(data_dir, tmp_path)
    with open_registry(data_dir) as reg:
        for strategy in ("least-confident", "margin", "entropy", "hybrid"):
            big = suggest(reg, n=4, strategy=strategy, batch_size=1000)
            small = suggest(reg, n=4, strategy=strategy, batch_size=2)
            assert big["ids"] == small["ids"] and len(big["ids"]) == 4, strategy
        sampled = suggest(reg, n=3, strategy="diversity", pool_size=5, batch_size=2, seed=3)
        assert sampled["pool"] == 5 and len(set(sampled["ids"])) == 3
        assert all(seeded["conf"][i] < 0.9 for i in sampled["ids"])  # pending ones only
        shown = suggest(reg, n=2, strategy="least-confident")["ids"]
        nxt = suggest(reg, n=2, strategy="least-confident", exclude=shown)["ids"]
        assert [seeded["conf"][i] for i in nxt] == [0.2, 0.4]


def test_margin_uses_class_scores_from_metadata(data_dir: Path, tmp_path: Path):
    with open_registry(data_dir) as reg:
        src = add_image(reg, tmp_path / "imgs", 1)
        ids = add_objects(reg, src, [
            {"category": "cat", "confidence": 0.5},  # binary margin: maximal (1.0)
            {"category": "cat", "confidence": 0.9, "metadata": {"class_scores": {"cat": 0.5, "dog": 0.49}}},
            {"category": "cat", "confidence": 0.9,
             "metadata": {"classification": {"top_k": [{"class": "cat", "score": 0.95}, {"class": "dog", "score": 0.05}]}}},
        ])
        got = suggest(reg, n=3, strategy="margin")
        assert got["ids"] == [ids[0], ids[1], ids[2]]
        assert got["scores"][1] == pytest.approx(1 - 0.01 / 0.99) and got["scores"][2] == pytest.approx(0.1)
    assert class_scores_of({"classification": {"top_k": [{"label": "x", "similarity": 0.3}, {"label": "y", "similarity": 0.2}]}}).tolist() == [0.3, 0.2]
    assert class_scores_of({"class_scores": ["bad"]}) is None and class_scores_of(None) is None


def test_suggest_errors_name_the_fix(data_dir: Path, tmp_path: Path, capsys):
    with open_registry(data_dir) as reg:
        src = add_image(reg, tmp_path / "imgs", 2)
        add_objects(reg, src, [{"category": "cat", "confidence": 0.3}])  # no embedding
        with pytest.raises(ValueError, match="none of the 1 pending objects has a stored embedding"):
            suggest(reg, n=1, strategy="diversity")
        with pytest.raises(ValueError, match="expected at least 1"):
            suggest(reg, n=0)
    assert main(["suggest", "--data", str(data_dir), "--strategy", "margin", "--embedding-version", "nope"]) == 2
    assert "no stored embeddings of 'nope'; stored: none" in capsys.readouterr().err


def test_review_queue_pages_through_a_strategy(data_dir: Path, tmp_path: Path):
    from app.workflows import review as rv

    seeded = _seed(data_dir, tmp_path)
    with open_registry(data_dir) as reg:
        q = rv.load_queue(reg, rv.ReviewQuery(order=rv.ALL_ORDERS["diversity (k-center on embeddings)"]), page_size=2)
        assert sorted(seeded["cluster"][i] for i in q.ids) == ["b", "c"] and q.total == 9
        first = list(q.ids)
        rv.apply(reg, q.current(), "approve", validated_by="t")  # the queue keeps its place
        rv.step(reg, q, +1)
        rv.step(reg, q, +1)  # past the page: the next suggestions, seeded with what was just reviewed
        assert q.ids[:2] == first and len(q.ids) == 4 and len(set(q.ids)) == 4 and q.pos == 2
        assert q.total == 8
        with pytest.raises(ValueError, match="ranks pending objects: expected state 'pending', got 'all'"):
            rv.load_queue(reg, rv.ReviewQuery(status="all", order="al:hybrid"))
        lc = rv.load_queue(reg, rv.ReviewQuery(order="al:margin"), page_size=3)
        assert [seeded["conf"][i] for i in lc.ids] == [0.5, 0.45, 0.4]  # closest to 0.5 first
