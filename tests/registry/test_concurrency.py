"""Many writers at once (threads and processes), and a writer killed mid-batch."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from registry.facade import Registry
from tests.registry import _worker

ROOT = Path(__file__).resolve().parents[2]
THREADS, PROCS, BATCHES, PER_BATCH = 10, 4, 6, 15


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_ten_threads_and_four_processes_lose_nothing(data_dir):
    Registry(data_dir, embedding_dim=_worker.DIM, index="exact").close()  # schema first
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.registry._worker", "write", str(data_dir), f"p{i}", str(BATCHES), str(PER_BATCH)],
            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(PROCS)
    ]
    shared = Registry(data_dir, embedding_dim=_worker.DIM, index="exact")
    errors: list[BaseException] = []
    folder = data_dir / "inputs"
    folder.mkdir(exist_ok=True)

    def thread_writer(t: int) -> None:
        try:
            # half the threads share one Registry, half open their own (same process lock)
            reg = shared if t % 2 == 0 else Registry(data_dir, embedding_dim=_worker.DIM, index="exact")
            rng = np.random.default_rng(t)
            for b in range(BATCHES):
                sid = _worker.new_source(reg, folder, f"t{t}-{b}")
                res = reg.register_objects(sid, _worker.batch(rng, PER_BATCH), dedupe=False)
                assert len(res.registered) == PER_BATCH
                reg.list_objects(category="cat", status="pending", limit=5)  # readers in between
            if reg is not shared:
                reg.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=thread_writer, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outs = [p.communicate(timeout=180) for p in procs]  # (stdout, stderr)
    assert not errors, errors
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err
    total = (THREADS + PROCS) * BATCHES
    assert shared.count_sources() == total
    assert shared.count_objects() == total * PER_BATCH
    assert shared.connection.scalar("SELECT count(*) FROM embeddings") == total * PER_BATCH
    assert shared.connection.scalar("SELECT count(*) FROM embedding_outbox") == total * PER_BATCH
    assert sorted(c["name"] for c in shared.list_categories()) == ["bird", "cat", "dog"]
    for c in shared.list_categories():
        assert c["object_count"] == total * PER_BATCH // 3
    shared.close()


def test_sigkill_mid_batch_leaves_batch_absent_and_doctor_clean(data_dir):
    first, second = 200, 1000
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.registry._worker", "kill", str(data_dir), str(first), str(second)],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "INSIDE", (line, proc.stderr.read() if proc.poll() is not None else "")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with Registry(data_dir, embedding_dim=_worker.DIM, index="chroma") as reg:
        # the first batch whole, the killed one absent (its source row committed before it)
        assert reg.count_objects() == first
        assert reg.connection.scalar("SELECT count(*) FROM embeddings") == first
        assert reg.connection.scalar("SELECT count(*) FROM embedding_outbox") == first
        killed = reg.connection.scalar("SELECT source_id FROM sources WHERE file_name = 'killed.bin'")
        assert killed and reg.count_objects(source_id=killed) == 0
        # the first batch reached Chroma before the kill; nothing of the second did
        report = reg.doctor()
        assert report["ok"], report
        assert reg.index.count() == first
        assert reg.doctor(repair=True)["ok"]
        assert len(reg.search(np.ones(_worker.DIM, np.float32), k=5)) == 5
