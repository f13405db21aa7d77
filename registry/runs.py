"""Training runs and their per-epoch metrics (schema v3 tables ``runs`` and ``run_epochs``).

A run records what was trained (model, task, parameters), on what (dataset id, name, version and
the export folder the trainer read), how it went (status ``queued`` → ``running`` → ``finished``
/ ``stopped`` / ``failed``, with an error message), and where its best weights are. Each finished
epoch is one ``run_epochs`` row: training losses (``box_loss``, ``cls_loss``, ``dfl_loss``,
``seg_loss``), validation precision / recall / mAP50 / mAP50-95 for boxes (``box_*``) and masks
(``mask_*``; NULL for detection runs), ``fitness``, and any other numbers in ``extras`` (JSON).
Metrics are fractions in [0, 1]; losses are ultralytics' (unbounded, >= 0).

Functions take the registry's :class:`registry.db.Connection`; the facade wraps them.
"""
from __future__ import annotations

import json
import math
from typing import Any

from registry.db import Connection
from registry.ids import new_id, utc_now

RUN_STATUSES = ("queued", "running", "stopped", "finished", "failed")
FINAL_STATUSES = ("stopped", "finished", "failed")
TASKS = ("detect", "segment")
EPOCH_COLUMNS = (
    "box_loss", "cls_loss", "dfl_loss", "seg_loss",
    "box_precision", "box_recall", "box_map50", "box_map50_95",
    "mask_precision", "mask_recall", "mask_map50", "mask_map50_95", "fitness",
)
_RUN_COLUMNS = (
    "run_id", "dataset_id", "dataset_name", "dataset_version", "export_path", "model", "task", "params",
    "status", "best_weights", "best_metrics", "error", "metadata", "created_at", "started_at", "finished_at",
)
_JSON_COLUMNS = ("params", "best_metrics", "metadata")
_UPDATABLE = ("export_path", "status", "best_weights", "best_metrics", "error", "metadata", "params")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _decode(row: dict) -> dict:
    for col in _JSON_COLUMNS:
        if row.get(col) is not None:
            row[col] = json.loads(row[col])
    return row


def _number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"epoch metric {name!r}: expected a number, got {value!r}") from None
    return out if math.isfinite(out) else None  # NaN (no val set) is stored as NULL


def create_run(
    conn: Connection, *, model: str, task: str, params: dict | None = None, dataset_id: str | None = None,
    dataset_name: str | None = None, dataset_version: str | None = None, export_path: str | None = None,
    metadata: dict | None = None,
) -> str:
    """Records a new run in status ``queued``; returns its ``run_…`` id.

    Raises:
        ValueError: unknown task or an empty model name.
    """
    if task not in TASKS:
        raise ValueError(f"run task: expected one of {TASKS}, got {task!r}")
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"run model: expected a model name or path, got {model!r}")
    run_id = new_id("run")
    with conn.transaction() as tx:
        tx.execute(
            "INSERT INTO runs (run_id, dataset_id, dataset_name, dataset_version, export_path, model, task, params, "
            "metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, dataset_id, dataset_name, None if dataset_version is None else str(dataset_version),
             export_path, model.strip(), task, _dumps(params or {}),
             None if metadata is None else _dumps(metadata)),
        )
    return run_id


