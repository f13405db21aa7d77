"""One behavioural suite for every VectorIndex implementation, plus backend-specific checks."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from registry.vectors import (
    INDEX_KINDS,
    DimensionMismatchError,
    ExactIndex,
    VectorIndex,
    open_index,
)
from registry.vectors.base import normalize_where
from registry.vectors.chroma_index import ChromaIndex, collection_name_for, to_chroma_where

DIM = 16

OpenFn = Callable[..., VectorIndex]


@pytest.fixture(params=INDEX_KINDS)
def kind(request) -> str:
    return request.param


@pytest.fixture
def opener(kind: str, data_dir: Path):
    """Opens the index of ``kind`` in the test's data folder (reopening sees the same data)."""
    opened: list[VectorIndex] = []

    def _open(dim: int = DIM, version: str = "test-v1") -> VectorIndex:
        idx = open_index(kind, data_dir, version=version, dim=dim)
        opened.append(idx)
        return idx

    yield _open
    for idx in opened:
        idx.close()


@pytest.fixture
def index(opener) -> VectorIndex:
    return opener()


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def meta(category=None, project=None, confidence=None, status=None) -> dict:
    return {
        "category": category,
        "project": project,
        "confidence": confidence,
        "validation_status": status,
    }


def ids_of(results: list[tuple[str, float]]) -> list[str]:
    return [i for i, _ in results]


# -- the shared behavioural suite ----------------------------------------------------------


def test_identical_vector_has_similarity_one_and_comes_first(index: VectorIndex):
    rng = np.random.default_rng(0)
    v = unit(rng, 20)
    index.add([f"o{i}" for i in range(20)], v, [meta("a")] * 20)
    res = index.query(v[7] * 3.0, k=5)  # scale must not matter: cosine
    assert res[0][0] == "o7"
    assert res[0][1] == pytest.approx(1.0, abs=1e-5)
    assert all(s <= 1.0 for _, s in res)


def test_results_are_ordered_best_first_with_known_similarities(index: VectorIndex):
    # Vectors at known angles to the query: cos = 1, 0.8, 0.6, 0, -0.6.
    q = np.zeros(DIM, np.float32)
    q[0] = 1
    rows = []
    for c in (1.0, 0.8, 0.6, 0.0, -0.6):
        v = np.zeros(DIM, np.float32)
        v[0], v[1] = c, np.sqrt(1 - c * c)
        rows.append(v)
    ids = ["e", "d", "c", "b", "a"]  # insertion order differs from the expected ranking
    index.add(ids, np.stack(rows), [meta()] * 5)
    res = index.query(q, k=5)
    assert ids_of(res) == ["e", "d", "c", "b", "a"]
    assert [s for _, s in res] == pytest.approx([1.0, 0.8, 0.6, 0.0, -0.6], abs=1e-4)


def test_k_larger_than_count_returns_everything(index: VectorIndex):
    rng = np.random.default_rng(1)
    index.add(["x", "y", "z"], unit(rng, 3), [meta()] * 3)
    assert sorted(ids_of(index.query(unit(rng, 1)[0], k=50))) == ["x", "y", "z"]


def test_empty_index_query_returns_nothing(index: VectorIndex):
    assert index.query(np.ones(DIM, np.float32), k=10) == []
    assert index.count() == 0
    assert index.ids() == set()


def test_upsert_is_idempotent_and_replaces_vector_and_metadata(index: VectorIndex):
    rng = np.random.default_rng(2)
    v = unit(rng, 10)
    ids = [f"o{i}" for i in range(10)]
    metas = [meta("cat", "p1", 0.9, "pending")] * 10
    index.add(ids, v, metas)
    index.add(ids, v, metas)  # a retried outbox batch
    assert index.count() == 10
    assert index.ids() == set(ids)

    # Replace o3's vector and metadata; project/confidence become unknown.
    new = unit(rng, 1)
    index.add(["o3"], new, [meta("dog", None, None, "approved")])
    assert index.count() == 10
    top = index.query(new[0], k=1)
    assert top[0][0] == "o3" and top[0][1] == pytest.approx(1.0, abs=1e-5)
    assert "o3" not in ids_of(index.query(new[0], k=10, where={"category": "cat"}))
    assert ids_of(index.query(new[0], k=10, where={"category": "dog"})) == ["o3"]
    # The old project and confidence must be gone, not merged from the first write.
    assert "o3" not in ids_of(index.query(new[0], k=10, where={"project": "p1"}))
    assert "o3" not in ids_of(index.query(new[0], k=10, where={"min_confidence": 0.1}))


