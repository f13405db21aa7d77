"""Freshness: an object is searchable as soon as it commits, before the outbox relays it."""
from __future__ import annotations

import numpy as np

from registry.facade import ObjectIn
from tests.registry.search_seed import DIM, seeded


def test_a_committed_object_not_yet_synced_is_found(data_dir):
    reg, _ = seeded(data_dir, {"ant": 40, "bee": 40}, index="chroma")
    try:
        reg._vectors.planner.exact_threshold = 10  # the category filter takes the ANN path
        reg._vectors.planner.exact_us_per_candidate = 1e6
        reg.sync_on_write = False
        before = reg.index.count()
        new = np.random.default_rng(99).standard_normal(DIM).astype(np.float32)
        sid = reg.list_sources()[0]["source_id"]
        oid = reg.register_objects(sid, [ObjectIn("bee", (2, 2, 9, 9), confidence=0.5, embedding=new)],
                                   dedupe=False).object_ids[0]
        assert reg.index.count() == before and reg._vectors.matrix.rows == before  # nothing relayed
        for filters in ({}, {"category": "bee"}, {"status": "pending"}):
            res = reg.search(new, k=3, explain=True, **filters)
            top = res["results"][0]
            assert top["object_id"] == oid and top["similarity"] > 0.9999, (filters, res["plan"])
            assert top["stage"] == "exact" and res["plan"]["fresh"] == 1
        assert reg.search(new, k=3, category="ant")[0]["object_id"] != oid  # filters still apply
        assert reg.sync_outbox()["synced"] == 1
        res = reg.search(new, k=3, explain=True)
        assert res["results"][0]["object_id"] == oid and res["plan"]["fresh"] == 0
        assert res["plan"]["path"] == "ann" and reg._vectors.matrix.rows == before + 1
    finally:
        reg.close()


def test_changed_and_deleted_vectors_are_current_before_the_relay(data_dir):
    reg, vectors = seeded(data_dir, {"ant": 30}, index="chroma")
    try:
        reg.sync_on_write = False
        moved, gone = list(vectors)[:2]
        target = -vectors[moved]  # far from where the index still has it
        reg.update_object(moved, embedding=target)
        reg.delete_object(gone)
        res = reg.search(target, k=5, explain=True)
        assert res["results"][0]["object_id"] == moved and res["results"][0]["similarity"] > 0.9999
        assert res["plan"]["fresh"] == 2
        old = {h["object_id"]: h["similarity"] for h in reg.search(vectors[moved], k=30)}
        assert len(old) == 29 and old[moved] < -0.9999  # scored on its new vector, not the index's
        assert gone not in {h["object_id"] for h in reg.search(vectors[gone], k=30)}
        assert gone in reg.index.ids()  # the index itself still lags
    finally:
        reg.close()


def test_fresh_segment_finds_filtered_objects_beyond_its_best_candidates(data_dir):
    """The fresh scan ranks its best 8·need first and widens to all when too few pass the filter."""
    reg, vectors = seeded(data_dir, {"ant": 3}, index="exact", sync_on_write=False)
    try:
        sid = reg.list_sources()[0]["source_id"]
        q = np.ones(DIM, np.float32)
        near = [q + 0.01 * np.random.default_rng(i).standard_normal(DIM).astype(np.float32) for i in range(60)]
        reg.register_objects(sid, [ObjectIn("bee", (1, 1, 5, 5), embedding=v) for v in near], dedupe=False)
        res = reg.search(q, k=2, category="ant", explain=True)
        assert res["plan"]["fresh"] == 63 and reg.index.count() == 0
        ants = sorted(vectors, key=lambda oid: -float(vectors[oid] @ q / np.linalg.norm(vectors[oid])))
        assert [h["object_id"] for h in res["results"]] == ants[:2]
        assert {h["category"] for h in reg.search(q, k=5)} == {"bee"}
    finally:
        reg.close()


def test_an_oversized_backlog_is_not_loaded_and_the_plan_says_so(data_dir):
    from registry.search_fresh import FreshSegment

    reg, vectors = seeded(data_dir, {"ant": 12}, index="exact", sync_on_write=False)
    try:
        reg._vectors.fresh = FreshSegment(reg.embedding_version, max_rows=5)
        res = reg.search(next(iter(vectors.values())), k=3, explain=True)
        assert res["plan"]["fresh"] == 0 and "12 unrelayed rows exceed" in res["plan"]["reason"]
        reg.sync_outbox()
        res = reg.search(next(iter(vectors.values())), k=3, explain=True)
        assert "unrelayed" not in res["plan"]["reason"] and res["results"][0]["similarity"] > 0.9999
    finally:
        reg.close()
