"""Few-shot classification workflows: build domain packs, classify registry objects, apply verdicts.

Joins :mod:`pipeline.classify` (scoring, calibration; numpy) and :mod:`registry.domains`
(packs on disk, results on objects). Embeddings are ``(D,)`` float32 vectors of the
registry's embedding version; query boxes ``xyxy`` are absolute pixels of the query image.

A classification result stored on an object: ``classification_model`` =
``domain:<name>@<pack version>`` (the pack's content hash, so a rebuilt pack re-classifies and
an imported copy does not), ``classification_confidence`` = the margin-based confidence, and
``metadata.classification`` = ``{"domain", "version", "verdict", "is_unknown", "s1", "s2",
"margin", "confidence", "top_k", "applied"}``.
"""
from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.classify import UNKNOWN, PrototypeModel, build_model, calibrate
from registry import domains

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
BATCH = 512


def model_id(meta: dict) -> str:
    """``domain:<name>@<version>``: what ``classification_model`` says for this pack."""
    return f"domain:{meta['domain']}@{meta['version']}"


def model_from_pack(arrays: dict[str, np.ndarray], meta: dict) -> PrototypeModel:
    """The classifier stored in a pack (see :mod:`registry.domains` for the format)."""
    centred = bool(meta.get("preprocessing", {}).get("centre", True))
    return PrototypeModel(
        classes=list(meta["classes"]), prototypes=arrays["prototypes"], support=arrays["support"],
        labels=arrays["labels"], centre=arrays["centre"] if centred else None, tau1=float(meta["tau1"]),
        tau2=float(meta["tau2"]), k=int(meta.get("k", 5)), knn_weight=float(meta.get("knn_weight", 0.5)),
        confidence_scale=float(meta.get("confidence_scale", 0.05)), calibration=dict(meta.get("calibration", {})),
    )


STORED_INPUT = "the registry's stored object embeddings (masked object crops)"
FOLDER_INPUT = "whole images (box = the image, no mask), embedded as a search query is"


def pack_from_model(model: PrototypeModel, *, embedding_model: str, source: dict,
                    embedding_input: str = STORED_INPUT) -> tuple[dict, dict]:
    """``(arrays, meta)`` for :func:`registry.domains.save_pack`."""
    arrays = {
        "prototypes": model.prototypes, "support": model.support, "labels": model.labels,
        "centre": model.centre if model.centre is not None else np.zeros(model.dim, np.float32),
    }
    meta = {
        "classes": list(model.classes), "counts": model.counts(), "embedding_model": embedding_model,
        "embedding_dim": model.dim,
        "preprocessing": {"l2_normalize": True, "centre": model.centre is not None,
                          "centre_of": "mean of the L2-normalised support embeddings (SimpleShot)",
                          "embedding_input": embedding_input},
        "tau1": model.tau1, "tau2": model.tau2, "k": model.k, "knn_weight": model.knn_weight,
        "confidence_scale": model.confidence_scale, "calibration": model.calibration,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "source": source,
    }
    return arrays, meta


def build_domain(reg: Any, name: str, vectors: np.ndarray, labels: Sequence[str], *, source: dict,
                 min_coverage: float = 0.95, tau1: float | None = None, tau2: float | None = None,
                 centre: bool = True, overwrite: bool = False) -> dict:
    """Builds, calibrates and saves a domain from support vectors; returns its meta.

    ``tau1``/``tau2`` override the calibrated thresholds (the calibration report is kept).
    """
    domains.check_name(name)
    if len(vectors) < 2:
        raise ValueError(f"domain {name!r}: expected at least 2 support embeddings, got {len(vectors)}; "
                         "validate more objects (Review) or add images to the class folders")
    model = build_model(vectors, labels, centre=centre)
    calibrate(model, min_coverage=min_coverage)
    if tau1 is not None:
        model.tau1 = float(tau1)
    if tau2 is not None:
        model.tau2 = float(tau2)
    arrays, meta = pack_from_model(model, embedding_model=reg.embedding_version, source=source,
                                   embedding_input=FOLDER_INPUT if source.get("kind") == "folders" else STORED_INPUT)
    domains.save_pack(reg.data_dir, name, arrays, meta, overwrite=overwrite)
    return domains.load_pack(reg.data_dir, name)[1]


def validated_support(reg: Any, categories: Sequence[str] | None = None) -> tuple[np.ndarray, list[str], int]:
    """``(vectors (N, D), category names, objects without embedding)`` of the approved objects."""
    cats = [c for c in (categories or []) if c.strip()] or None
    objs = list(reg.iter_objects(status="approved", category=cats))
    ids, vecs = reg.get_embeddings([o["object_id"] for o in objs])  # one query per 30,000 ids
    category = {o["object_id"]: o["category"] for o in objs}
    return np.asarray(vecs, np.float32).reshape(len(ids), int(reg.embedding_dim)), [category[i] for i in ids], \
        len(objs) - len(ids)