def test_delete_removes_and_ignores_missing_ids(index: VectorIndex):
    rng = np.random.default_rng(3)
    v = unit(rng, 6)
    index.add(list("abcdef"), v, [meta()] * 6)
    index.delete(["b", "e", "never-added"])
    index.delete(["b"])  # deleting twice is fine
    index.delete([])
    assert index.count() == 4
    assert index.ids() == set("acdf")
    assert "b" not in ids_of(index.query(v[1], k=6))
    # Re-adding a deleted id works.
    index.add(["b"], v[1:2], [meta()])
    assert index.query(v[1], k=1)[0][0] == "b"


@pytest.fixture
def filtered(index: VectorIndex) -> tuple[VectorIndex, np.ndarray, list[dict]]:
    """Twelve vectors, all similar to the query, with a grid of metadata incl. unknowns."""
    rng = np.random.default_rng(4)
    base = unit(rng, 1)[0]
    vecs = base + 0.05 * unit(rng, 12)
    metas = [
        meta("car", "p1", 0.9, "approved"),  # o0
        meta("car", "p1", 0.2, "pending"),  # o1
        meta("car", "p2", 0.7, "rejected"),  # o2
        meta("truck", "p1", 0.95, "approved"),  # o3
        meta("truck", "p2", 0.5, "pending"),  # o4
        meta("bus", None, 0.8, "approved"),  # o5
        meta(None, "p1", 0.99, "approved"),  # o6: unknown category
        meta("car", "p1", None, "approved"),  # o7: unknown confidence
        meta("car", "p1", 0.6, None),  # o8: unknown status
        meta(),  # o9: nothing known
        meta("person", "p3", 0.0, "pending"),  # o10
        meta("car", "p1", 1.0, "approved"),  # o11
    ]
    index.add([f"o{i}" for i in range(12)], vecs, metas)
    return index, base, metas


@pytest.mark.parametrize(
    "where, expected",
    [
        (None, {f"o{i}" for i in range(12)}),
        ({}, {f"o{i}" for i in range(12)}),
        ({"category": "car"}, {"o0", "o1", "o2", "o7", "o8", "o11"}),
        ({"category": ["truck", "bus"]}, {"o3", "o4", "o5"}),
        ({"category": ["truck"]}, {"o3", "o4"}),
        ({"category": "nope"}, set()),
        ({"category": []}, set()),
        ({"project": "p2"}, {"o2", "o4"}),
        ({"min_confidence": 0.8}, {"o0", "o3", "o5", "o6", "o11"}),
        ({"min_confidence": 0.0}, {f"o{i}" for i in range(12)} - {"o7", "o9"}),
        ({"min_confidence": -3.0}, {f"o{i}" for i in range(12)} - {"o7", "o9"}),
        ({"validation_status": "approved"}, {"o0", "o3", "o5", "o6", "o7", "o11"}),
        ({"validation_status": ["pending", "rejected"]}, {"o1", "o2", "o4", "o10"}),
        ({"category": "car", "project": "p1"}, {"o0", "o1", "o7", "o8", "o11"}),
        ({"category": "car", "project": "p1", "min_confidence": 0.5}, {"o0", "o8", "o11"}),
        (
            {"category": ["car", "truck"], "min_confidence": 0.5, "validation_status": "approved"},
            {"o0", "o3", "o11"},
        ),
        ({"category": None, "project": None, "min_confidence": None}, {f"o{i}" for i in range(12)}),
    ],
)
def test_filters(filtered, where, expected):
    index, base, _ = filtered
    got = index.query(base, k=12, where=where)
    assert set(ids_of(got)) == expected
    sims = [s for _, s in got]
    assert sims == sorted(sims, reverse=True)


def test_filter_limits_to_k_best_matches(filtered):
    index, base, _ = filtered
    exact = ExactIndex(DIM)
    # Same data in the reference; compare the top 2 among "car".
    rng = np.random.default_rng(4)
    b = unit(rng, 1)[0]
    vecs = b + 0.05 * unit(rng, 12)
    exact.add([f"o{i}" for i in range(12)], vecs, filtered[2])
    want = ids_of(exact.query(base, k=2, where={"category": "car"}))
    assert ids_of(index.query(base, k=2, where={"category": "car"})) == want


