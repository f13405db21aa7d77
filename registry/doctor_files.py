"""The doctor's file checks: media files against their rows, and litter left by killed runs.

* :func:`check_media` (``doctor --check-media``; reads every media file once): each source's
  file exists and its sha256 equals the recorded ``content_hash`` (which also catches a changed
  size; the size found is reported).
* :func:`find_litter` (every doctor run): files under ``<data>/media`` that no ``sources`` or
  ``frames`` row points at (orphans), and ``.tmp-*`` files anywhere in the data folder outside
  the vector-index folders. Only files older than :data:`LITTER_AGE_S` count, so a running
  import's fresh copies and temporary files are never listed or removed.
* :func:`remove_litter` (``--repair``) deletes what :func:`find_litter` lists, again checking
  that each file is inside the data folder, is a regular file and is still old enough.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

LITTER_AGE_S = 60.0
SAMPLE = 10
_SKIP_DIRS = ("chroma", "hnsw")  # the index backends' own files are theirs to manage


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _resolve(data_dir: Path, file_path: str) -> Path:
    p = Path(file_path)
    return p if p.is_absolute() else data_dir / p


def check_media(conn: Any, data_dir: Path) -> dict[str, Any]:
    """Every source file exists and hashes to its ``content_hash``.

    Returns:
        ``{"ok", "checked", "missing", "changed", "missing_sample", "changed_sample"}``; a
        changed sample item names the source, the file, the expected and actual sha256 and the
        size found.
    """
    missing: list[dict] = []
    changed: list[dict] = []
    n_missing = n_changed = checked = 0
    rows = conn.execute(
        "SELECT source_id, file_path, content_hash FROM sources WHERE file_path IS NOT NULL ORDER BY rowid"
    ).fetchall()
    for source_id, file_path, digest in rows:
        checked += 1
        path = _resolve(data_dir, file_path)
        if not path.is_file():
            n_missing += 1
            if len(missing) < SAMPLE:
                missing.append({"source_id": source_id, "path": str(path)})
            continue
        if digest is None:
            continue
        actual = _sha256(path)
        if actual != digest:
            n_changed += 1
            if len(changed) < SAMPLE:
                changed.append({"source_id": source_id, "path": str(path), "expected_sha256": digest,
                                "actual_sha256": actual, "size": path.stat().st_size})
    out = {"ok": not n_missing and not n_changed, "checked": checked, "missing": n_missing,
           "changed": n_changed, "missing_sample": missing, "changed_sample": changed}
    if not out["ok"]:
        out["fix"] = ("restore the listed files from the originals (the registry's boxes and masks refer to "
                      "those exact pixels), or delete their sources")
    return out


def _referenced(conn: Any, data_dir: Path) -> set[str]:
    refs: set[str] = set()
    root = data_dir.resolve()
    for table in ("sources", "frames"):
        for (fp,) in conn.execute(f"SELECT file_path FROM {table} WHERE file_path IS NOT NULL").fetchall():
            p = Path(fp)
            if p.is_absolute():
                try:
                    p = p.resolve().relative_to(root)
                except ValueError:
                    continue  # outside the data folder: never litter
            refs.add(p.as_posix())
    return refs


def find_litter(conn: Any, data_dir: Path, *, min_age_s: float = LITTER_AGE_S,
                now: float | None = None) -> dict[str, list[Path]]:
    """``{"orphans": [...], "temp": [...]}``: litter files (absolute paths) older than ``min_age_s``."""
    data_dir = Path(data_dir).resolve()
    now = time.time() if now is None else now
    refs = _referenced(conn, data_dir)
    orphans: list[Path] = []
    temp: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(data_dir):
        here = Path(dirpath)
        if here == data_dir:
            dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and ".corrupt-" not in d]
        for name in filenames:
            p = here / name
            try:
                st = p.lstat()
            except OSError:
                continue
            if now - st.st_mtime < min_age_s:
                continue
            rel = p.relative_to(data_dir).as_posix()
            if name.startswith(".tmp-"):
                temp.append(p)
            elif rel.startswith("media/") and rel not in refs:
                orphans.append(p)
    return {"orphans": sorted(orphans), "temp": sorted(temp)}


def litter_report(litter: dict[str, list[Path]], data_dir: Path) -> dict[str, Any]:
    """The doctor's ``litter`` check from :func:`find_litter`'s result."""
    rel = {k: [p.relative_to(Path(data_dir).resolve()).as_posix() for p in v] for k, v in litter.items()}
    out = {"ok": not rel["orphans"] and not rel["temp"], "orphan_media": len(rel["orphans"]),
           "temp_files": len(rel["temp"]), "orphan_sample": rel["orphans"][:SAMPLE], "temp_sample": rel["temp"][:SAMPLE]}
    if not out["ok"]:
        out["fix"] = "`doctor --repair` removes them (files older than a minute only)"
    return out


def remove_litter(conn: Any, data_dir: Path, *, min_age_s: float = LITTER_AGE_S) -> int:
    """Deletes the litter :func:`find_litter` finds now; returns how many files were removed."""
    data_dir = Path(data_dir).resolve()
    litter = find_litter(conn, data_dir, min_age_s=min_age_s)
    removed = 0
    for p in litter["orphans"] + litter["temp"]:
        try:
            (p.parent.resolve() / p.name).relative_to(data_dir)  # inside the data folder, links resolved
            if not (p.is_symlink() or p.is_file()):
                continue
            p.unlink()  # a symlink: the link only, never its target
            removed += 1
        except (OSError, ValueError):
            continue
    return removed
