"""The pipelined registration path (registry/ingest_pipeline.py) against the serial one.

Boxes are ``xyxy`` absolute pixels of a 96 x 64 image; masks ``(H, W)`` bool or compressed
RLE; embeddings ``(8,)`` float32. A batch of ``>= 2 * CHUNK`` objects takes the pipeline; the
serial reference is the same call with ``CHUNK`` raised so that no batch qualifies.
"""
from __future__ import annotations

import itertools
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from registry import dedupe as overlap
from registry import ingest_pipeline as pipe
from registry import masks as rle_ops
from registry import objects_write
from registry.facade import ObjectIn, Registry

W, H = 96, 64


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "registry-ingest-writer"]


@pytest.fixture
def writers(monkeypatch: pytest.MonkeyPatch) -> list:
    """Counts the writer threads started (the proof that a batch was pipelined)."""
    started: list = []
    real = pipe.Writer

    class Counting(real):
        def __init__(self, tx, rows):
            started.append(len(rows.objects) // 28)
            super().__init__(tx, rows)

    monkeypatch.setattr(pipe, "Writer", Counting)
    return started


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


def _run(tmp: Path, name: str, batches: list[int], *, pipelined: bool, monkeypatch) -> tuple[list, dict]:
    monkeypatch.setattr(pipe, "CHUNK", 128 if pipelined else 10**9)
    reg, sid, frames = _registry(tmp / name)
    try:
        results = []
        for seed, n in enumerate(batches):
            res = reg.register_objects(sid, _batch(seed, n, frames))
            results.append((res.object_ids, res.duplicates))
        return results, _dump(reg, sid, frames)
    finally:
        reg.close()


def test_pipelined_batches_write_the_same_rows_ids_and_duplicates_as_serial(tmp_path, monkeypatch, writers) -> None:
    counter = itertools.count()
    monkeypatch.setattr(objects_write, "new_ids", lambda p, n: [f"{p}_{next(counter):010d}" for _ in range(n)])
    sizes = [700, 300, 40, 517]  # later batches also dedupe against the stored objects
    serial = _run(tmp_path, "serial", sizes, pipelined=False, monkeypatch=monkeypatch)
    assert writers == []
    counter = itertools.count()
    piped = _run(tmp_path, "piped", sizes, pipelined=True, monkeypatch=monkeypatch)
    assert len(writers) == 5 + 2 + 0 + 4  # chunks of ~128: 700 -> 5, 300 -> 2, 40 serial, 517 -> 4
    assert piped[0] == serial[0]
    for key in serial[1]:
        assert piped[1][key] == serial[1][key], key
    dups = [len(d) for _, d in serial[0]]
    stored = len(serial[1]["objects"])
    assert all(d > 0 for d in dups) and stored > 100  # both kinds of answer are exercised
    assert not _writer_threads()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_frame_dedupe_fed_in_chunks_equals_one_find_duplicates(seed: int, chunk: int) -> None:
    rng = np.random.default_rng(seed)

    def items(n: int, start: int) -> list[dict]:
        out = []
        for k in range(n):
            x, y = int(rng.integers(0, 6)) * 4, int(rng.integers(0, 4)) * 4
            w, h = int(rng.integers(1, 4)) * 4, int(rng.integers(1, 4)) * 4
            rle = None
            if rng.random() < 0.5:
                m = np.zeros((32, 40), dtype=bool)
                m[y:y + h, x:x + w] = True
                m[y, x:x + int(rng.integers(1, w + 1))] = False
                rle = rle_ops.encode(m)
            area = float(rle_ops.areas([rle])[0]) if rle else float(w * h)
            out.append({"category_id": int(rng.integers(0, 2)), "box": (x, y, w, h), "rle": rle, "area": area,
                        "coco": None, "mask_box": None, "object_id": f"n{start + k}"})
        return out

    def as_items(its: list[dict]) -> overlap.Items:
        return overlap.Items.build([i["category_id"] for i in its], [i["box"] for i in its], [i["rle"] for i in its],
                                   [i["area"] for i in its])

    stored = items(25, 1000)
    new = items(150, 0)
    want = {i: (stored if kind == "stored" else new)[j]["object_id"]
            for i, (kind, j) in overlap.find_duplicates(as_items(new), as_items(stored), 0.5).items()}
    fd = pipe.FrameDedupe([s["object_id"] for s in stored], as_items(stored), 0.5)
    got: dict[int, str] = {}
    for s in range(0, len(new), chunk):
        got.update({s + i: oid for i, oid in fd.run(new[s:s + chunk]).items()})
    assert got == want
    assert sum(v.startswith("n1") for v in want.values()) and sum(not v.startswith("n1") for v in want.values())


def _counts(reg: Registry) -> tuple[int, ...]:
    return tuple(reg._conn.scalar(f"SELECT count(*) FROM {t}")
                 for t in ("objects", "embeddings", "embedding_outbox", "categories"))


def _serial_error(tmp: Path, objs_fn, monkeypatch) -> str:
    monkeypatch.setattr(pipe, "CHUNK", 10**9)
    reg, sid, frames = _registry(tmp / "serial-err")
    try:
        with pytest.raises(ValueError) as err:
            reg.register_objects(sid, objs_fn(frames))
        return str(err.value).replace(sid, "SRC")
    finally:
        reg.close()
        monkeypatch.setattr(pipe, "CHUNK", 128)


def _bad_confidence(frames):
    objs = _batch(3, 500, frames)
    objs[400].confidence = 2.0
    return objs


def _bad_embedding_early_and_box_late(frames):
    objs = _batch(4, 500, frames)
    objs[5].embedding = np.full(8, np.nan, dtype=np.float32)  # the serial path checks boxes first
    objs[300].xyxy = (10.0, 10.0, 5.0, 20.0)
    return objs


def _bad_frame(frames):
    objs = _batch(5, 500, frames)
    objs[450].frame_id = "frm_not_a_frame"
    return objs


def _new_category_then_bad_rle(frames):
    objs = _batch(6, 500, frames)
    objs[0].category = "created by this batch only"
    objs[499].mask, objs[499].mask_rle = None, {"size": [H, W], "counts": "!!"}
    return objs


@pytest.mark.parametrize("case", [_bad_confidence, _bad_embedding_early_and_box_late, _bad_frame,
                                  _new_category_then_bad_rle])
def test_error_mid_batch_writes_nothing_and_words_it_as_serial(tmp_path, monkeypatch, writers, case) -> None:
    want = _serial_error(tmp_path, case, monkeypatch)
    reg, sid, frames = _registry(tmp_path / "piped-err")
    try:
        reg.register_objects(sid, _batch(9, 20, frames))  # some committed state to keep
        before = _counts(reg)
        with pytest.raises(ValueError) as err:
            reg.register_objects(sid, case(frames))
        assert str(err.value).replace(sid, "SRC") == want
        assert _counts(reg) == before
        assert not reg._conn.conn.in_transaction
        assert not _writer_threads()
        if case in (_bad_confidence, _new_category_then_bad_rle):
            assert len(writers) >= 1  # the failure came after chunks had been inserted
        res = reg.register_objects(sid, _batch(7, 300, frames))  # the registry still works
        assert _counts(reg)[0] == before[0] + len(res.registered)
    finally:
        reg.close()


def test_writer_error_propagates_and_rolls_back(tmp_path, monkeypatch) -> None:
    reg, sid, frames = _registry(tmp_path / "writer-err")
    calls = []
    real = pipe.insert_rows

    def failing(tx, rows):
        calls.append(threading.current_thread().name)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        real(tx, rows)

    try:
        before = _counts(reg)
        monkeypatch.setattr(pipe, "insert_rows", failing)
        with pytest.raises(RuntimeError, match="disk on fire"):
            reg.register_objects(sid, _batch(1, 600, frames))
        assert calls[:2] == ["registry-ingest-writer"] * 2
        assert _counts(reg) == before
        assert not _writer_threads()
        monkeypatch.setattr(pipe, "insert_rows", real)
        res = reg.register_objects(sid, _batch(1, 600, frames))
        assert _counts(reg)[0] == before[0] + len(res.registered)
    finally:
        reg.close()


def test_sqlite_error_in_a_later_chunk_propagates_and_keeps_earlier_commits(tmp_path, monkeypatch) -> None:
    reg, sid, frames = _registry(tmp_path / "integrity")
    try:
        first = reg.register_objects(sid, [ObjectIn("taken", (0.0, 0.0, 4.0, 4.0))])
        taken = first.object_ids[0]
        before = _counts(reg)
        n = 400
        monkeypatch.setattr(objects_write, "new_ids",
                            lambda p, k: [f"{p}_x{i:05d}" if i != 350 else taken for i in range(k)])
        with pytest.raises(sqlite3.IntegrityError):
            reg.register_objects(sid, _batch(2, n, frames), dedupe=False)
        assert _counts(reg) == before
        assert reg.get_object(taken)["category"] == "taken"
        assert not _writer_threads()
    finally:
        reg.close()


def test_readers_see_all_of_a_pipelined_batch_or_none(tmp_path) -> None:
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


def test_small_batches_stay_serial(tmp_path, writers) -> None:
    reg, sid, frames = _registry(tmp_path / "small")
    try:
        res = reg.register_objects(sid, _batch(0, 2 * pipe.CHUNK - 1, frames))
        assert writers == [] and len(res.object_ids) == 2 * pipe.CHUNK - 1
        reg.register_objects(sid, _batch(0, 2 * pipe.CHUNK, frames), dedupe=False)
        assert writers == [pipe.CHUNK, pipe.CHUNK]
    finally:
        reg.close()


def test_insert_rows_splits_statements_under_a_low_parameter_limit(tmp_path) -> None:
    reg, sid, frames = _registry(tmp_path / "limit")
    try:
        reg._conn.conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)  # 3 object rows at most
        res = reg.register_objects(sid, _batch(3, 300, frames), dedupe=False)
        assert reg.count_objects() == 300 == len(res.registered)
        got = [r["object_id"] for r in reg._conn.query("SELECT object_id FROM objects ORDER BY rowid")]
        assert got == res.object_ids
    finally:
        reg.close()


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 127, 128, 200, 1000])
def test_piece_sizes_cover_the_rows_with_few_distinct_statements(n: int) -> None:
    sizes = pipe._piece_sizes(n, 64)
    assert sum(sizes) == n and all(s in (64, 32, 16, 8, 4, 2, 1) for s in sizes)
    assert len(set(sizes)) == len(sizes) - sizes.count(64) + (64 in sizes)


def test_chunk_bounds_are_contiguous_and_near_equal() -> None:
    for n in (256, 300, 500, 1000, 1279):
        b = pipe.chunk_bounds(n)
        assert b[0][0] == 0 and b[-1][1] == n and all(x[1] == y[0] for x, y in zip(b, b[1:], strict=False))
        lens = [e - s for s, e in b]
        assert max(lens) - min(lens) <= 1 and len(b) == n // pipe.CHUNK