def test_bad_filters_raise_value_error(index: VectorIndex):
    q = np.ones(DIM, np.float32)
    with pytest.raises(ValueError, match="unknown filter key"):
        index.query(q, k=1, where={"colour": "red"})
    with pytest.raises(ValueError, match="category"):
        index.query(q, k=1, where={"category": 3})
    with pytest.raises(ValueError, match="min_confidence"):
        index.query(q, k=1, where={"min_confidence": "high"})
    with pytest.raises(ValueError, match="k must be"):
        index.query(q, k=0)


def test_bad_metadata_and_vectors_raise_value_error_and_write_nothing(index: VectorIndex):
    rng = np.random.default_rng(5)
    v = unit(rng, 2)
    with pytest.raises(ValueError, match="unknown metadata key"):
        index.add(["a", "b"], v, [meta(), {"colour": "red"}])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        index.add(["a", "b"], v, [meta(), meta(confidence=1.5)])
    with pytest.raises(ValueError, match="2 metadata dicts for 3 ids|got 2 vectors for 3 ids"):
        index.add(["a", "b", "c"], v, [meta(), meta()])
    with pytest.raises(ValueError, match="twice"):
        index.add(["a", "a"], v, [meta(), meta()])
    bad = v.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        index.add(["a", "b"], bad, [meta(), meta()])
    with pytest.raises(ValueError, match="zeros"):
        index.add(["a", "b"], np.zeros((2, DIM), np.float32), [meta(), meta()])
    assert index.count() == 0


def test_dimension_mismatch_is_a_clear_value_error(index: VectorIndex):
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match=f"holds {DIM}-d vectors, got 8-d"):
        index.add(["a"], unit(rng, 1, 8), [meta()])
    index.add(["a"], unit(rng, 1), [meta()])
    with pytest.raises(DimensionMismatchError, match="8-d"):
        index.query(unit(rng, 1, 8)[0], k=1)
    assert index.count() == 1


def test_reset_drops_everything_and_stays_usable(index: VectorIndex):
    rng = np.random.default_rng(7)
    v = unit(rng, 5)
    index.add(list("abcde"), v, [meta("x")] * 5)
    index.reset()
    assert index.count() == 0 and index.ids() == set()
    assert index.query(v[0], k=3) == []
    index.add(["z"], v[:1], [meta("x")])
    assert ids_of(index.query(v[0], k=3, where={"category": "x"})) == ["z"]


def test_closed_index_refuses_work(opener):
    idx = opener()
    idx.close()
    with pytest.raises(RuntimeError, match="closed"):
        idx.count()


def test_many_ids_in_pages(index: VectorIndex, monkeypatch):
    rng = np.random.default_rng(8)
    n = 1200
    # Small pages/batches exercise the paging and batching loops without big data.
    monkeypatch.setattr("registry.vectors.chroma_index._PAGE", 500)
    if isinstance(index, ChromaIndex):
        monkeypatch.setattr(index, "_max_batch", 256)
    ids = [f"obj_{i:05d}" for i in range(n)]
    index.add(ids, unit(rng, n), [meta("c")] * n)
    assert index.count() == n
    assert index.ids() == set(ids)
    index.delete(ids[:700])
    assert index.ids() == set(ids[700:])


# -- recall against the exact reference ---------------------------------------------------


def clustered(rng: np.random.Generator, n: int, dim: int, clusters: int) -> np.ndarray:
    centres = unit(rng, clusters, dim)
    which = rng.integers(0, clusters, n)
    v = centres[which] + 0.35 * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_chroma_recall_at_10_against_exact(data_dir: Path):
    rng = np.random.default_rng(9)
    n, dim, nq = 3000, 64, 50
    vecs = clustered(rng, n, dim, clusters=30)
    cats = [f"c{i % 7}" for i in range(n)]
    metas = [meta(c, "p", float(rng.uniform()), "pending") for c in cats]
    ids = [f"o{i}" for i in range(n)]
    exact = ExactIndex(dim)
    exact.add(ids, vecs, metas)
    chroma = open_index("chroma", data_dir, version="recall", dim=dim)
    try:
        chroma.add(ids, vecs, metas)
        queries = clustered(rng, nq, dim, clusters=30)
        for where in (None, {"category": "c3"}):
            hits = 0
            for q in queries:
                truth = set(ids_of(exact.query(q, k=10, where=where)))
                hits += len(truth & set(ids_of(chroma.query(q, k=10, where=where))))
            recall = hits / (10 * nq)
            assert recall >= 0.95, f"recall@10 {recall:.3f} with where={where}"
    finally:
        chroma.close()