def get_run(conn: Connection, run_id: str) -> dict:
    """The run row with JSON columns decoded.

    Raises:
        ValueError: no such run (the message lists the latest ids).
    """
    rows = conn.query(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE run_id = ?", (run_id,))
    if not rows:
        known = [r["run_id"] for r in conn.query("SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 5")]
        raise ValueError(f"no training run {run_id!r}; latest runs: {known or 'none'} (see launch.py train)")
    return _decode(rows[0])


def list_runs(conn: Connection, *, limit: int | None = None) -> list[dict]:
    """Runs, newest first."""
    sql = f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs ORDER BY created_at DESC, run_id"
    params: tuple = ()
    if limit is not None:
        sql += " LIMIT ?"
        params = (int(limit),)
    return [_decode(r) for r in conn.query(sql, params)]


def update_run(conn: Connection, run_id: str, **fields: Any) -> dict:
    """Sets some of ``export_path``, ``status``, ``best_weights``, ``best_metrics``, ``error``,
    ``metadata``, ``params``; returns the updated row.

    A move to ``running`` stamps ``started_at`` (once), a move to a final status stamps
    ``finished_at``.

    Raises:
        ValueError: an unknown field or status, or no such run (nothing is written).
    """
    bad = sorted(set(fields) - set(_UPDATABLE))
    if bad:
        raise ValueError(f"run fields: expected some of {_UPDATABLE}, got {bad}")
    status = fields.get("status")
    if status is not None and status not in RUN_STATUSES:
        raise ValueError(f"run status: expected one of {RUN_STATUSES}, got {status!r}")
    get_run(conn, run_id)
    sets, values = [], []
    for key, value in fields.items():
        sets.append(f"{key} = ?")
        values.append(_dumps(value) if key in _JSON_COLUMNS and value is not None else value)
    now = utc_now()
    if status == "running":
        sets.append("started_at = coalesce(started_at, ?)")
        values.append(now)
    if status in FINAL_STATUSES:
        sets.append("finished_at = ?")
        values.append(now)
    if sets:
        with conn.transaction() as tx:
            tx.execute(f"UPDATE runs SET {', '.join(sets)} WHERE run_id = ?", (*values, run_id))
    return get_run(conn, run_id)


def record_epoch(conn: Connection, run_id: str, epoch: int, metrics: dict[str, Any]) -> dict:
    """Stores (or replaces) one epoch's metrics.

    Args:
        epoch: 1-based epoch number.
        metrics: keys of :data:`EPOCH_COLUMNS` go to their columns; any other key goes to
            ``extras``. Non-finite numbers are stored as NULL.

    Raises:
        ValueError: epoch < 1, a non-numeric metric, or no such run (nothing is written).
    """
    if int(epoch) < 1:
        raise ValueError(f"epoch: expected a 1-based epoch number, got {epoch}")
    get_run(conn, run_id)
    cols = {c: _number(c, metrics.get(c)) for c in EPOCH_COLUMNS}
    extras = {k: _number(k, v) for k, v in metrics.items() if k not in EPOCH_COLUMNS}
    with conn.transaction() as tx:
        tx.execute(
            f"INSERT OR REPLACE INTO run_epochs (run_id, epoch, {', '.join(EPOCH_COLUMNS)}, extras) "
            f"VALUES (?, ?, {', '.join('?' * len(EPOCH_COLUMNS))}, ?)",
            (run_id, int(epoch), *cols.values(), _dumps(extras)),
        )
    return {"run_id": run_id, "epoch": int(epoch), **cols, "extras": extras}


def run_epochs(conn: Connection, run_id: str) -> list[dict]:
    """The run's epochs in order, ``extras`` decoded."""
    rows = conn.query(
        f"SELECT run_id, epoch, {', '.join(EPOCH_COLUMNS)}, extras FROM run_epochs WHERE run_id = ? ORDER BY epoch",
        (run_id,),
    )
    for r in rows:
        r["extras"] = json.loads(r["extras"] or "{}")
    return rows


def delete_run(conn: Connection, run_id: str) -> None:
    """Removes the run and its epochs (files on disk are the caller's to remove)."""
    get_run(conn, run_id)
    with conn.transaction() as tx:
        tx.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))


def objects_state(conn: Connection) -> dict:
    """``{"object_count", "max_updated_at"}`` over all objects: what an export's manifest records
    as ``registry_state`` (:mod:`registry.export`), so a training export can be reused only while
    no object has changed since it was written."""
    row = conn.query("SELECT count(*) AS n, max(updated_at) AS t FROM objects")[0]
    return {"object_count": int(row["n"]), "max_updated_at": row["t"]}