def build_from_validated(reg: Any, name: str, *, categories: Sequence[str] | None = None, **kw: Any) -> dict:
    """A domain from the stored embeddings of validated (approved) objects; returns its meta."""
    vecs, names, missing = validated_support(reg, categories)
    if not len(vecs):
        what = f" of categories {list(categories)}" if categories else ""
        raise ValueError(f"domain {name!r}: no approved objects{what} with a stored {reg.embedding_version!r} "
                         f"embedding ({missing} approved without one); approve some in Review first")
    src = {"kind": "validated", "categories": sorted(set(names)), "without_embedding": missing}
    return build_domain(reg, name, vecs, names, source=src, **kw)


def folder_images(root: str | os.PathLike) -> list[tuple[Path, str]]:
    """``(image path, class)`` for every image in the class sub-folders of ``root`` (sorted)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"--folders {root}: not a folder; expected one sub-folder per class holding its images")
    out = [(f, d.name) for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")
           for f in sorted(d.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
    if not out:
        raise ValueError(f"--folders {root}: no images in class sub-folders (expected e.g. {root}/cat/1.jpg)")
    return out


def build_from_folders(reg: Any, embedder: Any, name: str, root: str | os.PathLike, **kw: Any) -> dict:
    """A domain from class sub-folders of images, each embedded whole by ``embedder`` as a
    search query is (:func:`app.workflows.search.embed_query`, no segmenter); returns its meta."""
    from app.workflows.search import embed_query
    from pipeline.image_io import load_image

    items = folder_images(root)
    vecs, names, bad = [], [], []
    for path, cls in items:
        try:
            vecs.append(embed_query(embedder, load_image(path)))
            names.append(cls)
        except (ValueError, OSError) as exc:
            bad.append(f"{path}: {exc}")
    if bad:
        print(f"{len(bad)} of {len(items)} image(s) skipped:\n  " + "\n  ".join(bad[:20]), file=sys.stderr)
    if not vecs:
        raise ValueError(f"--folders {root}: none of the {len(items)} images could be read")
    src = {"kind": "folders", "path": str(Path(root).expanduser().resolve()), "skipped": len(bad)}
    return build_domain(reg, name, np.stack(vecs).astype(np.float32), names, source=src, **kw)


def load_domain(reg: Any, name: str) -> tuple[PrototypeModel, dict]:
    """The domain's classifier and meta, refused when built on another embedding model."""
    arrays, meta = domains.load_pack(reg.data_dir, name, embedding_version=reg.embedding_version,
                                     embedding_dim=reg.embedding_dim)
    return model_from_pack(arrays, meta), meta


def result_record(answer: dict, meta: dict, *, applied: bool = False) -> dict:
    """What :func:`registry.domains.write_classifications` stores for one answer."""
    cls = {"domain": meta["domain"], "version": meta["version"], **answer, "applied": applied}
    return {"model": model_id(meta), "confidence": answer["confidence"], "classification": cls}


def classify_vector(reg: Any, name: str, vector: np.ndarray, *, top_k: int = 3) -> dict:
    """The answer for one embedding (``top_k``, ``s1``, ``s2``, ``margin``, ``verdict``,
    ``is_unknown``, ``confidence``, plus ``tau1``/``tau2``/``domain``)."""
    model, meta = load_domain(reg, name)
    ans = model.classify(np.asarray(vector, np.float32)[None], top_k=top_k)[0]
    return {**ans, "tau1": model.tau1, "tau2": model.tau2, "domain": name, "model": model_id(meta)}


def classify_object(reg: Any, name: str, object_id: str, *, top_k: int = 3) -> dict:
    """The answer for a stored object's embedding; ValueError when it has none."""
    object_id = (object_id or "").strip()
    vec = reg.get_embedding(object_id)
    if vec is None:
        raise ValueError(f"object {object_id} has no stored {reg.embedding_version!r} embedding; classify another "
                         "object or an uploaded image")
    return {**classify_vector(reg, name, vec, top_k=top_k), "object_id": object_id}


def can_apply(obj: dict, verdict: str) -> bool:
    """A verdict is applied only when it is a class and the object is not validated."""
    return verdict != UNKNOWN and not obj["is_validated"] and obj["category"] != verdict