def test_exact_query_many_matches_query():
    rng = np.random.default_rng(10)
    idx = ExactIndex(DIM)
    v = unit(rng, 100)
    idx.add([f"o{i}" for i in range(100)], v, [meta(f"c{i % 3}") for i in range(100)])
    qs = unit(rng, 4)
    many = idx.query_many(qs, k=5, where={"category": "c1"})
    for got, q in zip(many, qs, strict=True):
        one = idx.query(q, k=5, where={"category": "c1"})
        assert ids_of(got) == ids_of(one)
        assert [s for _, s in got] == pytest.approx([s for _, s in one], abs=1e-5)


# -- Chroma-specific: persistence, naming, broken storage ---------------------------------


def test_chroma_persists_across_reopen(data_dir: Path):
    rng = np.random.default_rng(11)
    v = unit(rng, 30)
    ids = [f"o{i}" for i in range(30)]
    idx = open_index("chroma", data_dir, version="dinov2-base", dim=DIM)
    idx.add(ids, v, [meta("a", "p", 0.5, "pending")] * 30)
    idx.delete(["o0"])
    before = idx.query(v[5], k=5, where={"project": "p"})
    idx.close()

    again = open_index("chroma", data_dir, version="dinov2-base", dim=DIM)
    try:
        assert again.count() == 29
        assert again.ids() == set(ids[1:])
        assert again.query(v[5], k=5, where={"project": "p"}) == before
        again.check()
    finally:
        again.close()
    assert (data_dir / "chroma" / "chroma.sqlite3").exists()


def test_chroma_one_collection_per_version_and_dim_is_checked(data_dir: Path):
    rng = np.random.default_rng(12)
    a = open_index("chroma", data_dir, version="dinov2-base", dim=DIM)
    b = open_index("chroma", data_dir, version="dinov2-small", dim=8)
    try:
        a.add(["x"], unit(rng, 1), [meta()])
        b.add(["y", "z"], unit(rng, 2, 8), [meta(), meta()])
        assert a.ids() == {"x"} and b.ids() == {"y", "z"}
    finally:
        a.close()
        b.close()
    with pytest.raises(ValueError, match="holds 16-d vectors, the index was opened with dim=32"):
        open_index("chroma", data_dir, version="dinov2-base", dim=32)


@pytest.mark.parametrize(
    "version, name",
    [
        ("dinov2-base", "objects_dinov2-base"),
        ("facebook/dinov2-small@v1", "objects_facebook-dinov2-small-v1"),
        ("a", "objects_a"),
        ("  x y  ", "objects_x-y"),
    ],
)
def test_collection_names_are_sanitised(version: str, name: str):
    assert collection_name_for(version) == name


def test_collection_name_without_letters_is_refused():
    with pytest.raises(ValueError, match="no letters or digits"):
        collection_name_for("///")


def test_where_translation_to_chroma():
    assert to_chroma_where(normalize_where(None)) is None
    assert to_chroma_where(normalize_where({"category": "car"})) == {"category": {"$eq": "car"}}
    assert to_chroma_where(normalize_where({"category": ["a", "b"], "min_confidence": 0.5})) == {
        "$and": [{"category": {"$in": ["a", "b"]}}, {"confidence": {"$gte": 0.5}}]
    }


def test_chroma_deleted_folder_is_reported_and_reopen_starts_empty(data_dir: Path):
    rng = np.random.default_rng(13)
    idx = open_index("chroma", data_dir, version="v", dim=DIM)
    idx.add(["a", "b"], unit(rng, 2), [meta(), meta()])
    shutil.rmtree(data_dir / "chroma")
    with pytest.raises(RuntimeError, match="missing.*doctor"):
        idx.check()
    idx.close()
    fresh = open_index("chroma", data_dir, version="v", dim=DIM)
    try:
        assert fresh.count() == 0  # not the deleted data still cached in this process
        fresh.add(["c"], unit(rng, 1), [meta()])
        assert fresh.ids() == {"c"}
        fresh.check()
    finally:
        fresh.close()


