"""A background outbox relay for the long-running index-writer process (``launch.py serve``).

Other processes (``label``, ``import``, ``segment`` run beside the server) write their vectors to
the outbox only (:mod:`registry.index_lock`). The server's registry relays them: this thread
checks the outbox every ``interval_s`` seconds (one indexed ``count(*)``) and relays when rows
are pending. When another process holds the writer lock, the relay skips, and becomes the
writer as soon as that process exits (each attempt retries the non-blocking lock).
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from registry import outbox

log = logging.getLogger(__name__)


class OutboxRelay:
    """Relays ``reg``'s pending outbox rows every ``interval_s`` seconds in a daemon thread.

    Args:
        reg: the :class:`registry.facade.Registry` (its ``sync_outbox`` does the work).
        interval_s: seconds between checks (> 0).
    """

    def __init__(self, reg: Any, interval_s: float = 2.0) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.reg = reg
        self.interval_s = float(interval_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.relayed = 0

    def relay_once(self) -> dict:
        """One check: relays when rows are pending; returns ``sync_outbox``'s result (or zeros)."""
        if not outbox.pending_count(self.reg.connection, self.reg.embedding_version):
            return {"synced": 0, "failed": 0, "pending": 0}
        res = self.reg.sync_outbox()
        self.relayed += int(res.get("synced") or 0)
        return res

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.relay_once()
            except Exception as exc:  # noqa: BLE001 - the rows stay pending; retried next time
                log.warning("background outbox relay failed (will retry): %s", exc)

    def start(self) -> OutboxRelay:
        """Starts the thread (once); returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stops the thread and waits for a relay in progress to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None