def classify_registry(reg: Any, name: str, *, only_pending: bool = False, apply: bool = False,
                      force: bool = False, batch_size: int = BATCH, top_k: int = 3, progress: bool = True) -> dict:
    """Classifies the registry's objects with a domain, in batches of ``batch_size``.

    Resumable: objects already classified by this pack version are skipped unless ``force``
    (with ``apply``, their stored verdict is still applied). ``apply`` sets the verdict as
    category where it is not "unknown" and the object is not validated.

    Returns:
        ``{"domain", "model", "classified", "skipped", "no_embedding", "applied", "verdicts":
        {verdict: count}, "failed": [(object id, reason)]}``.
    """
    from tqdm import tqdm

    model, meta = load_domain(reg, name)
    mid = model_id(meta)
    filters = {"status": "pending"} if only_pending else {}
    total = reg.count_objects(**filters)
    summary: dict[str, Any] = {"domain": name, "model": mid, "classified": 0, "skipped": 0, "no_embedding": 0,
                               "applied": 0, "verdicts": Counter(), "failed": []}
    batch: list[dict] = []

    def flush() -> None:
        if not batch:
            return
        ids, vecs = reg.get_embeddings([o["object_id"] for o in batch])  # one read per batch
        by_id = {o["object_id"]: o for o in batch}
        summary["no_embedding"] += len(batch) - len(ids)
        batch.clear()
        if not ids:
            return
        answers = model.classify(vecs, top_k=top_k)
        objs = [by_id[i] for i in ids]
        records = []
        for obj, ans in zip(objs, answers, strict=True):
            do_apply = apply and can_apply(obj, ans["verdict"])
            records.append({"object_id": obj["object_id"], **result_record(ans, meta, applied=do_apply)})
            summary["verdicts"][ans["verdict"]] += 1
        domains.write_classifications(reg.connection, records)
        summary["classified"] += len(records)
        if apply:
            _apply(reg, [(obj, ans["verdict"]) for obj, ans in zip(objs, answers, strict=True)], summary)

    with tqdm(total=total, desc=f"classify {name}", unit="obj", disable=not progress, file=sys.stderr) as bar:
        for obj in reg.iter_objects(batch_size=batch_size, **filters):
            bar.update(1)
            if obj["classification_model"] == mid and not force:
                summary["skipped"] += 1
                stored = (obj.get("metadata") or {}).get("classification") or {}
                if apply and stored.get("verdict"):
                    _apply(reg, [(obj, stored["verdict"])], summary)
                continue
            if not obj["has_embedding"]:
                summary["no_embedding"] += 1
                continue
            batch.append(obj)
            if len(batch) >= batch_size:
                flush()
        flush()
    summary["verdicts"] = dict(sorted(summary["verdicts"].items(), key=lambda kv: (-kv[1], kv[0])))
    return summary


def _apply(reg: Any, pairs: Iterable[tuple[dict, str]], summary: dict) -> None:
    for obj, verdict in pairs:
        if not can_apply(obj, verdict):
            continue
        try:
            reg.update_object(obj["object_id"], category=verdict)
            summary["applied"] += 1
        except ValueError as exc:  # one bad object never stops the batch
            summary["failed"].append((obj["object_id"], str(exc)))


def similar_pending(reg: Any, vector: np.ndarray, n: int) -> list[dict]:
    """The ``n`` pending objects most similar to ``vector`` (registry search, best first)."""
    if int(n) < 1:
        raise ValueError(f"expected N >= 1 similar objects, got {n}")
    return reg.search(np.asarray(vector, np.float32), k=int(n), status="pending")


def apply_verdict(reg: Any, object_ids: Sequence[str], verdict: str) -> int:
    """Sets ``verdict`` as the category of the given objects that are not validated; returns how many changed."""
    if not verdict or verdict == UNKNOWN:
        raise ValueError(f"expected a class verdict to apply, got {verdict!r}: an unknown verdict names no class")
    summary: dict[str, Any] = {"applied": 0, "failed": []}
    _apply(reg, [(o, verdict) for o in reg.get_objects(list(object_ids))], summary)
    if summary["failed"]:
        raise ValueError("; ".join(f"{i}: {r}" for i, r in summary["failed"]))
    return int(summary["applied"])


def format_summary(s: dict) -> str:
    """The printed summary of :func:`classify_registry`."""
    lines = [f"domain {s['domain']} ({s['model']}): {s['classified']} classified, {s['skipped']} already done "
             f"(skipped), {s['no_embedding']} without embedding, {s['applied']} verdict(s) applied"]
    lines += [f"  {v:24s} {n}" for v, n in s["verdicts"].items()]
    if s["failed"]:
        lines.append(f"{len(s['failed'])} failed:")
        lines += [f"  {i}: {r}" for i, r in s["failed"]]
    return "\n".join(lines)