def test_chroma_deleted_folder_while_still_open_elsewhere(data_dir: Path):
    rng = np.random.default_rng(14)
    first = open_index("chroma", data_dir, version="v", dim=DIM)
    first.add(["a"], unit(rng, 1), [meta()])
    shutil.rmtree(data_dir / "chroma")
    fresh = open_index("chroma", data_dir, version="v", dim=DIM)  # first is NOT closed
    try:
        assert fresh.count() == 0
        first.close()  # closing the stale index must not stop the fresh one's client
        fresh.add(["b"], unit(rng, 1), [meta()])
        assert fresh.ids() == {"b"}
    finally:
        fresh.close()


def test_chroma_corrupt_file_raises_runtime_error(data_dir: Path):
    folder = data_dir / "chroma"
    folder.mkdir()
    (folder / "chroma.sqlite3").write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(RuntimeError, match="cannot be opened.*doctor"):
        open_index("chroma", data_dir, version="v", dim=DIM)


def test_chroma_rejects_non_cosine_space(data_dir: Path):
    with pytest.raises(ValueError, match="cosine"):
        ChromaIndex(data_dir / "chroma", "objects_x", DIM, hnsw={"space": "l2"})


def test_chroma_hnsw_settings_apply(data_dir: Path):
    idx = ChromaIndex(
        data_dir / "chroma", "objects_h", DIM, hnsw={"max_neighbors": 32, "ef_search": 50}
    )
    try:
        cfg = idx._collection.configuration["hnsw"]
        assert cfg["space"] == "cosine" and cfg["max_neighbors"] == 32 and cfg["ef_search"] == 50
        idx.set_ef_search(200)
    finally:
        idx.close()
    again = ChromaIndex(data_dir / "chroma", "objects_h", DIM)
    try:
        assert again._collection.configuration["hnsw"]["ef_search"] == 200
    finally:
        again.close()


def test_chroma_ef_search_change_takes_effect(data_dir: Path):
    # A deliberately weak graph (M=4, ef_construction=20): a small ef_search finds few true
    # neighbours, a large one many. chromadb only applies ef_search when it loads the index,
    # so this fails if set_ef_search merely records the value.
    rng = np.random.default_rng(15)
    n, dim = 3000, 64
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    ids = [f"o{i}" for i in range(n)]
    exact = ExactIndex(dim)
    exact.add(ids, vecs, [meta()] * n)
    hnsw = {"max_neighbors": 4, "ef_construction": 20, "ef_search": 10}
    idx = ChromaIndex(data_dir / "chroma", "objects_ef", dim, hnsw=hnsw)
    queries = rng.standard_normal((30, dim)).astype(np.float32)

    def recall() -> float:
        hits = sum(
            len(set(ids_of(exact.query(q, 10))) & set(ids_of(idx.query(q, 10)))) for q in queries
        )
        return hits / (10 * len(queries))

    try:
        idx.add(ids, vecs, [meta()] * n)
        low = recall()
        idx.set_ef_search(400)
        high = recall()
    finally:
        idx.close()
    assert high > low + 0.2, (low, high)
    assert high >= 0.6


def test_unknown_kind(data_dir: Path):
    with pytest.raises(ValueError, match="unknown vector index kind"):
        open_index("faiss", data_dir, version="v", dim=DIM)


# -- hnswlib-specific: persistence, the graph path for filters, broken files --------------


def test_hnsw_persists_across_reopen(data_dir: Path):
    rng = np.random.default_rng(16)
    v = unit(rng, 40)
    ids = [f"o{i}" for i in range(40)]
    idx = open_index("hnsw", data_dir, version="dinov2-base", dim=DIM)
    idx.add(ids, v, [meta(f"c{i % 2}", "p", 0.5, "pending") for i in range(40)])
    idx.delete(["o0", "o1"])
    before = idx.query(v[5], k=5, where={"category": "c1", "project": "p"})
    idx.close()
    assert (data_dir / "hnsw" / "objects_dinov2-base" / "index.bin").exists()

    again = open_index("hnsw", data_dir, version="dinov2-base", dim=DIM)
    try:
        assert again.count() == 38 and again.ids() == set(ids[2:])
        assert again.query(v[5], k=5, where={"category": "c1", "project": "p"}) == before
        # Deleted slots are reused and the new id is found.
        again.add(["new"], v[:1], [meta("c0")])
        assert again.query(v[0], k=1)[0][0] == "new"
        again.check()
    finally:
        again.close()
    with pytest.raises(ValueError, match="holds 16-d vectors, opened with dim=8"):
        open_index("hnsw", data_dir, version="dinov2-base", dim=8)


