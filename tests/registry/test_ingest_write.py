"""The registration write path (registry/objects_write.py): multi-row INSERTs, all or nothing.

Boxes are ``xyxy`` absolute pixels of a 96 x 64 image; masks ``(H, W)`` bool or compressed
RLE; embeddings ``(8,)`` float32. The reference for the rows is the ``executemany`` insert the
multi-row statements replaced (one statement per row, the same columns and order).

A pipelined variant (a writer thread inserting chunk k while the caller prepares chunk k+1) was
built, tested and measured slower on the 2-core machine; see docs/speed.md, "Ingest".
"""
from __future__ import annotations

import itertools
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from registry import masks as rle_ops
from registry import objects_batch, objects_write
from registry.facade import ObjectIn, Registry

W, H = 96, 64


def _executemany_insert(tx: sqlite3.Connection, rows: objects_write.Rows) -> None:
    """The insert before multi-row statements: one ``executemany`` per table."""
    o, e, u = rows.objects, rows.embeddings, rows.outbox
    tx.executemany(f"INSERT INTO objects ({objects_write.OBJECT_COLUMNS}) VALUES ({','.join('?' * 28)})",
                   [o[i:i + 28] for i in range(0, len(o), 28)])
    tx.executemany("INSERT INTO embeddings (object_id, version_id, dim, vector) VALUES (?, ?, ?, ?)",
                   [e[i:i + 4] for i in range(0, len(e), 4)])
    tx.executemany("INSERT INTO embedding_outbox (object_id, version_id, operation) VALUES (?, ?, 'upsert')",
                   [u[i:i + 2] for i in range(0, len(u), 2)])


def _registry(path: Path) -> tuple[Registry, str, list[str]]:
    reg = Registry(path, embedding_dim=8, embedding_version="v1", index="exact", sync_on_write=False)
    img = path.parent / f"{path.name}.png"
    img.write_bytes(b"an image " + path.name.encode())
    sid = reg.register_source(img, width=W, height=H, copy=False)
    frames = [reg.add_frame(sid, k) for k in range(2)]
    return reg, sid, frames


