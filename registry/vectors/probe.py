"""Opening embedded Chroma safely: probe it in a child process first, heal it from SQLite.

Damaged HNSW files (``chroma/<segment>/data_level0.bin`` and friends) do not raise in chromadb:
its native code reads them and the *process* dies (SIGSEGV), taking a web server down for every
user. So before this process opens a Chroma folder it has not seen cleanly closed, a child
process (this file, run as a script: stdlib + chromadb only) opens the collection, counts it,
fetches a few stored vectors and queries with them. A crash, an exception or a timeout there
is the finding; the caller stays alive.

* :func:`open_index_checked` probes (unless the files are exactly as the last passed probe
  saw them, see :func:`record_clean`), then opens. When the probe fails and the caller may repair, the
  folder is moved aside to ``chroma.corrupt-<UTC timestamp>`` (kept for inspection, never
  served) and a fresh one is opened; the caller rebuilds it from SQLite (the source of truth).
* A folder this user cannot write is not "corrupt": it is reported as such (folder, mode,
  owner and the ``chmod`` that fixes it) and left alone.

The fingerprint a passed probe saw (path, size, mtime of every file) is kept in
``<data>/index.clean.json``; any difference (a write, a crash, random bytes written into a file)
means the next open probes again. (Nothing is recorded at close: a file damaged while a process
had the index open must not be blessed by that process closing.) The probe's timeout is ``$AGL_INDEX_PROBE_TIMEOUT``
seconds (default 300).
"""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STAMP_FILE = "index.clean.json"
PROBE_SAMPLE = 5


def _timeout() -> float:
    try:
        return float(os.environ.get("AGL_INDEX_PROBE_TIMEOUT", "300"))
    except ValueError:
        return 300.0


def fingerprint(folder: Path) -> list[list[Any]]:
    """``[[relative path, size, mtime_ns], ...]`` of the files in the segment folders, sorted.

    Those are what chromadb's native code reads (and crashes on). ``chroma.sqlite3`` is left
    out: every open writes to it, even a read-only one, and damage there raises an ordinary
    exception, which :func:`open_index_checked` handles in-process.
    """
    out = []
    for p in sorted(folder.glob("*/**/*")):
        if p.is_file():
            st = p.stat()
            out.append([p.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns])
    return out


def _stamp_path(folder: Path) -> Path:
    return folder.parent / STAMP_FILE


def _read_stamp(folder: Path) -> dict:
    try:
        stamp = json.loads(_stamp_path(folder).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) and stamp.get("folder") == str(folder) else {}


def record_clean(folder: str | os.PathLike, collection: str) -> None:
    """Remembers that ``collection`` passed a probe with ``folder``'s files as they are now (the
    next open of that collection skips the probe while the files stay the same)."""
    folder = Path(folder)
    if not (folder / "chroma.sqlite3").exists():
        return
    files = fingerprint(folder)
    stamp = _read_stamp(folder)
    probed = set(stamp.get("collections", [])) if stamp.get("files") == files else set()
    probed.add(collection)
    try:
        tmp = _stamp_path(folder).with_suffix(".tmp")
        tmp.write_text(json.dumps({"folder": str(folder), "files": files, "collections": sorted(probed)}),
                       encoding="utf-8")
        os.replace(tmp, _stamp_path(folder))
    except OSError:
        pass  # the next open probes instead: slower, never wrong


def _is_clean(folder: Path, collection: str) -> bool:
    stamp = _read_stamp(folder)
    return collection in stamp.get("collections", []) and stamp.get("files") == fingerprint(folder)


def _forget_clean(folder: Path) -> None:
    try:
        _stamp_path(folder).unlink()
    except OSError:
        pass


def check_writable(folder: Path) -> None:
    """Raises ``RuntimeError`` naming the folder/file and its permission when it is read-only.

    Checks the folder, ``chroma.sqlite3`` and the segment folders (owner write bit and
    ``os.access``), so the message is about permissions, not a misleading storage error.
    """
    targets = [folder, folder / "chroma.sqlite3", *[p for p in folder.iterdir() if p.is_dir()]]
    for p in targets:
        if not p.exists():
            continue
        st = p.stat()
        if not (st.st_mode & stat.S_IWUSR) or not os.access(p, os.W_OK):
            kind = "folder" if p.is_dir() else "file"
            raise RuntimeError(
                f"the vector index {kind} {p} is read-only (mode {stat.filemode(st.st_mode)}, owner uid "
                f"{st.st_uid}, this process runs as uid {os.getuid()}): the index needs write permission; "
                f"fix with `chmod -R u+w {folder}` (or run as its owner)"
            )