@pytest.mark.parametrize("overfetch_max", [0, 1000], ids=["filtered-walk", "overfetch"])
def test_hnsw_filtered_search_recall(data_dir: Path, overfetch_max: int):
    from registry.vectors.hnsw_index import HnswIndex

    rng = np.random.default_rng(17)
    n, dim, nq = 3000, 64, 40
    vecs = clustered(rng, n, dim, clusters=30)
    ids = [f"o{i}" for i in range(n)]
    metas = [meta(f"c{i % 5}", "p", float(rng.uniform()), "pending") for i in range(n)]
    exact = ExactIndex(dim)
    exact.add(ids, vecs, metas)
    # brute_force_max=0: never the exact path; overfetch_max=0: always hnswlib's filtered walk.
    # num_threads=1: a single-threaded build with hnswlib's fixed seed is deterministic.
    idx = HnswIndex(
        data_dir / "h", dim, brute_force_max=0, overfetch_max=overfetch_max, num_threads=1
    )
    try:
        idx.add(ids, vecs, metas)
        queries = clustered(rng, nq, dim, clusters=30)
        wheres = (
            None,
            {"category": "c2"},
            {"category": ["c1", "c4"], "min_confidence": 0.5},
            {"category": "c3", "min_confidence": 0.97},  # ~18 matches: over-fetch falls short
        )
        for where in wheres:
            hits = sum(
                len(set(ids_of(exact.query(q, 10, where))) & set(ids_of(idx.query(q, 10, where))))
                for q in queries
            )
            assert hits / (10 * nq) >= 0.95, (where, hits / (10 * nq))
    finally:
        idx.close()


def test_hnsw_corrupt_files_raise_runtime_error(data_dir: Path):
    rng = np.random.default_rng(18)
    idx = open_index("hnsw", data_dir, version="v", dim=DIM)
    idx.add(["a"], unit(rng, 1), [meta()])
    idx.close()
    (data_dir / "hnsw" / "objects_v" / "meta.npz").write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="cannot be read.*doctor"):
        open_index("hnsw", data_dir, version="v", dim=DIM)


@pytest.mark.parametrize("persisted_kind", ["chroma", "hnsw"])
def test_flush_makes_writes_durable_without_close(data_dir: Path, persisted_kind: str):
    rng = np.random.default_rng(19)
    v = unit(rng, 3)
    first = open_index(persisted_kind, data_dir, version="v", dim=DIM)
    first.add(["a", "b", "c"], v, [meta("x")] * 3)
    first.flush()
    second = open_index(persisted_kind, data_dir, version="v", dim=DIM)
    try:
        assert second.ids() == {"a", "b", "c"}
        assert second.query(v[1], k=1, where={"category": "x"})[0][0] == "b"
    finally:
        second.close()
        first.close()


def test_upsert_after_delete_leaves_no_stale_copy(index: VectorIndex):
    # hnswlib's replace_deleted would move an existing label into a freed slot and leave the
    # old copy searchable; an update must stay in place.
    rng = np.random.default_rng(20)
    v = unit(rng, 6)
    index.add(list("abcdef"), v, [meta("x")] * 6)
    index.delete(["a"])
    new_c = unit(rng, 1)
    index.add(["c"], new_c, [meta("y")])
    res = index.query(v[2], k=6)  # the OLD vector of c
    got = ids_of(res)
    assert len(got) == len(set(got)) == 5
    assert dict(res)["c"] < 0.99
    assert index.query(new_c[0], k=1)[0][0] == "c"
    assert ids_of(index.query(v[2], k=6, where={"category": "x"})) == [
        i for i in got if i in "bdef"
    ]


def test_hnsw_meta_newer_than_graph_is_reported(data_dir: Path):
    # A crash between the two file replacements in flush() leaves ids without vectors.
    rng = np.random.default_rng(21)
    folder = data_dir / "hnsw" / "objects_v"
    idx = open_index("hnsw", data_dir, version="v", dim=DIM)
    idx.add(["a"], unit(rng, 1), [meta()])
    idx.close()
    old_graph = (folder / "index.bin").read_bytes()
    idx = open_index("hnsw", data_dir, version="v", dim=DIM)
    idx.add(["b", "c"], unit(rng, 2), [meta(), meta()])
    idx.close()
    (folder / "index.bin").write_bytes(old_graph)
    with pytest.raises(RuntimeError, match="2 ids have no vector.*doctor"):
        open_index("hnsw", data_dir, version="v", dim=DIM)
