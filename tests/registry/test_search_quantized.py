"""The quantized path: sign bits kept in step with the matrix rows, Hamming scan of the filter's
postings + exact re-score, results filtered on the current SQLite rows, fresh segment merged."""
from __future__ import annotations

import json

import numpy as np
import pytest

from registry.facade import ObjectIn, Registry
from registry.search_planner import PlannerConfig, choose
from registry.vectors import postings, quantized
from registry.vectors.matrix import MatrixCorruptError, VectorMatrix
from tests.registry.conftest import make_image

DIM = 192  # 3 words of sign bits
CATS = ("ant", "bee", "cow")
PER_CAT = 600


def _vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _bits_match(m: VectorMatrix) -> bool:
    return np.array_equal(np.asarray(m.bits[: m.rows]), quantized.encode(np.asarray(m.vectors[: m.rows])))


def test_encode_is_the_sign_of_each_dimension():
    v = np.zeros((2, 70), np.float32)
    v[0, [0, 7, 8, 69]] = 1.0
    v[1] = -1.0
    bits = quantized.encode(v)
    assert bits.shape == (2, 2) and bits.dtype == np.uint64
    unpacked = np.unpackbits(bits.view(np.uint8), axis=1)[:, :70].astype(bool)
    assert np.array_equal(unpacked, v > 0)
    assert not bits[1].any() and int(np.bitwise_count(bits[0]).sum()) == 4


@pytest.mark.parametrize("persistent", [True, False])
def test_sign_bits_follow_upsert_delete_grow_and_reopen(tmp_path, persistent):
    folder = tmp_path / "m" if persistent else None
    m = VectorMatrix(folder, DIM, capacity=16)
    m.upsert(np.arange(1, 101), [f"o{i}" for i in range(1, 101)], _vectors(100, 1))  # grows past 16
    m.upsert([5, 50, 500], ["o5", "o50", "o500"], _vectors(3, 2))  # replaces two, adds one
    assert m.delete(["o1", "o2", "o99", "nope"]) == 3  # the last rows move into the holes
    assert m.rows == 98 and _bits_match(m)
    row = m.rows_for(np.array([50]))[0]
    assert np.array_equal(m.bits[row], quantized.encode(_vectors(3, 2)[1:2])[0])
    if not persistent:
        m.close()
        return
    m.close()
    m = VectorMatrix(folder, DIM)
    assert m.rows == 98 and _bits_match(m)
    m.close()
    (folder / "bits.u64").unlink()  # a matrix written before the bits existed: recomputed
    m = VectorMatrix(folder, DIM)
    assert _bits_match(m) and json.loads((folder / "matrix.json").read_text())["state"] == "clean"
    m.close()
    head = json.loads((folder / "matrix.json").read_text())
    (folder / "matrix.json").write_text(json.dumps({**head, "state": "dirty"}))  # crash mid-write
    with pytest.raises(MatrixCorruptError, match="dirty"):
        VectorMatrix(folder, DIM)


def test_the_scan_keeps_the_hamming_nearest_and_skips_excluded_or_rowless():
    m = VectorMatrix(None, DIM)
    vecs = _vectors(400, 3)
    m.upsert(np.arange(400), [f"o{i}" for i in range(400)], vecs)
    q = vecs[7] / np.linalg.norm(vecs[7])
    ids, sims, scanned = quantized.quantized_top(m, q, np.arange(-3, 1000), 20, 5)
    assert scanned == 400 and ids[0] == "o7" and sims[0] == pytest.approx(1.0, abs=1e-5)
    assert np.all(np.diff(sims) <= 0) and len(ids) == 5
    ids, _, scanned = quantized.quantized_top(m, q, np.arange(400), 20, 5, exclude=np.array([3, 7]))
    assert scanned == 398 and "o7" not in ids
    # The 20 re-scored are the 20 nearest by Hamming distance (ties cut in candidate order).
    ham = np.bitwise_count(quantized.encode(vecs) ^ quantized.encode(q[None])[0]).sum(1)
    ids, _, _ = quantized.quantized_top(m, q, np.arange(400), 20, 20)
    assert sorted(int(i[1:]) for i in ids) == sorted(np.argsort(ham, kind="stable")[:20].tolist())
    m.close()


