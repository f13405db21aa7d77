"""Domain packs (few-shot classification support sets) on disk, and classification results on objects.

A domain is a folder ``<data>/domains/<name>/`` holding two files:

* ``prototypes.npz`` (numpy, no pickles): ``prototypes`` (C, D) float32 unit rows,
  ``support`` (N, D) float32 unit rows, ``labels`` (N,) int64 class ids into ``meta["classes"]``,
  and ``centre`` (D,) float32 (all zeros with ``meta["preprocessing"]["centre"] == False``);
* ``prototypes.meta.json``: ``schema_version``, ``domain``, ``classes``, ``counts`` (per class),
  ``embedding_model`` (the registry's embedding version, e.g. "dinov2-base"), ``embedding_dim``,
  ``preprocessing``, ``tau1``, ``tau2``, ``k``, ``knn_weight``, ``confidence_scale``,
  ``calibration``, ``created_at``, ``version`` (a content hash) and ``source``.

Packs are written into a temporary sibling folder and renamed into place, so a reader never
sees half a pack. Names are validated (letters, digits, ``. _ -``; no path separators or
``..``). Nothing here imports torch or the pipeline: the arrays are plain numpy.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from registry.db import Connection
from registry.validation import finite_unit

DOMAINS_DIR = "domains"
NPZ = "prototypes.npz"
META = "prototypes.meta.json"
SCHEMA_VERSION = 1
ARRAYS = ("prototypes", "support", "labels", "centre")
META_KEYS = ("schema_version", "domain", "classes", "counts", "embedding_model", "embedding_dim",
             "preprocessing", "tau1", "tau2", "created_at", "version")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str) -> str:
    """The domain name, validated: 1-64 of letters, digits, ``.``, ``_``, ``-``, starting with a
    letter or digit (so never a path, ``..`` or a hidden folder)."""
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise ValueError(f"domain name: expected 1-64 letters, digits, '.', '_' or '-' (starting with a letter or "
                         f"digit, no '..'), got {name!r}; e.g. --name birds-v1")
    return name


def domains_root(data_dir: str | os.PathLike) -> Path:
    """``<data>/domains``."""
    return Path(data_dir) / DOMAINS_DIR


def domain_dir(data_dir: str | os.PathLike, name: str) -> Path:
    """``<data>/domains/<name>`` (the name validated)."""
    return domains_root(data_dir) / check_name(name)


def content_version(arrays: dict[str, np.ndarray], meta: dict) -> str:
    """A 12-hex content hash of the arrays, classes and thresholds: the pack's version."""
    h = hashlib.sha256()
    for key in ARRAYS:
        a = np.ascontiguousarray(arrays[key])
        h.update(key.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    h.update(json.dumps([meta["classes"], meta["tau1"], meta["tau2"], meta.get("k"), meta.get("knn_weight")],
                        sort_keys=True).encode())
    return h.hexdigest()[:12]


def save_pack(data_dir: str | os.PathLike, name: str, arrays: dict[str, np.ndarray], meta: dict, *,
              overwrite: bool = False) -> Path:
    """Writes a pack atomically (temporary folder, then rename); returns its folder.

    ``meta`` gets ``schema_version``, ``domain`` and (if missing) ``version`` filled in.

    Raises:
        ValueError: bad name, inconsistent arrays/meta, or the domain exists and not ``overwrite``.
    """
    final = domain_dir(data_dir, name)
    meta = {**meta, "schema_version": SCHEMA_VERSION, "domain": name}
    arrays = {k: np.asarray(arrays[k]) for k in ARRAYS}
    meta.setdefault("version", content_version(arrays, meta))
    check_pack(arrays, meta, where=str(final))
    if final.exists() and not overwrite:
        raise ValueError(f"domain {name!r} already exists in {final.parent}; pick another --name, delete it "
                         f"(domains delete {name}) or rebuild with --overwrite")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        np.savez(tmp / NPZ, **arrays)
        (tmp / META).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        old = None
        if final.exists():
            old = final.parent / f".tmp-old-{name}-{uuid.uuid4().hex[:8]}"
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def check_pack(arrays: dict[str, np.ndarray], meta: dict, *, where: str) -> None:
    """Raises ValueError naming ``where`` and the field when arrays and meta disagree."""
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"{where}/{META}: missing field(s) {missing}; rebuild the domain (domains build)")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise ValueError(f"{where}/{META}: expected schema_version {SCHEMA_VERSION}, got {meta['schema_version']!r}; "
                         "rebuild the domain with this version of the app")
    classes, dim = meta["classes"], meta["embedding_dim"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"{where}/{META}: expected 'classes' as a non-empty list of names, got {classes!r}")
    if not isinstance(dim, int) or dim <= 0:
        raise ValueError(f"{where}/{META}: expected a positive integer 'embedding_dim', got {dim!r}")
    p, s, y, c = (arrays[k] for k in ARRAYS)
    shapes = {"prototypes": (p.shape, (len(classes), dim)), "centre": (c.shape, (dim,))}
    for key, (got, want) in shapes.items():
        if tuple(got) != want:
            raise ValueError(f"{where}/{NPZ}: expected '{key}' of shape {want} (classes x embedding_dim in the meta), "
                             f"got {tuple(got)}")
    if s.ndim != 2 or s.shape[1] != dim or y.shape != (len(s),):
        raise ValueError(f"{where}/{NPZ}: expected 'support' (N, {dim}) and 'labels' (N,), got {s.shape} and {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        raise ValueError(f"{where}/{NPZ}: expected labels in [0, {len(classes)}), got [{y.min()}, {y.max()}]")
    for key in ("prototypes", "support", "centre"):
        if not np.isfinite(arrays[key]).all():
            raise ValueError(f"{where}/{NPZ}: '{key}' holds NaN or inf; rebuild the domain")


def load_pack_dir(folder: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """``(arrays, meta)`` of the pack in ``folder``; ValueError naming the file when malformed."""
    folder = Path(folder)
    npz, meta_path = folder / NPZ, folder / META
    for f in (npz, meta_path):
        if not f.is_file():
            raise ValueError(f"{f}: missing; a domain pack is a folder with {NPZ} and {META}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{meta_path}: not valid JSON ({exc}); re-export or rebuild the domain") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
    try:
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in ARRAYS}
    except KeyError as exc:
        raise ValueError(f"{npz}: missing array {exc}; expected {list(ARRAYS)}") from exc
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{npz}: not a readable numpy .npz ({exc}); re-export or rebuild the domain") from exc
    check_pack(arrays, meta, where=str(folder))
    return arrays, meta


def load_pack(data_dir: str | os.PathLike, name: str, *, embedding_version: str | None = None,
              embedding_dim: int | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """The pack ``name`` of a data folder; with ``embedding_version``/``embedding_dim`` given
    (the registry's), a pack built on another embedding model is refused (see :func:`check_compatible`)."""
    folder = domain_dir(data_dir, name)
    if not folder.is_dir():
        have = [d["domain"] for d in list_domains(data_dir)]
        raise ValueError(f"unknown domain {name!r}: no folder {folder}; domains here: {have or 'none'} "
                         "(build one with `domains build` or `domains import PATH`)")
    arrays, meta = load_pack_dir(folder)
    if embedding_version is not None or embedding_dim is not None:
        check_compatible(meta, embedding_version, embedding_dim)
    return arrays, meta


def check_compatible(meta: dict, embedding_version: str | None, embedding_dim: int | None) -> None:
    """ValueError naming both models when a pack's embedding model or dimension differs from the registry's."""
    model, dim = meta.get("embedding_model"), meta.get("embedding_dim")
    if (embedding_version is not None and model != embedding_version) or (embedding_dim is not None
                                                                          and dim != int(embedding_dim)):
        raise ValueError(f"domain {meta.get('domain')!r} was built on embeddings of {model!r} ({dim}-d), but this "
                         f"registry stores {embedding_version!r} ({embedding_dim}-d) embeddings; scores across models "
                         "mean nothing: rebuild the domain from this registry (domains build) or open the registry "
                         "with the pack's embedding model")


def list_domains(data_dir: str | os.PathLike) -> list[dict]:
    """Summaries of the packs of a data folder, by name: ``domain``, ``classes``, ``counts``,
    ``embedding_model``, ``embedding_dim``, ``tau1``, ``tau2``, ``created_at``, ``version``; a
    malformed pack is listed with ``error`` instead."""
    root = domains_root(data_dir)
    out = []
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name.startswith(".") or not NAME_RE.match(d.name):
            continue
        try:
            _, meta = load_pack_dir(d)
        except ValueError as exc:
            out.append({"domain": d.name, "error": str(exc)})
            continue
        out.append({k: meta.get(k) for k in ("domain", "classes", "counts", "embedding_model", "embedding_dim",
                                              "tau1", "tau2", "created_at", "version")})
    return out


def set_thresholds(data_dir: str | os.PathLike, name: str, *, tau1: float | None = None,
                   tau2: float | None = None) -> dict:
    """Overrides a pack's ``tau1``/``tau2`` (None keeps one); the pack gets a new ``version``
    (thresholds are part of it), so ``classify`` re-scores objects. Returns the new meta."""
    arrays, meta = load_pack(data_dir, name)
    for key, value in (("tau1", tau1), ("tau2", tau2)):
        if value is None:
            continue
        v = float(value)
        if not -1.0 <= v <= 2.0:
            raise ValueError(f"{key}: expected a score threshold in [-1, 2], got {value!r}")
        meta[key] = v
    meta.pop("version", None)
    if tau1 is not None or tau2 is not None:
        meta["thresholds"] = "overridden"  # the calibration report keeps the calibrated point
    save_pack(data_dir, name, arrays, meta, overwrite=True)
    return load_pack(data_dir, name)[1]


def delete_domain(data_dir: str | os.PathLike, name: str) -> None:
    """Removes ``<data>/domains/<name>``; ValueError when there is no such domain."""
    folder = domain_dir(data_dir, name)
    if not folder.is_dir():
        raise ValueError(f"unknown domain {name!r}: nothing to delete in {folder.parent}")
    trash = folder.parent / f".tmp-del-{name}-{uuid.uuid4().hex[:8]}"
    folder.rename(trash)  # gone at once for readers, then removed
    shutil.rmtree(trash, ignore_errors=True)


def export_domain(data_dir: str | os.PathLike, name: str, out: str | os.PathLike) -> Path:
    """Copies a pack out: ``OUT`` ending in ``.zip`` -> a zip holding ``<name>/prototypes.*``;
    otherwise the folder ``OUT/<name>/``. Returns the written path; refuses to overwrite."""
    folder = domain_dir(data_dir, name)
    load_pack(data_dir, name)  # never export a broken pack
    out = Path(out).expanduser()
    if out.suffix.lower() == ".zip":
        if out.exists():
            raise ValueError(f"{out} already exists; pick another OUT or remove it")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".tmp-{out.name}-{uuid.uuid4().hex[:8]}")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in (NPZ, META):
                zf.write(folder / f, f"{name}/{f}")
        tmp.replace(out)
        return out
    target = out / name
    if target.exists():
        raise ValueError(f"{target} already exists; pick another OUT or remove it")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    shutil.copytree(folder, tmp)
    tmp.rename(target)
    return target


def import_domain(data_dir: str | os.PathLike, path: str | os.PathLike, *, name: str | None = None,
                  overwrite: bool = False) -> dict:
    """Imports a pack from a folder (holding the two files, or one sub-folder that does) or a
    zip made by :func:`export_domain`; validated before anything is written. Returns its meta.

    ``name`` renames it (default: the pack's own ``domain``).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder; expected a domain folder or a .zip from `domains export`")
    if path.is_file():
        arrays, meta = _read_zip(path)
    else:
        folder = path
        if not (path / META).exists():
            subs = [d for d in path.iterdir() if d.is_dir() and (d / META).exists()]
            if len(subs) != 1:
                raise ValueError(f"{path}: expected {META} in it or in exactly one sub-folder, found "
                                 f"{len(subs)} such sub-folder(s)")
            folder = subs[0]
        arrays, meta = load_pack_dir(folder)
    target = check_name(name or str(meta["domain"]))
    save_pack(data_dir, target, arrays, meta, overwrite=overwrite)
    return load_pack(data_dir, target)[1]


def _read_zip(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Reads a pack zip (members ``[<dir>/]prototypes.npz`` and ``.meta.json`` only) via a temp folder."""
    import tempfile

    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path}: not a zip file ({exc}); expected a .zip from `domains export`") from exc
    with zf, tempfile.TemporaryDirectory(prefix="agl-domain-") as tmp:
        wanted = {}
        for info in zf.infolist():
            base = info.filename.rsplit("/", 1)[-1]
            if base in (NPZ, META) and info.filename.count("/") <= 1 and ".." not in info.filename:
                wanted[base] = info
        if set(wanted) != {NPZ, META}:
            raise ValueError(f"{path}: expected {NPZ} and {META} in the zip, found {sorted(wanted)}")
        for base, info in wanted.items():
            (Path(tmp) / base).write_bytes(zf.read(info))  # our own names: no path from the archive is used
        return load_pack_dir(tmp)


# -- classification results on objects ---------------------------------------------------------------
def write_classifications(conn: Connection, results: Sequence[dict]) -> int:
    """Stores classification results in ONE transaction; returns the number of objects updated.

    Each result: ``object_id``, ``model`` (``classification_model``, e.g. ``domain:birds@ab12...``),
    ``confidence`` in [0, 1] (``classification_confidence``) and ``classification`` (a JSON-able
    dict merged into ``metadata.classification``; other metadata keys are kept).
    """
    rows: list[tuple[Any, ...]] = []
    for r in results:
        oid = r["object_id"]
        conf = finite_unit(r["confidence"], f"{oid} classification_confidence")
        rows.append((str(r["model"]), conf, json.dumps(r["classification"], ensure_ascii=False), oid))
    if not rows:
        return 0
    with conn.transaction() as tx:
        n = 0
        for row in rows:
            cur = tx.execute(
                "UPDATE objects SET classification_model = ?, classification_confidence = ?, "
                "metadata = json_set(COALESCE(metadata, '{}'), '$.classification', json(?)) WHERE object_id = ?",
                row,
            )
            n += cur.rowcount
    return n

