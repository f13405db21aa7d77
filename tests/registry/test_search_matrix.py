"""The exact matrix: kept in step by the outbox relay through updates and deletes, rebuilt from
SQLite when its files are missing or torn, and checked (and repaired) by the doctor."""
from __future__ import annotations

import json

import numpy as np

from registry.facade import ObjectIn, Registry
from registry.vectors.matrix import VectorMatrix
from tests.registry.search_seed import DIM, seeded


def _stored(reg: Registry) -> dict[str, np.ndarray]:
    rows = reg.connection.execute(
        "SELECT object_id, vector FROM embeddings WHERE version_id = ?", (reg.embedding_version,)).fetchall()
    return {oid: np.frombuffer(v, "<f4") for oid, v in rows}


def _assert_in_step(reg: Registry) -> None:
    m = reg._vectors.matrix
    stored = _stored(reg)
    ids = m.ids_at(np.arange(m.rows))
    assert sorted(ids) == sorted(stored) and m.rows == len(stored) > 0
    rowid = dict(reg.connection.execute("SELECT object_id, rowid FROM objects").fetchall())
    for row, oid in enumerate(ids):
        v = stored[oid]
        assert np.allclose(m.vectors[row], v / np.linalg.norm(v), atol=1e-6), oid
        assert int(m.rowids[row]) == rowid[oid]
    assert reg.doctor()["checks"]["matrix"]["ok"]


def test_matrix_stays_in_step_after_updates_and_deletes(data_dir):
    reg, vectors = seeded(data_dir, {"ant": 25, "bee": 25}, index="chroma")
    try:
        assert (data_dir / "matrix" / "objects_search-test" / "vectors.f32").exists()
        assert reg._vectors.matrix_recovery is None  # a new folder's first fill is no recovery
        _assert_in_step(reg)
        ids = list(vectors)
        rng = np.random.default_rng(5)
        for oid in ids[:5]:
            reg.update_object(oid, embedding=rng.standard_normal(DIM).astype(np.float32))
        for oid in ids[10:20] + [ids[0]]:  # deletes move the last row into the hole
            reg.delete_object(oid)
        reg.update_object(ids[30], category="cow")  # metadata only: the vector row is unchanged
        sid = reg.list_sources()[0]["source_id"]
        new = reg.register_objects(sid, [ObjectIn("ant", (1, 1, 4, 4), embedding=rng.standard_normal(DIM))
                                         for _ in range(3)], dedupe=False).object_ids
        assert reg.sync_outbox()["pending"] == 0
        _assert_in_step(reg)
        assert reg._vectors.matrix.rows == 50 - 11 + 3
        hit = reg.search(reg.get_embedding(new[1]), k=1, category="ant", explain=True)
        assert hit["results"][0]["object_id"] == new[1] and hit["plan"]["path"] == "exact"
    finally:
        reg.close()
    # persisted: a reopened registry maps the same files and agrees with SQLite
    again = Registry(data_dir, embedding_dim=DIM, embedding_version="search-test", index="chroma")
    try:
        assert again._vectors.matrix.rows == 42 and again._vectors.matrix_recovery is None
        _assert_in_step(again)
    finally:
        again.close()


def _reopen(data_dir) -> Registry:
    return Registry(data_dir, embedding_dim=DIM, embedding_version="search-test", index="chroma")


def test_matrix_missing_or_torn_is_rebuilt_from_sqlite(data_dir):
    reg, vectors = seeded(data_dir, {"ant": 20, "bee": 20}, index="chroma")
    reg.close()
    folder = data_dir / "matrix" / "objects_search-test"
    q = next(iter(vectors.values()))
    for damage in ("missing", "torn", "dirty"):
        if damage == "missing":
            for f in folder.iterdir():
                f.unlink()
        elif damage == "torn":
            with open(folder / "vectors.f32", "r+b") as fh:
                fh.truncate(100)
        else:  # a crash in the middle of a write
            head = json.loads((folder / "matrix.json").read_text())
            (folder / "matrix.json").write_text(json.dumps({**head, "state": "dirty"}))
        reg = _reopen(data_dir)
        try:
            assert reg._vectors.matrix.rows == 40, damage
            assert reg._vectors.matrix_recovery, damage
            report = reg.doctor()
            assert report["checks"]["matrix"]["ok"] and report["checks"]["matrix"]["recovered"], damage
            _assert_in_step(reg)
            assert reg.search(q, k=1, category="ant")[0]["similarity"] > 0.9999
        finally:
            reg.close()


def test_doctor_finds_a_matrix_out_of_step_and_repair_rebuilds_it(data_dir):
    reg, vectors = seeded(data_dir, {"ant": 20}, index="chroma")
    reg.close()
    folder = data_dir / "matrix" / "objects_search-test"
    m = VectorMatrix(folder, DIM)  # files consistent with each other, wrong against SQLite
    m.vectors[3] = -m.vectors[3]
    m.delete(m.ids_at(np.array([7])))
    m.close()
    reg = _reopen(data_dir)
    try:
        report = reg.doctor()
        check = report["checks"]["matrix"]
        assert not report["ok"] and not check["ok"]
        assert check["missing"] == 1 and check["wrong_rows"] == 1, check
        fixed = reg.doctor(repair=True)
        assert fixed["checks"]["matrix"]["ok"], fixed["checks"]["matrix"]
        assert any("rebuilt the exact matrix" in a for a in fixed["repaired"])
        _assert_in_step(reg)
    finally:
        reg.close()


def test_registries_of_one_process_share_one_matrix(data_dir):
    """All registries of a folder in a process are index writers together: they must relay into
    one matrix, or each would append rows over the others' in the same files."""
    import threading

    a, _ = seeded(data_dir, {"ant": 5}, index="chroma")
    b = _reopen(data_dir)
    try:
        assert a._vectors.matrix is b._vectors.matrix
        sid = a.list_sources()[0]["source_id"]

        def write(reg: Registry, seed: int) -> None:
            rng = np.random.default_rng(seed)
            for _ in range(6):
                reg.register_objects(sid, [ObjectIn("bee", (1, 1, 4, 4), embedding=rng.standard_normal(DIM))
                                           for _ in range(4)], dedupe=False)

        threads = [threading.Thread(target=write, args=(r, i)) for i, r in enumerate((a, b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        a.sync_outbox()
        _assert_in_step(a)
        assert a._vectors.matrix.rows == 5 + 2 * 6 * 4
    finally:
        b.close()
        a.close()
    again = _reopen(data_dir)
    try:
        _assert_in_step(again)  # the files on disk agree too
    finally:
        again.close()