def probe(folder: str | os.PathLike, collection: str, dim: int, *, timeout_s: float | None = None) -> str | None:
    """Opens the collection in a child process; returns None when healthy, else what broke.

    A missing collection is healthy (there is nothing to break yet).
    """
    timeout_s = _timeout() if timeout_s is None else timeout_s
    # -I: the script's folder (registry/vectors, with a base.py) must not shadow any module.
    cmd = [sys.executable, "-I", str(Path(__file__).resolve()), str(folder), collection, str(int(dim))]
    env = dict(os.environ, ANONYMIZED_TELEMETRY="False")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return f"opening it took longer than {timeout_s:.0f} s (hung); set AGL_INDEX_PROBE_TIMEOUT for a huge index"
    if proc.returncode == 0:
        return None
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        return f"the process reading it crashed ({name}): its HNSW files are damaged"
    for line in reversed(proc.stdout.strip().splitlines()):
        try:
            return str(json.loads(line)["error"])
        except (ValueError, KeyError, TypeError):
            continue
    tail = (proc.stderr or proc.stdout).strip().splitlines()
    return tail[-1] if tail else f"the probe exited with status {proc.returncode}"


def check_folder(folder: str | os.PathLike, collection: str, dim: int) -> str | None:
    """What is wrong with the Chroma folder (read-only, or the probe's finding), or None.

    A folder exactly as the last passed probe saw it is not probed again.
    """
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    try:
        check_writable(folder)
    except RuntimeError as exc:
        return str(exc)
    if _is_clean(folder, collection):
        return None
    error = probe(folder, collection, dim)
    if error is None:
        record_clean(folder, collection)
    return error


def move_aside(folder: Path) -> Path:
    """Renames ``folder`` to ``<folder>.corrupt-<UTC timestamp>``; returns the new path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = folder.with_name(f"{folder.name}.corrupt-{stamp}")
    folder.rename(target)
    _forget_clean(folder)
    return target


def open_index_checked(kind: str, data_dir: Path, version: str, dim: int, *, may_repair: bool,
                       hnsw: dict | None = None) -> tuple[Any, dict | None]:
    """:func:`registry.vectors.open_index`, with the Chroma folder probed first.

    Args:
        kind, data_dir, version, dim, hnsw: as for ``open_index``.
        may_repair: move a damaged folder aside and open a fresh one (the index writer);
            otherwise raise.

    Returns:
        ``(index, recovery)``: ``recovery`` is None, or ``{"error", "moved_to"}`` when the
        folder was moved aside and the new index is EMPTY (the caller rebuilds it).

    Raises:
        RuntimeError: a read-only folder; or a damaged one when ``may_repair`` is False.
    """
    from registry.vectors import chroma_dir, open_index
    from registry.vectors.chroma_index import REPAIR_HINT, collection_name_for

    folder = chroma_dir(data_dir).expanduser().resolve()
    if kind != "chroma" or not folder.is_dir() or not any(folder.iterdir()):
        return open_index(kind, data_dir, version, dim, hnsw=hnsw), None
    check_writable(folder)
    error = check_folder(folder, collection_name_for(version), dim)
    if error is None:
        try:
            return open_index(kind, data_dir, version, dim, hnsw=hnsw), None
        except ValueError:
            raise  # a dimension mismatch is a usage error, not damage
        except RuntimeError as exc:
            # chromadb often hides the first error behind a later one ("'RustBindingsAPI' object
            # has no attribute 'bindings'"); a fresh child process reports the real one.
            error = probe(folder, collection_name_for(version), dim) or str(exc)
    if not may_repair:
        raise RuntimeError(f"the vector index at {folder} is damaged: {error}; {REPAIR_HINT}")
    _forget_clean(folder)
    moved = move_aside(folder)
    return open_index(kind, data_dir, version, dim, hnsw=hnsw), {"error": error, "moved_to": str(moved)}


def _child(folder: str, collection: str, dim: int) -> int:  # pragma: no cover - runs in the probe process
    try:
        import chromadb
        import numpy as np
        from chromadb.config import Settings

        client = chromadb.PersistentClient(path=folder, settings=Settings(anonymized_telemetry=False))
        names = [getattr(c, "name", c) for c in client.list_collections()]
        if collection not in names:
            print(json.dumps({"ok": True, "count": 0, "collection": "absent"}), flush=True)
            return 0
        col = client.get_collection(collection)
        n = col.count()
        if n:
            got = col.get(limit=min(n, PROBE_SAMPLE), include=["embeddings"])
            emb = np.asarray(got["embeddings"], dtype=np.float32).reshape(len(got["ids"]), -1)
            if emb.shape[1] != dim:
                raise ValueError(f"expected {dim}-d vectors in {collection!r}, got {emb.shape[1]}-d")
            res = col.query(query_embeddings=emb, n_results=1, include=["distances"])
            for own, hits in zip(got["ids"], res["ids"], strict=True):
                if not hits:
                    raise RuntimeError(f"stored vector {own!r} is not found by a query for itself")
        print(json.dumps({"ok": True, "count": n}), flush=True)
        return 0
    except Exception as exc:  # noqa: BLE001 - the first real error is the finding
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1


if __name__ == "__main__":  # pragma: no cover - the probe process
    sys.exit(_child(sys.argv[1], sys.argv[2], int(sys.argv[3])))
