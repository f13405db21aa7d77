"""Child-process writer for the concurrency and SIGKILL tests (run with ``python -m``).

    python -m tests.registry._worker write DATA TAG BATCHES PER_BATCH
    python -m tests.registry._worker kill DATA FIRST_BATCH SECOND_BATCH
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from registry.facade import ObjectIn, Registry

W, H, DIM = 64, 48, 8


def batch(rng: np.random.Generator, n: int, with_masks: bool = True) -> list[ObjectIn]:
    out = []
    for i in range(n):
        x0, y0 = int(rng.integers(0, W - 8)), int(rng.integers(0, H - 8))
        m = None
        if with_masks:
            m = np.zeros((H, W), bool)
            m[y0:y0 + 6, x0:x0 + 7] = True
        v = rng.standard_normal(DIM).astype(np.float32)
        out.append(ObjectIn(["cat", "dog", "bird"][i % 3], (x0, y0, x0 + 7, y0 + 6), mask=m,
                            confidence=float(rng.random()), embedding=v))
    return out


def new_source(reg: Registry, folder: Path, tag: str) -> str:
    path = folder / f"{tag}.bin"
    path.write_bytes(f"{tag}-{os.getpid()}-{time.time_ns()}".encode())
    return reg.register_source(path, width=W, height=H, copy=False)


def write(data: str, tag: str, batches: int, per_batch: int) -> None:
    rng = np.random.default_rng(abs(hash(tag)) % 2**32)
    folder = Path(data) / "inputs"
    folder.mkdir(exist_ok=True)
    with Registry(data, embedding_dim=DIM, index="exact") as reg:
        for b in range(batches):
            sid = new_source(reg, folder, f"{tag}-{b}")
            res = reg.register_objects(sid, batch(rng, per_batch), dedupe=False)
            assert len(res.registered) == per_batch


def kill(data: str, first: int, second: int) -> None:
    rng = np.random.default_rng(0)
    folder = Path(data) / "inputs"
    folder.mkdir(exist_ok=True)
    reg = Registry(data, embedding_dim=DIM, index="chroma")
    reg.register_objects(new_source(reg, folder, "whole"), batch(rng, first), dedupe=False)
    objs = batch(rng, second)
    sid = new_source(reg, folder, "killed")
    state = {"seen": 0}

    def trace(sql: str) -> None:
        # Signal the parent from inside the open transaction, after some rows went in, then
        # stall so that the SIGKILL lands mid-batch. The registry writes up to 64 rows per
        # INSERT statement (registry/objects_write.py), so count statements, not rows.
        if sql.lstrip().upper().startswith("INSERT INTO OBJECTS"):
            state["seen"] += 1
            if state["seen"] == max(2, second // 128):
                print("INSIDE", flush=True)
                time.sleep(60)

    reg.connection.conn.set_trace_callback(trace)
    reg.register_objects(sid, objs, dedupe=False)
    print("FINISHED", flush=True)  # must never be reached


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "write":
        write(args[0], args[1], int(args[2]), int(args[3]))
    elif mode == "kill":
        kill(args[0], int(args[1]), int(args[2]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
