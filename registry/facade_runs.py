"""The registry facade's training-run methods (:mod:`registry.runs`).

A mixin of :class:`registry.facade.Registry`: it uses the facade's ``_conn``.
"""
from __future__ import annotations

from typing import Any

from registry import runs as run_records


class RunMethods:
    """Training runs and their per-epoch metrics."""

    # -- training runs (registry.runs) ---------------------------------------------------------
    def create_run(self, **fields: Any) -> str:
        """Records a training run (status ``queued``); see :func:`registry.runs.create_run`."""
        return run_records.create_run(self._conn, **fields)

    def get_run(self, run_id: str) -> dict:
        """The run row (JSON decoded). Raises ValueError for unknown ids."""
        return run_records.get_run(self._conn, run_id)

    def list_runs(self, *, limit: int | None = None) -> list[dict]:
        """Training runs, newest first."""
        return run_records.list_runs(self._conn, limit=limit)

    def update_run(self, run_id: str, **fields: Any) -> dict:
        """Status / best weights / metrics / error of a run (see :func:`registry.runs.update_run`)."""
        return run_records.update_run(self._conn, run_id, **fields)

    def record_epoch(self, run_id: str, epoch: int, metrics: dict) -> dict:
        """Stores one epoch's losses and metrics (see :func:`registry.runs.record_epoch`)."""
        return run_records.record_epoch(self._conn, run_id, epoch, metrics)

    def run_epochs(self, run_id: str) -> list[dict]:
        """The run's per-epoch rows, in epoch order."""
        return run_records.run_epochs(self._conn, run_id)