@pytest.mark.parametrize("threads", [1, 3])
def test_the_slab_scan_is_the_gathered_scan(monkeypatch, threads):
    """The cells' bits copied in order answer exactly as gathering each rowid's bits does,
    across cells, thread splits and exclusions; rowids without a matrix row are left out."""
    m = VectorMatrix(None, DIM)
    rowids = np.random.default_rng(4).permutation(np.arange(1, 3001))  # rows not in rowid order
    vecs = _vectors(3000, 5)
    m.upsert(rowids, [f"o{i}" for i in rowids], vecs)
    cells = {(0, "approved"): np.arange(1, 900), (1, "approved"): np.arange(900, 2100),
             (1, "pending"): np.append(np.arange(2100, 3001), [5000, 5001])}  # two without a row
    monkeypatch.setattr(postings, "SLAB_CHUNK", 256)  # the copy in many lock holds
    slab = postings.build_slab(m, cells)
    assert len(slab.rowids) == 3000 and slab.spans[(1, "pending")] == (2099, 3000)
    row = m.rows_for(np.array([2500]))[0]
    assert slab.rowids[2499] == 2500 and np.array_equal(slab.bits[2499], m.bits[row])  # rowids 1.. in cell order
    monkeypatch.setattr(quantized, "SCAN_THREADS", threads)
    monkeypatch.setattr(quantized, "MIN_ROWS_PER_THREAD", 300)
    for chosen in ([(1, "approved"), (1, "pending")], [(0, "approved"), (1, "pending")]):
        ranges = slab.ranges(chosen)
        assert len(ranges) == (1 if chosen[0][0] == 1 else 2)
        sel = postings.Selection(cells=[cells[c] for c in chosen], slab=slab, ranges=ranges,
                                 count=sum(len(cells[c]) for c in chosen))
        for j in (11, 2222):
            q = vecs[j] / np.linalg.norm(vecs[j])
            exclude = np.sort(rowids[[j, 40, 41]]).astype(np.int64)
            for ex in (None, exclude):
                want = quantized.quantized_top(m, q, sel.rowids(), 64, 10, ex)
                got = quantized.quantized_top_slab(m, q, sel, 64, 10, ex)
                assert got[0] == want[0] and np.allclose(got[1], want[1]) and len(got[0]) == 10
                assert (f"o{rowids[j]}" in got[0]) == (ex is None and int(rowids[j]) in set(sel.rowids().tolist()))
    m.close()


def test_the_cost_model_picks_quantized_for_large_filters_only():
    cfg = PlannerConfig()
    p = choose(cfg, k=10, need=10, estimate=50_000, total=1_000_000, quantized=50_000)
    assert p.path == "quantized" and p.fetch == cfg.rescore_for(10) == 320, p.reason
    assert choose(cfg, k=10, need=10, estimate=50_000, total=1_000_000).path == "ann"  # postings not current
    assert choose(cfg, k=10, need=10, estimate=4_000, total=10**6, quantized=4_000).path == "exact"
    assert choose(cfg, k=10, need=10, estimate=None, total=10**6, quantized=10**6).path == "ann"
    # A third of 1M: gathered bits cost more than reading every row in order; the slab less.
    wide = {"k": 10, "need": 10, "estimate": 333_000, "total": 10**6, "quantized": 333_000, "rows": 10**6}
    assert choose(cfg, **wide).path == "quantized_scan"
    p = choose(cfg, **wide, slab=True)
    assert p.path == "quantized" and "(slab)" in p.reason and p.fetch == 320, p.reason
    cfg.quantized = False
    assert choose(cfg, k=10, need=10, estimate=50_000, total=1_000_000, quantized=50_000).path == "ann"


@pytest.fixture
def reg(tmp_path):
    """A registry of 3 × 600 clustered 192-d objects (statuses cycle), the quantized path cheap."""
    rng = np.random.default_rng(0)
    r = Registry(tmp_path / "data", embedding_dim=DIM, embedding_version="q-test", index="exact")
    sid = r.register_source(make_image(tmp_path / "img.png", 64, 48), copy=False)
    statuses = ("pending", "approved", "rejected")
    vectors: dict[str, np.ndarray] = {}
    for name in CATS:
        # Object kinds within a category (as real embeddings cluster): 30 centres, tight noise.
        kinds = rng.standard_normal(DIM) + rng.standard_normal((30, DIM))
        vecs = (kinds[np.arange(PER_CAT) % 30] + 0.4 * rng.standard_normal((PER_CAT, DIM))).astype(np.float32)
        objs = [ObjectIn(name, (1, 1, 20, 20), confidence=0.5, embedding=vecs[i], validation_status=statuses[i % 3],
                         validated_by=None if i % 3 == 0 else "seed") for i in range(PER_CAT)]
        vectors.update(zip(r.register_objects(sid, objs, dedupe=False).object_ids, vecs, strict=True))
    cfg = r._vectors.planner
    cfg.exact_threshold, cfg.rescore_factor, cfg.exact_us_per_candidate = 50, 8, 1e6  # R = 80 of 600
    r.vectors_by_id = vectors  # type: ignore[attr-defined]
    yield r
    r.close()


