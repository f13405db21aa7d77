"""Integrity report (and repair) of a data folder: SQLite, the outbox, the vector index, masks.

Checks (each ``{"ok": bool, ...details}``):

* ``integrity``: ``PRAGMA integrity_check``.
* ``foreign_keys``: ``PRAGMA foreign_key_check`` (rows pointing at nothing).
* ``schema``: the schema version is the current one.
* ``outbox``: no pending rows (backlog) and no failed ones (with their last error).
* ``index``: the index opens (a Chroma folder is first probed in a child process, so damaged
  HNSW files are a finding, not a crash of the doctor), holds exactly the objects that have an
  embedding of the registry's version (missing and extra ids, sampled), and a random sample of
  :data:`SELF_QUERY_SAMPLE` stored vectors is read back (``fetch``, where the backend can) and
  queried: each must find its own id at rank 1 (``self_query``). Ids that are listed but whose
  vectors cannot be read or found are what concurrent writers used to leave behind.
* ``matrix``: the exact matrix (:mod:`registry.vectors.matrix`) holds exactly the objects that
  have an embedding, and a random sample of its rows carries its object's rowid and vector
  (``recovered`` says when it was rebuilt at open because its files were missing or torn).
  Skipped in processes that are not the index writer.
* ``masks``: every stored mask is a well-formed RLE of its source image's size.
* ``tracks``: every track's ``object_count`` matches its members.
* ``litter``: orphan media files (no ``sources``/``frames`` row) and ``.tmp-*`` files older than
  a minute (:mod:`registry.doctor_files`).
* ``media`` (only with ``check_media=True``, CLI ``--check-media``: it reads every file): each
  source's file exists and its sha256 equals the recorded content hash.

``repair`` resets failed outbox rows, relays the outbox, moves a damaged Chroma folder aside
(``chroma.corrupt-<time>``) and rebuilds the index from SQLite when it is unreadable or
disagrees, recounts tracks, removes litter, and checks again. Only the index-writer process
(:mod:`registry.index_lock`) touches the index; elsewhere the repair says which process to stop.
Broken masks, changed media and SQLite corruption cannot be repaired here: they are reported
with what to do.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from registry import doctor_files, outbox
from registry import masks as rle_ops
from registry.db import Connection
from registry.index_handle import IndexHandle
from registry.schema import SCHEMA_VERSION, current_version

log = logging.getLogger(__name__)
SAMPLE = 10
SELF_QUERY_SAMPLE = 200


def _check_sqlite(conn: Connection) -> dict[str, dict[str, Any]]:
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


def _check_outbox(conn: Connection) -> dict[str, Any]:
    pending = outbox.pending_count(conn)
    failed = outbox.failed_count(conn)
    errors = conn.query(
        "SELECT object_id, operation, retry_count, error_message FROM embedding_outbox "
        "WHERE status = 'failed' ORDER BY id DESC LIMIT ?",
        (SAMPLE,),
    )
    return {"ok": pending == 0 and failed == 0, "pending": pending, "failed": failed, "failed_sample": errors}


def _probe_error(vectors: IndexHandle) -> str | None:
    """A Chroma folder not yet opened by ``vectors`` is probed in a child process first."""
    if vectors.spec != "chroma" or vectors.is_open:
        return None
    from registry.vectors import chroma_dir
    from registry.vectors.chroma_index import collection_name_for
    from registry.vectors.probe import check_folder

    return check_folder(chroma_dir(vectors.data_dir), collection_name_for(vectors.embedding_version), vectors.embedding_dim)


def _self_query(conn: Connection, vectors: IndexHandle, index: Any, sample: int) -> dict[str, Any]:
    """Reads back and queries a random sample of stored vectors (see the module docstring)."""
    rows = conn.execute(
        "SELECT e.object_id, e.vector, e.dim FROM embeddings e JOIN objects o ON o.object_id = e.object_id "
        "WHERE e.version_id = ? ORDER BY random() LIMIT ?",
        (vectors.embedding_version, int(sample)),
    ).fetchall()
    if not rows:
        return {"ok": True, "checked": 0}
    ids = [r[0] for r in rows]
    try:
        fetched: dict[str, np.ndarray] | None = index.fetch(ids)
    except NotImplementedError:
        fetched = None
    except Exception as exc:  # noqa: BLE001 - reading back is the finding
        return {"ok": False, "checked": len(ids), "error": f"fetching vectors: {type(exc).__name__}: {exc}"}
    not_fetched: list[str] = []
    wrong: list[str] = []
    not_found: list[dict[str, Any]] = []
    for oid, blob, dim in rows:
        vec = outbox.vector_from_blob(blob, dim)
        if fetched is not None:
            got = fetched.get(oid)
            if got is None or got.shape != vec.shape:
                not_fetched.append(oid)
            else:
                cos = float(got @ vec) / (float(np.linalg.norm(got) * np.linalg.norm(vec)) or 1.0)
                if cos < 0.999:
                    wrong.append(oid)
        try:
            hits = list(index.query(vec, 10))
        except Exception as exc:  # noqa: BLE001 - a failing query is the finding
            not_found.append({"object_id": oid, "error": f"{type(exc).__name__}: {exc}"})
            continue
        # rank 1, or tied with rank 1 (identical vectors of other objects)
        top = hits[0][1] if hits else None
        if not any(h == oid and s >= top - 1e-6 for h, s in hits):
            not_found.append({"object_id": oid, "top": hits[0][0] if hits else None})
    out: dict[str, Any] = {
        "ok": not not_fetched and not wrong and not not_found,
        "checked": len(ids),
        "not_found": len(not_found),
        "not_fetched": len(not_fetched) if fetched is not None else None,
        "wrong_vector": len(wrong) if fetched is not None else None,
    }
    if not out["ok"]:
        out["not_found_sample"] = not_found[:SAMPLE]
        out["not_fetched_sample"] = not_fetched[:SAMPLE]
        out["wrong_vector_sample"] = wrong[:SAMPLE]
    return out


def _check_index(conn: Connection, vectors: IndexHandle, *, sample: int = SELF_QUERY_SAMPLE) -> dict[str, Any]:
    expected = {
        r[0]
        for r in conn.execute(
            "SELECT e.object_id FROM embeddings e JOIN objects o ON o.object_id = e.object_id "
            "WHERE e.version_id = ?",
            (vectors.embedding_version,),
        ).fetchall()
    }
    error = _probe_error(vectors)
    if error is not None:
        return {"ok": False, "error": error, "embeddings": len(expected), "indexed": None}
    heal, vectors.repair_on_open = vectors.repair_on_open, False  # a check changes nothing
    try:
        index = vectors.index
        check = getattr(index, "check", None)
        if callable(check):
            check()
        present = set(index.ids())
    except Exception as exc:  # noqa: BLE001 - any failure to read the index is the finding
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "embeddings": len(expected), "indexed": None}
    finally:
        vectors.repair_on_open = heal
    missing = expected - present
    extra = present - expected
    self_query = _self_query(conn, vectors, index, sample)
    return {
        "ok": not missing and not extra and self_query["ok"],
        "embeddings": len(expected),
        "indexed": len(present),
        "missing": len(missing),
        "extra": len(extra),
        "missing_sample": sorted(missing)[:SAMPLE],
        "extra_sample": sorted(extra)[:SAMPLE],
        "self_query": self_query,
    }


def _check_matrix(conn: Connection, vectors: IndexHandle, *, sample: int = SELF_QUERY_SAMPLE) -> dict[str, Any]:
    try:
        matrix = vectors.matrix
    except Exception as exc:  # noqa: BLE001 - an unusable matrix is the finding
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    if matrix is None:
        return {"ok": True, "skipped": "not the index writer"}
    expected = dict(conn.execute(
        "SELECT e.object_id, o.rowid FROM embeddings e JOIN objects o ON o.object_id = e.object_id "
        "WHERE e.version_id = ?", (vectors.embedding_version,)).fetchall())
    present = matrix.ids_at(np.arange(matrix.rows))
    missing = set(expected) - set(present)
    extra = set(present) - set(expected)
    problem = matrix.check()
    wrong: list[str] = []
    rng = np.random.default_rng()
    for row in rng.choice(matrix.rows, size=min(int(sample), matrix.rows), replace=False).tolist():
        oid = present[row]
        if oid not in expected:
            continue
        blob = conn.execute("SELECT vector, dim FROM embeddings WHERE object_id = ? AND version_id = ?",
                            (oid, vectors.embedding_version)).fetchone()
        vec = outbox.vector_from_blob(blob[0], blob[1])
        cos = float(matrix.vectors[row] @ vec) / (float(np.linalg.norm(vec)) or 1.0)
        if int(matrix.rowids[row]) != expected[oid] or cos < 0.9999:
            wrong.append(oid)
    out: dict[str, Any] = {
        "ok": not missing and not extra and not wrong and problem is None,
        "rows": matrix.rows, "embeddings": len(expected), "missing": len(missing), "extra": len(extra),
        "wrong_rows": len(wrong), "missing_sample": sorted(missing)[:SAMPLE],
        "extra_sample": sorted(extra)[:SAMPLE], "wrong_sample": wrong[:SAMPLE],
    }
    if problem:
        out["error"] = problem
    if vectors.matrix_recovery:
        out["recovered"] = vectors.matrix_recovery
    return out


def _check_masks(conn: Connection, batch: int = 5000) -> dict[str, Any]:
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


def _check_tracks(conn: Connection) -> dict[str, Any]:
    wrong = conn.query(
        "SELECT t.track_id, t.object_count, (SELECT count(*) FROM track_objects x WHERE x.track_id = t.track_id) AS n "
        "FROM tracks t WHERE t.object_count <> (SELECT count(*) FROM track_objects x WHERE x.track_id = t.track_id)"
    )
    return {"ok": not wrong, "mismatched": len(wrong), "sample": wrong[:SAMPLE]}


def check(conn: Connection, vectors: IndexHandle, *, check_media: bool = False) -> dict[str, Any]:
    checks = _check_sqlite(conn)
    checks["outbox"] = _check_outbox(conn)
    checks["index"] = _check_index(conn, vectors)
    checks["matrix"] = _check_matrix(conn, vectors)
    checks["masks"] = _check_masks(conn)
    checks["tracks"] = _check_tracks(conn)
    with conn.lock:
        checks["litter"] = doctor_files.litter_report(
            doctor_files.find_litter(conn.conn, vectors.data_dir), vectors.data_dir)
        if check_media:
            checks["media"] = doctor_files.check_media(conn.conn, vectors.data_dir)
    return {"ok": all(c["ok"] for c in checks.values()), "checks": checks}


def _repair_index(conn: Connection, vectors: IndexHandle, checks: dict[str, Any], done: list[str]) -> None:
    if not vectors.is_writer:
        from registry import index_lock

        done.append(index_lock.not_writer_message(vectors.data_dir, "repair the vector index"))
        return
    n = outbox.reset_failed(conn)
    if n:
        done.append(f"reset {n} failed outbox rows to pending")
    if not checks["index"]["ok"] and checks["index"].get("error"):
        # Unreadable index (deleted, damaged or read-only folder): open it afresh. A damaged
        # Chroma folder is moved aside and rebuilt by the registry while opening.
        try:
            vectors.reopen()
        except Exception as exc:  # noqa: BLE001 - e.g. read-only: reported, nothing else to do
            done.append(f"could not reopen the vector index: {exc}")
            return
        rec = vectors.recovery
        if rec:
            done.append(f"vector index was damaged ({rec['error']}); moved it to {rec['moved_to']} and "
                        f"rebuilt it from SQLite ({rec.get('rebuilt', 0)} vectors)")
        else:
            done.append("reopened the vector index")
    try:
        res = vectors.sync_outbox()
        if res["synced"]:
            done.append(f"relayed {res['synced']} outbox rows")
    except Exception as exc:  # noqa: BLE001 - the rebuild below is the fallback
        done.append(f"outbox relay failed ({exc}); rebuilding")
    index_now = _check_index(conn, vectors)
    if not index_now["ok"]:
        n = vectors.rebuild()
        done.append(f"rebuilt the vector index from SQLite ({n} vectors)")
    elif not _check_matrix(conn, vectors)["ok"]:
        n = vectors.rebuild_matrix()
        done.append(f"rebuilt the exact matrix from SQLite ({n} vectors)")


def repair_registry(conn: Connection, vectors: IndexHandle, report: dict[str, Any]) -> list[str]:
    """Fixes what can be fixed from SQLite; returns what was done."""
    done: list[str] = []
    checks = report["checks"]
    _repair_index(conn, vectors, checks, done)
    if not checks["tracks"]["ok"]:
        with conn.transaction() as tx:
            tx.execute(
                "UPDATE tracks SET object_count = (SELECT count(*) FROM track_objects x WHERE x.track_id = tracks.track_id)"
            )
        done.append("recounted track objects")
    if not checks["litter"]["ok"]:
        with conn.lock:
            n = doctor_files.remove_litter(conn.conn, vectors.data_dir)
        done.append(f"removed {n} litter files (orphan media, temporary files)")
    return done


def run_doctor(conn: Connection, vectors: IndexHandle, *, repair: bool = False, check_media: bool = False) -> dict[str, Any]:
    """The report ``{"ok", "checks"}``; with ``repair`` also ``"repaired"`` (actions) and the
    checks as they stand after the repair. ``check_media`` adds the (slow) media hash check."""
    report = check(conn, vectors, check_media=check_media)
    if repair and not report["ok"]:
        actions = repair_registry(conn, vectors, report)
        report = check(conn, vectors, check_media=check_media)
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
        details = {k: v for k, v in c.items()
                   if k not in ("ok", "fix") and not k.endswith("sample") and v not in (None, [], {})}
        if isinstance(details.get("self_query"), dict):
            details["self_query"] = {k: v for k, v in details["self_query"].items()
                                     if not k.endswith("sample") and v is not None}
        lines.append(f"{'ok  ' if c['ok'] else 'FAIL'} {name:<13} " + ", ".join(f"{k}={v}" for k, v in details.items()))
        if not c["ok"]:
            for key in ("missing_sample", "extra_sample", "failed_sample", "broken_sample", "sample",
                        "orphan_sample", "temp_sample", "changed_sample"):
                if c.get(key):
                    lines.append(f"       {key}: {c[key]}")
            sq = c.get("self_query") or {}
            for key in ("not_found_sample", "not_fetched_sample", "wrong_vector_sample"):
                if sq.get(key):
                    lines.append(f"       self_query {key}: {sq[key]}")
            if c.get("fix"):
                lines.append(f"       fix: {c['fix']}")
    for action in report.get("repaired", []):
        lines.append(f"repaired: {action}")
    if report["ok"]:
        lines.append("consistent")
    elif "repaired" in report:
        lines.append("NOT consistent after the repair: see the FAIL lines (and their fix) above")
    else:
        lines.append("NOT consistent (run `doctor --repair`)")
    return "\n".join(lines)
