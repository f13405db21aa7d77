"""Worker processes for large exports: mask geometry computed outside the exporting process."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

#: Exports with at least this many objects compute geometry in worker processes.
_POOL_MIN_OBJECTS = 20_000
#: At most this many worker processes (peak RSS: ~100 MB each on top of the parent).
_POOL_MAX_WORKERS = 4


def _auto_workers(total: int) -> int:
    """Worker processes for an export of ``total`` objects: none below ``_POOL_MIN_OBJECTS``
    (starting workers costs more than it saves), else one per CPU this process may use, at most
    ``_POOL_MAX_WORKERS`` (each holds numpy/OpenCV/pycocotools, ~100 MB RSS)."""
    if total < _POOL_MIN_OBJECTS:
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return min(_POOL_MAX_WORKERS, cpus) if cpus >= 2 else 0


class _WorkerPool:
    """Worker processes computing annotation text for chunks, results read back in order.

    Plain ``subprocess`` workers (``python -c``, importing only :mod:`registry.formats`), not
    ``multiprocessing``: that re-imports the caller's ``__main__`` (``launch.py`` pulls in the
    whole app) in every worker and would deadlock on ``fork`` with the caller's threads.
    Each worker has at most one chunk outstanding: the parent writes a request only to an idle
    worker and reads results oldest first, so neither side can block the other on a full pipe,
    and at most ``n`` chunks are in flight (bounded memory).
    """

    def __init__(self, n: int) -> None:
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        code = "from registry.formats.annotations import serve; serve()"
        self.procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, env=env) for _ in range(n)]
        self.pending: deque = deque()  # (tag, worker index), oldest first
        self.next = 0

    def full(self) -> bool:
        return len(self.pending) >= len(self.procs)

    def submit(self, tag: Any, fmt: str, task: str, items: list[tuple]) -> None:
        """Sends a chunk to the next worker, which must be idle (call :meth:`pop` while full)."""
        i = self.next
        self.next = (i + 1) % len(self.procs)
        pickle.dump((fmt, task, items), self.procs[i].stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self.procs[i].stdin.flush()
        self.pending.append((tag, i))

    def pop(self) -> tuple[Any, list[tuple]]:
        """The oldest chunk's tag and results (blocks until that worker is done)."""
        tag, i = self.pending.popleft()
        try:
            ok, value = pickle.load(self.procs[i].stdout)
        except EOFError:
            code = self.procs[i].wait()
            raise RuntimeError(f"export worker {i} exited with code {code} (see its error above)") from None
        if not ok:
            name, text = value
            # A bad stored mask is the same ValueError as without workers; anything else is ours.
            raise (ValueError if name == "ValueError" else RuntimeError)(f"export worker {i}: {name}: {text}")
        return tag, value

    def close(self) -> None:
        for proc in self.procs:
            try:
                proc.stdin.close()  # EOF: the worker's loop ends
            except OSError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