def _exact(r: Registry, q: np.ndarray, k: int, **filters) -> list[str]:
    keep = {o["object_id"] for o in r.iter_objects(**filters)}
    qn = q / np.linalg.norm(q)
    scored = sorted((-float(v @ qn / np.linalg.norm(v)), oid) for oid, v in r.vectors_by_id.items() if oid in keep)
    return [oid for _, oid in scored[:k]]


def _ready(r: Registry) -> None:
    """Postings loaded (the first query starts the load in the background)."""
    r.search(_vectors(1, 5)[0], k=1, category="ant")
    r._vectors.postings.wait(30)
    r._vectors.postings.refresh()


def test_quantized_path_recall_against_exact(reg):
    _ready(reg)
    hits = total = 0
    # Queries near the data (as real ones are), filtered by their own category as the bench does:
    # Hamming ranks far candidates (a filter the neighbourhood disagrees with) much worse.
    some = np.arange(0, len(CATS) * PER_CAT, 90)
    queries = np.asarray(list(reg.vectors_by_id.values()))[some] + 0.3 * _vectors(len(some), 11)
    for q, cat in zip(queries, [CATS[i // PER_CAT] for i in some], strict=True):
        other = CATS[(CATS.index(cat) + 1) % len(CATS)]
        for filt in ({"category": cat}, {"status": "approved"}, {"category": [cat, other], "status": "pending"}):
            res = reg.search(q, k=10, explain=True, **filt)
            assert res["plan"]["path"] == "quantized" and "(slab)" in res["plan"]["reason"], res["plan"]
            assert res["plan"]["stages"] == ["quantized", "exact"] and res["plan"]["fetch"] == 80
            want = _exact(reg, q, 10, **filt)
            got = [h["object_id"] for h in res["results"]]
            assert len(got) == 10 and set(got) <= {o["object_id"] for o in reg.iter_objects(**filt)}
            qn = q / np.linalg.norm(q)
            for h in res["results"]:  # re-scored: the exact cosine
                v = reg.vectors_by_id[h["object_id"]]
                assert h["similarity"] == pytest.approx(float(v @ qn / np.linalg.norm(v)), abs=1e-5)
            hits += len(set(got) & set(want))
            total += 10
    assert hits / total >= 0.95, hits / total


def test_results_follow_sqlite_when_the_postings_have_not_seen_a_relabel(reg):
    _ready(reg)
    q = reg.vectors_by_id[next(iter(reg.vectors_by_id))]  # an ant's vector
    top = reg.search(q, k=10, category="ant", explain=True)
    assert top["plan"]["path"] == "quantized"
    moved_out = top["results"][0]["object_id"]
    moved_in = _exact(reg, q, 1, category="bee")[0]
    reg.update_object(moved_out, category="bee")
    reg.update_object(moved_in, category="ant")
    # Default: postings older than the last commit are not used; the answer is the exact one.
    res = reg.search(q, k=10, category="ant", explain=True)
    assert res["plan"]["path"] != "quantized" and "postings older" in res["plan"]["reason"], res["plan"]
    assert moved_out not in [h["object_id"] for h in res["results"]]
    # Stale postings allowed: still filtered on the current rows (the relabelled-out one is gone).
    reg._vectors.planner.quantized_max_stale_s = 3600.0
    reg._vectors.postings.wait(30)
    reg._vectors.postings._key = (-1, -1)  # as if a commit landed after the refresh
    res = reg.search(q, k=10, category="ant", explain=True)
    assert res["plan"]["path"] == "quantized", res["plan"]
    got = [h["object_id"] for h in res["results"]]
    assert moved_out not in got and len(got) == 10 and all(h["category"] == "ant" for h in res["results"])
    # Refreshed: the relabelled-in object is a candidate again and found.
    reg._vectors.planner.quantized_max_stale_s = 0.0
    reg._vectors.postings.refresh()
    res = reg.search(reg.vectors_by_id[moved_in], k=10, category="ant", explain=True)
    assert res["plan"]["path"] == "quantized" and res["results"][0]["object_id"] == moved_in


def test_the_fresh_segment_and_deletes_stay_part_of_the_answer(reg):
    _ready(reg)
    reg._vectors.planner.quantized_max_stale_s = 3600.0  # the new commit leaves the postings stale
    reg.sync_on_write = False
    new = _vectors(1, 77)[0]
    sid = reg.list_sources()[0]["source_id"]
    oid = reg.register_objects(sid, [ObjectIn("cow", (2, 2, 9, 9), confidence=0.5, embedding=new)],
                               dedupe=False).object_ids[0]
    for refresh in (False, True):  # not in the postings yet; then in them, but not in the matrix
        if refresh:
            reg._vectors.postings.refresh()
        res = reg.search(new, k=5, category="cow", explain=True)
        assert res["plan"]["path"] == "quantized" and res["plan"]["fresh"] == 1, res["plan"]
        assert res["results"][0]["object_id"] == oid
    reg.sync_outbox()
    res = reg.search(new, k=5, category="cow", explain=True)
    assert res["results"][0]["object_id"] == oid and res["plan"]["fresh"] == 0
    victim = res["results"][1]["object_id"]
    reg.delete_object(victim)
    reg.sync_outbox()
    assert victim not in [h["object_id"] for h in reg.search(new, k=5, category="cow")]


def test_the_all_rows_scan_is_the_same_split_across_threads(monkeypatch):
    vecs = _vectors(5_000, 21)
    bits = quantized.encode(vecs)
    q = quantized.encode(_vectors(1, 22))[0]
    ham = np.bitwise_count(bits ^ q).sum(1)
    want = np.sort(np.argsort(ham, kind="stable")[:64])
    monkeypatch.setattr(quantized, "SCAN_THREADS", 1)
    one = quantized.scan_all(bits, q, len(bits), 64)
    monkeypatch.setattr(quantized, "SCAN_THREADS", 3)
    monkeypatch.setattr(quantized, "MIN_ROWS_PER_THREAD", 1_000)  # 3 parts, two in the pool
    three = quantized.scan_all(bits, q, len(bits), 64)
    # the same rows either way; ties at the cut may fall either side, so compare by distance
    assert len(one) == len(three) == 64 and np.array_equal(one, three)
    assert np.array_equal(np.sort(ham[one]), np.sort(ham[want]))
    assert len(quantized.scan_all(bits, q, 40, 64)) == 40  # fewer rows than R: all of them


def test_unfiltered_and_wide_filters_scan_every_row(reg):
    cfg = reg._vectors.planner
    cfg.quantized_us_per_candidate = cfg.slab_us_per_candidate = 1e3  # the postings' scan loses
    some = np.arange(0, len(CATS) * PER_CAT, 120)
    queries = np.asarray(list(reg.vectors_by_id.values()))[some] + 0.3 * _vectors(len(some), 12)
    hits = total = 0
    for q in queries:
        for filt in ({}, {"status": "approved"}):
            res = reg.search(q, k=10, explain=True, **filt)
            assert res["plan"]["path"] == "quantized_scan", res["plan"]
            assert res["plan"]["stages"] == ["quantized_scan", "exact"]
            assert res["plan"]["candidates"] == len(CATS) * PER_CAT  # every row was read
            got = [h["object_id"] for h in res["results"]]
            assert len(got) == 10 and set(got) <= {o["object_id"] for o in reg.iter_objects(**filt)}
            hits += len(set(got) & set(_exact(reg, q, 10, **filt)))
            total += 10
    assert hits / total >= 0.95, hits / total


def test_the_all_rows_scan_keeps_fresh_objects_and_drops_deleted_ones(reg):
    reg.sync_on_write = False
    new = _vectors(1, 78)[0]
    sid = reg.list_sources()[0]["source_id"]
    oid = reg.register_objects(sid, [ObjectIn("cow", (2, 2, 9, 9), confidence=0.5, embedding=new)],
                               dedupe=False).object_ids[0]
    res = reg.search(new, k=5, explain=True)
    assert res["plan"]["path"] == "quantized_scan" and res["plan"]["fresh"] == 1, res["plan"]
    assert res["results"][0]["object_id"] == oid  # committed, not relayed: searchable
    victim = res["results"][1]["object_id"]
    reg.delete_object(victim)  # its matrix row stays until the relay: SQLite drops it
    got = [h["object_id"] for h in reg.search(new, k=5)]
    assert victim not in got and got[0] == oid and len(got) == 5
