"""One vector-index writer per data folder (issue 9 item 4): real processes, real Chroma.

Run as a module this file is also the child writer:
``python -m tests.registry.test_index_writer write DATA TAG SECONDS THREADS``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from registry import index_lock
from registry.facade import ObjectIn, Registry

ROOT = Path(__file__).resolve().parents[2]
DIM, VERSION, W, H = 32, "writer-test", 64, 48


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["ANONYMIZED_TELEMETRY"] = "False"
    return env


def _registry(data: Path | str, **kw) -> Registry:
    return Registry(data, embedding_dim=DIM, embedding_version=VERSION, index="chroma", **kw)


def _objects(rng: np.random.Generator, n: int) -> list[ObjectIn]:
    out = []
    for i in range(n):
        x0, y0 = int(rng.integers(0, W - 10)), int(rng.integers(0, H - 10))
        out.append(ObjectIn(["cat", "dog"][i % 2], (x0, y0, x0 + 9, y0 + 9), confidence=float(rng.random()),
                            embedding=rng.standard_normal(DIM).astype(np.float32)))
    return out


def _source(reg: Registry, folder: Path, tag: str) -> str:
    path = folder / f"{tag}.bin"
    path.write_bytes(f"{tag}-{os.getpid()}-{time.time_ns()}".encode())
    return reg.register_source(path, width=W, height=H, copy=False)


def write(data: str, tag: str, seconds: float, threads: int) -> None:
    """Child: ``threads`` writer threads (half on a shared Registry, half on their own) for
    ``seconds``; prints JSON with how many rows this process relayed and when."""
    from registry import outbox

    relays: list[tuple[float, float, int]] = []
    original = outbox.sync

    def counting(*args, **kwargs):
        t0 = time.time()
        res = original(*args, **kwargs)
        if res["synced"]:
            relays.append((t0, time.time(), res["synced"]))
        return res

    outbox.sync = counting
    folder = Path(data) / "inputs"
    folder.mkdir(exist_ok=True)
    shared = _registry(data)
    deadline = time.time() + seconds
    written: list[int] = []
    errors: list[str] = []

    def worker(t: int) -> None:
        reg = shared if t % 2 == 0 else _registry(data)
        rng = np.random.default_rng(abs(hash((tag, t))) % 2**32)
        n = b = 0
        try:
            while time.time() < deadline:
                sid = _source(reg, folder, f"{tag}-{t}-{b}")
                n += len(reg.register_objects(sid, _objects(rng, 6), dedupe=False).registered)
                b += 1
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            written.append(n)
            if reg is not shared:
                reg.close()

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    shared.close()
    print(json.dumps({"pid": os.getpid(), "written": sum(written), "relays": relays, "errors": errors}), flush=True)


def test_lock_is_per_process_and_reports_the_holder(data_dir):
    assert index_lock.acquire(data_dir)
    try:
        assert index_lock.acquire(data_dir)  # same process: shared, counted
        index_lock.release(data_dir)
        assert index_lock.held_here(data_dir)
        code = ("import json,sys; from registry import index_lock as L; d=sys.argv[1]; "
                "print(json.dumps([L.acquire(d), L.holder_pid(d)]))")
        out = subprocess.run([sys.executable, "-c", code, str(data_dir)], cwd=ROOT, env=_env(),
                             capture_output=True, text=True, timeout=60, check=True).stdout
        assert json.loads(out) == [False, os.getpid()]
    finally:
        index_lock.release(data_dir)
    assert not index_lock.held_here(data_dir)
    out = subprocess.run([sys.executable, "-c", code, str(data_dir)], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=60, check=True).stdout
    acquired, pid = json.loads(out)
    assert acquired is True and pid != os.getpid()


def test_a_process_that_is_not_the_writer_only_fills_the_outbox(data_dir, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    with _registry(data_dir) as reg:
        sid = _source(reg, folder, "a")
        assert index_lock.acquire(data_dir)  # this process first ...
        index_lock.release(data_dir)
    # ... now another process holds the lock (a child that sleeps while holding it).
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys,time; from registry import index_lock as L; "
         "assert L.acquire(sys.argv[1]); print('HELD', flush=True); time.sleep(120)", str(data_dir)],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "HELD"
        with _registry(data_dir) as reg:
            res = reg.register_objects(sid, _objects(np.random.default_rng(0), 4), dedupe=False)
            assert len(res.registered) == 4
            sync = reg.sync_outbox()
            assert sync["synced"] == 0 and sync["pending"] == 4 and sync["writer_pid"] == holder.pid
            assert not reg.is_index_writer
            try:
                reg.rebuild_index()
                raise AssertionError("rebuild_index must refuse in a process that is not the writer")
            except RuntimeError as exc:
                assert f"process {holder.pid}" in str(exc) and "index.lock" in str(exc)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with _registry(data_dir) as reg:  # the holder is gone: the next process relays at open
        assert reg.connection.scalar("SELECT count(*) FROM embedding_outbox WHERE status = 'pending'") == 0
        oid = res.registered[0]
        assert reg.index.query(reg.get_embedding(oid), 1)[0][0] == oid


def test_the_servers_relay_thread_moves_other_processes_rows_into_the_index(data_dir):
    from registry.outbox_relay import OutboxRelay

    with _registry(data_dir) as server:
        assert server.is_index_writer
        relay = OutboxRelay(server, interval_s=60.0)  # driven by hand below, not by the clock
        child = subprocess.run([sys.executable, "-m", "tests.registry.test_index_writer", "write", str(data_dir),
                                "cli", "0.5", "1"], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
        assert child.returncode == 0, child.stderr[-3000:]
        report = json.loads(child.stdout.strip().splitlines()[-1])
        assert report["written"] >= 6 and report["relays"] == []  # the CLI only filled the outbox
        res = relay.relay_once()
        assert res["synced"] == report["written"] and res["pending"] == 0
        assert relay.relayed == report["written"]
        oid = server.connection.scalar("SELECT object_id FROM embeddings ORDER BY rowid DESC LIMIT 1")
        assert server.index.query(server.get_embedding(oid), 1)[0][0] == oid
        assert relay.relay_once() == {"synced": 0, "failed": 0, "pending": 0}
        relay.start().stop()  # the thread starts and stops cleanly


def test_three_writer_processes_with_threads_leave_a_clean_index(data_dir):
    _registry(data_dir).close()  # schema first
    seconds, procs, threads = 4.0, 3, 2
    children = [
        subprocess.Popen([sys.executable, "-m", "tests.registry.test_index_writer", "write", str(data_dir),
                          f"p{i}", str(seconds), str(threads)],
                         cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(procs)
    ]
    reports = []
    for c in children:
        out, err = c.communicate(timeout=180)
        assert c.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert all(not r["errors"] for r in reports), [r["errors"] for r in reports]
    total = sum(r["written"] for r in reports)
    assert total >= procs * threads * 6  # every thread wrote at least one batch
    # Relaying happened in one process at a time: the writers' relay intervals never overlap.
    spans = sorted((min(a for a, _, _ in r["relays"]), max(b for _, b, _ in r["relays"]), r["pid"])
                   for r in reports if r["relays"])
    assert spans, "no process relayed anything"
    for (_, end, pid), (start, _, pid2) in zip(spans, spans[1:], strict=False):
        assert end <= start, f"processes {pid} and {pid2} both wrote the index at the same time"
    with _registry(data_dir) as reg:
        assert reg.count_objects() == total
        report = reg.doctor()
        assert report["ok"], report
        assert report["checks"]["index"]["indexed"] == total
        assert report["checks"]["index"]["self_query"]["checked"] > 0
        # Every object is found by its own vector at rank 1 (Chroma queried in batches of 500).
        rows = reg.connection.execute("SELECT object_id, vector FROM embeddings").fetchall()
        assert len(rows) == total
        ids = [r[0] for r in rows]
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(total, DIM)
        misses = []
        for start in range(0, total, 500):
            res = reg.index._collection.query(query_embeddings=vecs[start:start + 500], n_results=1, include=[])
            misses += [oid for oid, hit in zip(ids[start:start + 500], res["ids"], strict=True) if hit != [oid]]
        assert not misses, f"{len(misses)} of {total} objects not found by their own vector: {misses[:5]}"


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode != "write":
        raise SystemExit(f"unknown mode {mode!r}")
    write(rest[0], rest[1], float(rest[2]), int(rest[3]))
