"""SQLite connection for the registry: WAL, foreign keys, busy timeout, one writer at a time.

Why a lock *and* ``BEGIN IMMEDIATE``:

* Inside one process every :class:`Connection` on the same file shares a process-wide writer
  lock, so threads queue in Python instead of spinning in SQLite's busy handler.
* Across processes, every write transaction starts with ``BEGIN IMMEDIATE``: it takes SQLite's
  RESERVED lock up front (waiting up to ``busy_timeout``), so a transaction never has to *upgrade*
  from read to write, which is the case where SQLite returns "database is locked" at once without
  calling the busy handler. WAL lets readers go on while a writer works.

The connection runs in driver autocommit mode (``isolation_level=None``): transactions are
explicit, and reads outside :meth:`Connection.transaction` see the latest committed state.
"""
from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlite_utils

BUSY_TIMEOUT_MS = 60_000
_PROCESS_WRITER_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def writer_lock_for(path: Path | str) -> threading.RLock:
    """The process-wide writer lock for one database file (keyed by its resolved path)."""
    key = str(Path(path).resolve()) if str(path) != ":memory:" else f":memory:{id(path)}"
    with _LOCKS_GUARD:
        lock = _PROCESS_WRITER_LOCKS.get(key)
        if lock is None:
            lock = _PROCESS_WRITER_LOCKS[key] = threading.RLock()
        return lock


class Connection:
    """One SQLite connection shared by the threads of a registry, guarded by locks.

    Args:
        path: the database file (created when missing).
        busy_timeout_ms: how long a writer waits for another *process* to finish.

    Reads take the connection lock only; writes go through :meth:`transaction`, which takes the
    process-wide writer lock, then the connection lock, then ``BEGIN IMMEDIATE``.
    """

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = Path(path)
        self.conn = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
        )
        self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self._journal_wal()
        self.conn.execute("PRAGMA foreign_keys = ON")
        # NORMAL is durable across application crashes in WAL mode (only an OS crash/power loss
        # may lose the last transactions); it roughly halves commit cost.
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA cache_size = -65536")  # 64 MiB page cache
        # Checkpoint every 10,000 WAL pages (~40 MB) instead of SQLite's 1,000: each checkpoint
        # writes the latest copy of every page touched since the last one and fsyncs twice, and
        # registration touches the same index pages again and again (random object ids), so
        # rarer checkpoints write far less (about 1.5x ingest in tests/bench/bench_registry.py).
        # Durability is unchanged (commits are in the WAL either way); only crash recovery may
        # replay a longer WAL. The WAL file is truncated back to 64 MiB after a checkpoint.
        self.conn.execute("PRAGMA wal_autocheckpoint = 10000")
        self.conn.execute("PRAGMA journal_size_limit = 67108864")
        self.conn.execute("PRAGMA temp_store = MEMORY")
        # sqlite_utils turns recursive triggers on by default; the schema's triggers assume off.
        self.db = sqlite_utils.Database(self.conn, recursive_triggers=False)
        self.lock = threading.RLock()
        self.writer_lock = writer_lock_for(self.path)
        self._depth = 0

    def _journal_wal(self) -> None:
        # Switching to WAL needs a moment of exclusive access; another process may hold the file
        # while it opens, so retry briefly instead of failing.
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise RuntimeError(f"expected journal_mode wal for {self.path}, got {mode!r}")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # -- reads ---------------------------------------------------------------------------------
    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        with self.lock:
            return self.conn.execute(sql, params)

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        """Runs a read and returns all rows as dicts."""
        with self.lock:
            cur = self.conn.execute(sql, params)
            cols = [c[0] for c in cur.description or ()]
            return [dict(zip(cols, row, strict=False)) for row in cur.fetchall()]

    def scalar(self, sql: str, params: Any = ()) -> Any:
        with self.lock:
            row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    # -- writes --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``), rolled back on any error.

        Re-entrant: a nested call joins the outer transaction (the outer one commits).
        """
        with self.writer_lock, self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            self._begin_immediate()
            self._depth = 1
            try:
                yield self.conn
            except BaseException:
                self._depth = 0
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            else:
                self._depth = 0
                self.conn.execute("COMMIT")

    def _begin_immediate(self) -> None:
        # busy_timeout covers waiting for other processes; the loop is a second line of defence
        # for the rare SQLITE_BUSY that bypasses the handler (e.g. during a WAL recovery).
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def close(self) -> None:
        with self.lock:
            self.conn.close()
