"""One vector-index writer per data folder: a cross-process lock on ``<data>/index.lock``.

Embedded Chroma (like the hnswlib snapshot index) is not process-safe: each process keeps its
own in-memory copy of the HNSW graph and persists it, so two processes writing the same folder
silently lose or corrupt vectors (chroma issues #961, #421). Every process still writes the
outbox in SQLite (in the same transaction as its objects); only the process holding this lock
relays the outbox into the index. The others skip relaying: their rows are relayed by the
holder (the server relays every few seconds) or by whichever process opens the folder next.

The lock is ``fcntl.flock(LOCK_EX | LOCK_NB)``: never waits, and the kernel releases it when the
holder exits, however it exits (SIGKILL included). It is held per *process*: every
:class:`~registry.facade.Registry` of the folder in the holding process shares it (Chroma is
thread-safe within a process), counted so that it is released when the last one closes. A
forked child does not inherit the right to write (the state is keyed by process id, and the
inherited descriptor is closed without unlocking, which would release the parent's lock).
The holder writes its pid into the file so that others can say who holds it.

On platforms without ``fcntl`` (Windows) every process counts as the writer: run one process
per data folder there.
"""
from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "index.lock"


@dataclass
class _Held:
    fd: int
    pid: int
    count: int


_HELD: dict[str, _Held] = {}
_GUARD = threading.Lock()


def lock_path(data_dir: str | os.PathLike) -> Path:
    """``<data>/index.lock`` (resolved)."""
    return Path(data_dir).expanduser().resolve() / LOCK_FILE


def acquire(data_dir: str | os.PathLike) -> bool:
    """Tries to make this process the index writer of ``data_dir``; never blocks.

    Returns:
        True when this process holds the lock now (the count is raised by one: pair every True
        with one :func:`release`); False when another process holds it.
    """
    if fcntl is None:  # pragma: no cover - Windows
        return True
    path = lock_path(data_dir)
    key = str(path)
    pid = os.getpid()
    with _GUARD:
        held = _HELD.get(key)
        if held is not None and held.pid != pid:
            # Inherited through fork: forget it without LOCK_UN (that would free the parent's lock).
            with contextlib.suppress(OSError):
                os.close(held.fd)
            del _HELD[key]
            held = None
        if held is not None:
            held.count += 1
            return True
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{pid}\n".encode(), 0)
        _HELD[key] = _Held(fd, pid, 1)
        return True


def release(data_dir: str | os.PathLike) -> None:
    """Undoes one successful :func:`acquire`; the last one unlocks the file."""
    if fcntl is None:  # pragma: no cover - Windows
        return
    key = str(lock_path(data_dir))
    with _GUARD:
        held = _HELD.get(key)
        if held is None or held.pid != os.getpid():
            return
        held.count -= 1
        if held.count > 0:
            return
        del _HELD[key]
        with contextlib.suppress(OSError):
            fcntl.flock(held.fd, fcntl.LOCK_UN)
        with contextlib.suppress(OSError):
            os.close(held.fd)


def held_here(data_dir: str | os.PathLike) -> bool:
    """True when this process holds the writer lock of ``data_dir``."""
    if fcntl is None:  # pragma: no cover - Windows
        return True
    held = _HELD.get(str(lock_path(data_dir)))
    return held is not None and held.pid == os.getpid()


def holder_pid(data_dir: str | os.PathLike) -> int | None:
    """The pid recorded by the current (or last) holder, or None when unknown."""
    try:
        text = lock_path(data_dir).read_text(encoding="ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def not_writer_message(data_dir: str | os.PathLike, action: str) -> str:
    """The error text for an index write attempted by a process that is not the writer."""
    pid = holder_pid(data_dir)
    who = f"process {pid}" if pid else "another process"
    return (
        f"cannot {action}: the vector index of {Path(data_dir)} is written by {who} "
        f"(it holds {lock_path(data_dir)}); stop that process (e.g. the running `serve`) and retry, "
        f"or run this there"
    )
