"""Integrity report (and repair) of a data folder: SQLite, the outbox, the vector index, masks.

Checks (each ``{"ok": bool, ...details}``):

* ``integrity``: ``PRAGMA integrity_check``.
* ``foreign_keys``: ``PRAGMA foreign_key_check`` (rows pointing at nothing).
* ``schema``: the schema version is the current one.
* ``outbox``: no pending rows (backlog) and no failed ones (with their last error).
* ``index``: the index opens, and holds exactly the objects that have an embedding of the
  registry's version (missing and extra ids, sampled).
* ``masks``: every stored mask is a well-formed RLE of its source image's size.
* ``tracks``: every track's ``object_count`` matches its members.

``repair`` resets failed outbox rows, relays the outbox, rebuilds the index from SQLite when it
is unreadable or disagrees, recounts tracks, and checks again. Broken masks and SQLite
corruption cannot be repaired here: they are reported with what to do.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from registry import masks as rle_ops
from registry import outbox
from registry.schema import SCHEMA_VERSION, current_version

if TYPE_CHECKING:
    from registry.facade import Registry

log = logging.getLogger(__name__)
SAMPLE = 10


def _check_sqlite(reg: Registry) -> dict[str, dict[str, Any]]:
    conn = reg.connection
    rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
    fk = conn.execute("PRAGMA foreign_key_check").fetchall()
    with conn.lock:
        version = current_version(conn.conn)
    return {
        "integrity": {"ok": rows == ["ok"], "messages": rows[:SAMPLE]},
        "foreign_keys": {
            "ok": not fk,
            "violations": len(fk),
            "sample": [{"table": r[0], "rowid": r[1], "parent": r[2]} for r in fk[:SAMPLE]],
        },
        "schema": {"ok": version == SCHEMA_VERSION, "version": version, "expected": SCHEMA_VERSION},
    }


def _check_outbox(reg: Registry) -> dict[str, Any]:
    conn = reg.connection
    pending = outbox.pending_count(conn)
    failed = outbox.failed_count(conn)
    errors = conn.query(
        "SELECT object_id, operation, retry_count, error_message FROM embedding_outbox "
        "WHERE status = 'failed' ORDER BY id DESC LIMIT ?",
        (SAMPLE,),
    )
    return {"ok": pending == 0 and failed == 0, "pending": pending, "failed": failed, "failed_sample": errors}


def _check_index(reg: Registry) -> dict[str, Any]:
    conn = reg.connection
    expected = {
        r[0]
        for r in conn.execute(
            "SELECT e.object_id FROM embeddings e JOIN objects o ON o.object_id = e.object_id "
            "WHERE e.version_id = ?",
            (reg.embedding_version,),
        ).fetchall()
    }
    try:
        index = reg.index
        check = getattr(index, "check", None)
        if callable(check):
            check()
        present = set(index.ids())
    except Exception as exc:  # noqa: BLE001 - any failure to read the index is the finding
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "embeddings": len(expected), "indexed": None}
    missing = expected - present
    extra = present - expected
    return {
        "ok": not missing and not extra,
        "embeddings": len(expected),
        "indexed": len(present),
        "missing": len(missing),
        "extra": len(extra),
        "missing_sample": sorted(missing)[:SAMPLE],
        "extra_sample": sorted(extra)[:SAMPLE],
    }


def _check_masks(reg: Registry, batch: int = 5000) -> dict[str, Any]:
    conn = reg.connection
    bad: list[dict[str, str]] = []
    n_bad = checked = 0
    last = 0
    while True:
        rows = conn.query(
            "SELECT o.rowid AS rid, o.object_id, o.mask_counts, o.mask_h, o.mask_w, s.width, s.height "
            "FROM objects o JOIN sources s ON s.source_id = o.source_id "
            "WHERE o.mask_counts IS NOT NULL AND o.rowid > ? ORDER BY o.rowid LIMIT ?",
            (last, batch),
        )
        if not rows:
            break
        last = rows[-1]["rid"]
        for r in rows:
            checked += 1
            try:
                if r["width"] is not None and (r["mask_h"], r["mask_w"]) != (r["height"], r["width"]):
                    raise ValueError(
                        f"expected mask size {r['height']}x{r['width']}, got {r['mask_h']}x{r['mask_w']}"
                    )
                rle_ops.validate({"size": [r["mask_h"], r["mask_w"]], "counts": r["mask_counts"]})
            except (ValueError, TypeError) as exc:
                n_bad += 1
                if len(bad) < SAMPLE:
                    bad.append({"object_id": r["object_id"], "error": str(exc)})
    return {"ok": n_bad == 0, "checked": checked, "broken": n_bad, "broken_sample": bad}


def _check_tracks(reg: Registry) -> dict[str, Any]:
    wrong = reg.connection.query(
        "SELECT t.track_id, t.object_count, (SELECT count(*) FROM track_objects x WHERE x.track_id = t.track_id) AS n "
        "FROM tracks t WHERE t.object_count <> (SELECT count(*) FROM track_objects x WHERE x.track_id = t.track_id)"
    )
    return {"ok": not wrong, "mismatched": len(wrong), "sample": wrong[:SAMPLE]}


def check(reg: Registry) -> dict[str, Any]:
    checks = _check_sqlite(reg)
    checks["outbox"] = _check_outbox(reg)
    checks["index"] = _check_index(reg)
    checks["masks"] = _check_masks(reg)
    checks["tracks"] = _check_tracks(reg)
    return {"ok": all(c["ok"] for c in checks.values()), "checks": checks}


def repair_registry(reg: Registry, report: dict[str, Any]) -> list[str]:
    """Fixes what can be fixed from SQLite; returns what was done."""
    done: list[str] = []
    checks = report["checks"]
    n = outbox.reset_failed(reg.connection)
    if n:
        done.append(f"reset {n} failed outbox rows to pending")
    if not checks["index"]["ok"] and checks["index"].get("error"):
        # Unreadable index (deleted or corrupt folder): open it afresh before rebuilding.
        reg.reopen_index()
        done.append("reopened the vector index")
    try:
        res = reg.sync_outbox()
        if res["synced"]:
            done.append(f"relayed {res['synced']} outbox rows")
    except Exception as exc:  # noqa: BLE001 - the rebuild below is the fallback
        done.append(f"outbox relay failed ({exc}); rebuilding")
    index_now = _check_index(reg)
    if not index_now["ok"]:
        n = reg.rebuild_index()
        done.append(f"rebuilt the vector index from SQLite ({n} vectors)")
    if not checks["tracks"]["ok"]:
        with reg.transaction() as tx:
            tx.execute(
                "UPDATE tracks SET object_count = (SELECT count(*) FROM track_objects x WHERE x.track_id = tracks.track_id)"
            )
        done.append("recounted track objects")
    return done


def run_doctor(reg: Registry, *, repair: bool = False) -> dict[str, Any]:
    """The report ``{"ok", "checks"}``; with ``repair`` also ``"repaired"`` (actions) and the
    checks as they stand after the repair."""
    report = check(reg)
    if repair and not report["ok"]:
        actions = repair_registry(reg, report)
        report = check(reg)
        report["repaired"] = actions
    elif repair:
        report["repaired"] = []
    if not report["checks"]["masks"]["ok"]:
        report["checks"]["masks"]["fix"] = "re-segment or delete the listed objects (their masks cannot be decoded)"
    if not report["checks"]["integrity"]["ok"]:
        report["checks"]["integrity"]["fix"] = "restore registry.db from a backup, or `sqlite3 registry.db .recover`"
    return report


def format_report(report: dict[str, Any]) -> str:
    """Human-readable text of a doctor report."""
    lines = []
    for name, c in report["checks"].items():
        details = {k: v for k, v in c.items() if k != "ok" and not k.endswith("sample") and v not in (None, [], {})}
        lines.append(f"{'ok  ' if c['ok'] else 'FAIL'} {name:<13} " + ", ".join(f"{k}={v}" for k, v in details.items()))
        if not c["ok"]:
            for key in ("missing_sample", "extra_sample", "failed_sample", "broken_sample", "sample"):
                if c.get(key):
                    lines.append(f"       {key}: {c[key]}")
    for action in report.get("repaired", []):
        lines.append(f"repaired: {action}")
    lines.append("consistent" if report["ok"] else "NOT consistent (run `doctor --repair`)")
    return "\n".join(lines)