def _batch(seed: int, n: int, frames: list[str]) -> list[ObjectIn]:
    """Heavily overlapping objects: few categories, boxes on a coarse grid (exact repeats),
    a third with masks (some as RLE), a third on video frames, most with embeddings."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        x0, y0 = int(rng.integers(0, 8)) * 8, int(rng.integers(0, 5)) * 8
        x1, y1 = x0 + int(rng.integers(1, 4)) * 8, y0 + int(rng.integers(1, 4)) * 8
        mask = mask_rle = None
        if k % 3 == 1:
            m = np.zeros((H, W), dtype=bool)
            m[y0:y1, x0:x1] = True
            m[y0:y0 + int(rng.integers(1, y1 - y0 + 1)), x0] = False
            if rng.random() < 0.5:
                mask = m
            else:
                mask_rle = rle_ops.encode(m)
        out.append(ObjectIn(
            f"cat {int(rng.integers(0, 3))}" if k % 11 else "Cat 0",  # a name_key synonym of "cat 0"
            (float(x0), float(y0), float(x1), float(y1)), mask=mask, mask_rle=mask_rle,
            confidence=float(rng.random()),
            embedding=rng.standard_normal(8).astype(np.float32) if k % 5 else None,
            frame_id=frames[k % 2] if k % 3 == 2 else None,
            validation_status="approved" if k % 7 == 0 else "pending", validated_by="me" if k % 7 == 0 else None,
            metadata={"k": k} if k % 4 == 0 else None,
        ))
    return out


def _dump(reg: Registry, sid: str, frames: list[str]) -> dict:
    names = {sid: "SRC", **{f: f"F{k}" for k, f in enumerate(frames)}}
    rows = []
    for r in reg._conn.query("SELECT * FROM objects ORDER BY rowid"):
        r = dict(r)
        del r["created_at"], r["updated_at"], r["validated_at"]
        r["source_id"], r["frame_id"] = names[r["source_id"]], names.get(r["frame_id"])
        rows.append(r)
    return {
        "objects": rows,
        "embeddings": reg._conn.query("SELECT object_id, version_id, dim, vector FROM embeddings ORDER BY rowid"),
        "outbox": reg._conn.query("SELECT id, object_id, version_id, operation FROM embedding_outbox ORDER BY id"),
        "categories": reg._conn.query("SELECT category_id, name FROM categories ORDER BY category_id"),
        "names": reg._conn.query("SELECT * FROM category_names ORDER BY name_key"),
    }


def _run(tmp: Path, name: str, sizes: list[int], monkeypatch) -> tuple[list, dict]:
    counter = itertools.count()  # the same object ids in both registries
    monkeypatch.setattr(objects_write, "new_ids", lambda p, n: [f"{p}_{next(counter):010d}" for _ in range(n)])
    reg, sid, frames = _registry(tmp / name)
    try:
        results = []
        for seed, n in enumerate(sizes):
            res = reg.register_objects(sid, _batch(seed, n, frames))
            results.append((res.object_ids, res.duplicates))
        return results, _dump(reg, sid, frames)
    finally:
        reg.close()


def test_multirow_inserts_write_the_same_rows_ids_and_duplicates_as_executemany(tmp_path, monkeypatch) -> None:
    sizes = [700, 300, 1, 40, 517, 64, 127]  # full 64-row statements and every remainder piece
    calls: list[int] = []
    real = objects_write.insert_rows
    monkeypatch.setattr(objects_write, "insert_rows", lambda tx, rows: (calls.append(1), real(tx, rows)))
    got = _run(tmp_path, "multirow", sizes, monkeypatch)
    assert len(calls) == len(sizes)
    monkeypatch.setattr(objects_write, "insert_rows", _executemany_insert)
    want = _run(tmp_path, "executemany", sizes, monkeypatch)
    assert got[0] == want[0]
    for key in want[1]:
        assert got[1][key] == want[1][key], key
    # Both kinds of dedupe answer, masks, embeddings and frames are exercised.
    assert all(d for _, d in want[0][:2]) and len(want[1]["objects"]) > 100
    objs = want[1]["objects"]
    assert {o["frame_id"] for o in objs} == {None, "F0", "F1"} and any(o["mask_counts"] for o in objs)
    assert 0 < len(want[1]["embeddings"]) < len(objs) and len(want[1]["outbox"]) == len(want[1]["embeddings"])


def _counts(reg: Registry) -> tuple[int, ...]:
    return tuple(reg._conn.scalar(f"SELECT count(*) FROM {t}")
                 for t in ("objects", "embeddings", "embedding_outbox", "categories"))


def _bad_confidence(frames):
    """object 400 confidence in \\[0, 1\\], got 2.0"""
    objs = _batch(3, 500, frames)
    objs[400].confidence = 2.0
    return objs


def _bad_embedding_early_and_box_late(frames):
    """^object 300"""
    objs = _batch(4, 500, frames)
    objs[5].embedding = np.full(8, np.nan, dtype=np.float32)  # boxes are checked before embeddings
    objs[300].xyxy = (10.0, 10.0, 5.0, 20.0)
    return objs


def _bad_frame(frames):
    """^expected frame_id of a frame of src_.*frm_not_a_frame"""
    objs = _batch(5, 500, frames)
    objs[450].frame_id = "frm_not_a_frame"
    return objs


def _new_category_then_bad_rle(frames):
    """^object 499 mask_rle"""
    objs = _batch(6, 500, frames)
    objs[0].category = "created by this batch only"
    objs[499].mask, objs[499].mask_rle = None, {"size": [H, W], "counts": "!!"}
    return objs


@pytest.mark.parametrize("case", [_bad_confidence, _bad_embedding_early_and_box_late, _bad_frame,
                                  _new_category_then_bad_rle])
def test_error_mid_batch_writes_nothing(tmp_path, case) -> None:
    reg, sid, frames = _registry(tmp_path / "err")
    try:
        reg.register_objects(sid, _batch(9, 20, frames))  # some committed state to keep
        before = _counts(reg)
        with pytest.raises(ValueError, match=case.__doc__):
            reg.register_objects(sid, case(frames))
        assert _counts(reg) == before
        assert not reg._conn.conn.in_transaction
        assert reg._conn.scalar("SELECT count(*) FROM category_names WHERE name_key LIKE 'created by%'") == 0
        res = reg.register_objects(sid, _batch(7, 300, frames))  # the registry still works
        assert _counts(reg)[0] == before[0] + len(res.registered)
    finally:
        reg.close()


def test_sqlite_error_in_a_later_statement_rolls_back_the_earlier_ones(tmp_path, monkeypatch) -> None:
    reg, sid, frames = _registry(tmp_path / "integrity")
    try:
        taken = reg.register_objects(sid, [ObjectIn("taken", (0.0, 0.0, 4.0, 4.0))]).object_ids[0]
        before = _counts(reg)
        monkeypatch.setattr(objects_write, "new_ids",
                            lambda p, k: [f"{p}_x{i:05d}" if i != 350 else taken for i in range(k)])
        with pytest.raises(sqlite3.IntegrityError):
            reg.register_objects(sid, _batch(2, 400, frames), dedupe=False)  # row 350: the 6th statement
        assert _counts(reg) == before
        assert reg.get_object(taken)["category"] == "taken"
    finally:
        reg.close()


def test_readers_see_all_of_a_batch_or_none(tmp_path) -> None:
    reg, sid, frames = _registry(tmp_path / "readers")
    seen: set[int] = set()
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            seen.add(reg.count_objects())

    t = threading.Thread(target=poll)
    t.start()
    try:
        res = reg.register_objects(sid, _batch(8, 900, frames), dedupe=False)
    finally:
        stop.set()
        t.join()
    try:
        assert len(res.registered) == 900
        assert seen <= {0, 900}
    finally:
        reg.close()


def test_statements_shrink_under_a_low_parameter_limit(tmp_path) -> None:
    reg, sid, frames = _registry(tmp_path / "limit")
    try:
        reg._conn.conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)  # 3 object rows at most
        res = reg.register_objects(sid, _batch(3, 300, frames), dedupe=False)
        assert reg.count_objects() == 300 == len(res.registered)
        got = [r["object_id"] for r in reg._conn.query("SELECT object_id FROM objects ORDER BY rowid")]
        assert got == res.object_ids
        assert reg._conn.scalar("SELECT count(*) FROM embeddings") == sum(1 for k in range(300) if k % 5)
    finally:
        reg.close()


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 127, 128, 200, 1000])
def test_piece_sizes_cover_the_rows_with_few_distinct_statements(n: int) -> None:
    sizes = objects_write._piece_sizes(n, 64)
    assert sum(sizes) == n and all(s in (64, 32, 16, 8, 4, 2, 1) for s in sizes)
    rest = [s for s in sizes if s != 64]
    assert rest == sorted(set(rest), reverse=True)  # each smaller size at most once, largest first
    assert objects_write._piece_sizes(n, 2) == [2] * (n // 2) + [1] * (n % 2)


def test_f32_fast_path_gives_check_embeddings_bytes_and_falls_back_for_anything_else() -> None:
    from registry.validation import check_embeddings

    rng = np.random.default_rng(0)
    good = [rng.standard_normal(8).astype(np.float32) for _ in range(5)]
    good[2][3] = -0.0
    assert objects_batch.f32_blobs(good, 8) == check_embeddings(good, list(range(5)), 8, "v1")
    assert objects_batch.f32_blobs([], 8) == []
    wide = rng.standard_normal((3, 16)).astype(np.float32)
    for odd in (good[0].astype(np.float64), good[0].astype(">f4"), wide[0, ::2], list(good[0]),
                np.zeros(8, np.float32), np.full(8, np.inf, np.float32), good[0][:7]):
        assert objects_batch.f32_blobs([good[1], odd], 8) is None
    # The fallback still converts what it accepts (float64, big-endian, strided) to the same bytes.
    conv = check_embeddings([good[0].astype(np.float64), good[0].astype(">f4"), np.ascontiguousarray(wide[0, ::2])],
                            [0, 1, 2], 8, "v1")
    assert conv[0] == conv[1] == good[0].tobytes() and conv[2] == wide[0, ::2].copy().tobytes()


def test_given_rle_fast_path_matches_check_mask_or_defers_to_it() -> None:
    from registry.validation import check_mask

    m = np.zeros((H, W), dtype=bool)
    m[3:9, 4:20] = True
    rle = rle_ops.encode(m)
    for given in (rle, {"size": (H, W), "counts": rle["counts"]}):
        want = check_mask(ObjectIn("c", (0, 0, 1, 1), mask_rle=given), W, H, "object 0", validate=False)
        assert objects_write._given_rle(given, W, H) == want
    for other in ({"size": [np.int64(H), W], "counts": rle["counts"]}, {"size": [H, W], "counts": rle["counts"].encode()},
                  {"size": [W, H], "counts": rle["counts"]}, {"counts": rle["counts"]}, {"size": [H, W]}, "rle",
                  {"size": [True, W], "counts": "x"}):
        assert objects_write._given_rle(other, W, H) is None
    assert objects_write._given_rle(rle, None, None) is None  # check_mask words the missing size


@pytest.mark.parametrize("emb", [np.float64, ">f4", "strided", "list"])
def test_registered_bytes_do_not_depend_on_the_embedding_layout(tmp_path, emb) -> None:
    reg, sid, frames = _registry(tmp_path / "layout")
    try:
        vec = np.random.default_rng(4).standard_normal(16).astype(np.float32)
        base = vec[::2]
        given = {"strided": base, "list": [float(v) for v in base]}.get(emb)
        if given is None:
            given = base.astype(emb)
        ids = reg.register_objects(sid, [ObjectIn("c", (0.0, 0.0, 4.0, 4.0), embedding=np.ascontiguousarray(base)),
                                         ObjectIn("c", (40.0, 40.0, 50.0, 50.0), embedding=given)]).object_ids
        got = [reg._conn.scalar("SELECT vector FROM embeddings WHERE object_id = ?", (i,)) for i in ids]
        assert got[0] == got[1] == np.ascontiguousarray(base).tobytes()
    finally:
        reg.close()
