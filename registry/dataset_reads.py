"""Reads of built datasets: a dataset row by id or name (and version), the list, its members,
its background images. Rows come back with their JSON columns decoded."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from registry.dataset_split import SPLITS


def _version_number(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


def _row_to_dict(row: Sequence, columns: Sequence[str]) -> dict:
    out = dict(zip(columns, row, strict=True))
    for key in ("split_config", "filter_config", "category_mapping"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


_DATASET_COLUMNS = (
    "dataset_id", "name", "format", "version", "split_config", "filter_config",
    "category_mapping", "object_count", "export_path", "created_at", "exported_at",
)


def get_dataset(reg: Any, name_or_id: str, version: int | None = None) -> dict:
    """A dataset row (JSON columns decoded) by id, or by name (latest version unless given).

    Raises:
        ValueError: no such dataset.
    """
    cols = ", ".join(_DATASET_COLUMNS)
    row = reg.db.execute(f"SELECT {cols} FROM datasets WHERE dataset_id = ?", [name_or_id]).fetchone()
    if row is None:
        rows = reg.db.execute(f"SELECT {cols} FROM datasets WHERE name = ?", [name_or_id]).fetchall()
        if version is not None:
            rows = [r for r in rows if _version_number(r[3]) == int(version)]
        if not rows:
            known = sorted({r[0] for r in reg.db.execute("SELECT name FROM datasets").fetchall()})
            raise ValueError(
                f"no dataset {name_or_id!r}" + (f" version {version}" if version else "")
                + f"; known datasets: {known}"
            )
        row = max(rows, key=lambda r: _version_number(r[3]))
    return _row_to_dict(row, _DATASET_COLUMNS)


def list_datasets(reg: Any) -> list[dict]:
    """All dataset rows, newest first."""
    cols = ", ".join(_DATASET_COLUMNS)
    rows = reg.db.execute(f"SELECT {cols} FROM datasets ORDER BY created_at DESC, name").fetchall()
    return [_row_to_dict(r, _DATASET_COLUMNS) for r in rows]


def dataset_members(reg: Any, dataset_id: str) -> dict[str, str]:
    """``{object_id: split}`` of one dataset version."""
    return dict(
        reg.db.execute(
            "SELECT object_id, split FROM dataset_objects WHERE dataset_id = ?", [dataset_id]
        ).fetchall()
    )


def dataset_background(ds: dict) -> dict[str, list[str]]:
    """``{split: [source ids]}`` of a dataset row's background images (none for versions built
    before background images were recorded)."""
    found = (ds.get("split_config") or {}).get("background_sources") or {}
    return {sp: list(found.get(sp) or []) for sp in SPLITS}
