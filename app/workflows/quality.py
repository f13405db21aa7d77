"""``quality train|score``: a learned quality score from review outcomes, written to
``objects.quality_score`` (in [0, 1], higher = better; the Review tab's "lowest quality first").

Training examples are the detector's reviewed objects that have a stored embedding: approved as
is = good (1), rejected or corrected (relabelled / box edited) = bad (0); an ordinal tier a user
put in ``metadata.quality_tier`` (an int, higher = better) wins over that. Hand-drawn and
imported objects are no detector output and are not training examples. The model's input size is
the registry's embedding size (768 for DINOv2-base, 384 for -small; any size works). Pairs and
splits are built by image (source, or video frame), never by object.

The checkpoint lives in ``<data>/quality/<embedding version>/`` (``quality.pt`` + ``quality.json``
with the embedding version and size); scoring refuses a checkpoint made on other embeddings.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from app.workflows.autolabel_eval import is_detector_output, outcome_of

TRAINING_CAP = 50_000  # most examples kept in memory (a uniform sample beyond), ~150 MB at 768-d


def model_dir(data_dir: str | Path, embedding_version: str) -> Path:
    """``<data>/quality/<version>`` (the version made safe as a folder name)."""
    return Path(data_dir) / "quality" / (re.sub(r"[^A-Za-z0-9._-]+", "_", embedding_version) or "default")


def label_of(obj: dict) -> int | None:
    """The ordinal training label of a reviewed detector object (see module doc), or None."""
    meta = obj.get("metadata") or {}
    tier = meta.get("quality_tier")
    if isinstance(tier, int | float) and not isinstance(tier, bool) and obj["validation_status"] != "pending":
        return int(tier)
    if not is_detector_output(obj.get("detection_model")):
        return None
    outcome = outcome_of(obj)
    if outcome == "pending":
        return None
    return 1 if outcome == "approved" else 0


def _examples(reg: Any, batch_size: int, cap: int, seed: int) -> list[dict]:
    """Reviewed objects with embeddings and a label: a uniform sample of at most ``cap``."""
    rng = np.random.default_rng(seed)
    keep: list[dict] = []
    seen = 0
    for obj in reg.iter_objects(batch_size=batch_size, status=["approved", "rejected"]):
        label = label_of(obj)
        if label is None or not obj["has_embedding"]:
            continue
        meta = obj.get("metadata") or {}
        row = {"object_id": obj["object_id"], "label": label, "confidence": obj.get("confidence"),
               "image": f"{obj['source_id']}|{obj.get('frame_id') or ''}",
               "category": str(meta.get("proposed_category") or obj["category"])}
        seen += 1
        if len(keep) < cap:
            keep.append(row)
        elif (j := int(rng.integers(0, seen))) < cap:
            keep[j] = row
    return keep


def _vectors(reg: Any, ids: list[str], batch_size: int) -> np.ndarray:
    parts = []
    for s in range(0, len(ids), batch_size):
        got, vec = reg.get_embeddings(ids[s:s + batch_size])
        if len(got) != len(ids[s:s + batch_size]):
            raise RuntimeError("an embedding vanished while reading the training set; run quality train again")
        parts.append(vec)
    return np.concatenate(parts).astype(np.float32)


def train(reg: Any, data_dir: str | Path, *, epochs: int = 40, seed: int = 0, batch_size: int = 2000,
          cap: int = TRAINING_CAP, progress: bool = False) -> dict:
    """Trains the quality model on the registry's review outcomes and saves the checkpoint.

    Returns:
        ``{"examples", "good", "bad", "images", "accuracy": {train, val, test}, "baselines":
        {"1 - confidence", "kNN-10 label disagreement"} (held-out pairwise accuracy), "pairs",
        "epochs_run", "best_epoch", "checkpoint", "embedding_version", "embedding_dim"}``.

    Raises:
        ValueError: no reviewed objects with embeddings, one outcome only, too few images.
    """
    from pipeline.al.quality_baselines import confidence_quality, knn_label_quality
    from pipeline.al.quality_model import (
        QualityConfig,
        pairwise_accuracy,
        save_checkpoint,
        train_quality,
    )

    rows = _examples(reg, batch_size, cap, seed)
    if not rows:
        raise ValueError(f"quality train: no reviewed detector objects with a stored {reg.embedding_version!r} "
                         "embedding; review (approve / reject / relabel) auto-labels first")
    x = _vectors(reg, [r["object_id"] for r in rows], batch_size)
    labels = np.array([r["label"] for r in rows])
    images = np.array([r["image"] for r in rows])
    cfg = QualityConfig(epochs=int(epochs), seed=int(seed))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs, desc="quality train", unit="epoch")

    def on_epoch(epoch: int, loss: float, val: float | None) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", val_acc="-" if val is None else f"{val:.3f}")

    model, report = train_quality(x, labels, images, cfg, progress=on_epoch)
    if bar is not None:
        bar.close()
    better, worse = report.held_out
    baselines = {
        "1 - confidence": pairwise_accuracy(confidence_quality([r["confidence"] for r in rows]), better, worse),
        "kNN-10 label disagreement": pairwise_accuracy(knn_label_quality(x, [r["category"] for r in rows], 10),
                                                       better, worse),
    }
    result = {"examples": len(rows), "good": int((labels == labels.max()).sum()),
              "bad": int((labels < labels.max()).sum()), "images": len(set(images.tolist())),
              **report.to_dict(), "baselines": baselines, "embedding_version": reg.embedding_version,
              "embedding_dim": int(x.shape[1])}
    folder = save_checkpoint(model_dir(data_dir, reg.embedding_version), model,
                             embedding_version=reg.embedding_version, config=cfg, extra={"metrics": result})
    result["checkpoint"] = str(folder)
    return result


def _pages(reg: Any, batch_size: int) -> Iterator[list[str]]:
    page: list[str] = []
    for obj in reg.iter_objects(batch_size=batch_size):
        if obj["has_embedding"]:
            page.append(obj["object_id"])
        if len(page) >= batch_size:
            yield page
            page = []
    if page:
        yield page


def score(reg: Any, data_dir: str | Path, *, batch_size: int = 2000, progress: bool = False) -> dict:
    """Fills ``objects.quality_score`` of every object with an embedding, page by page.

    Returns:
        ``{"scored", "without_embedding", "mean", "min", "max", "checkpoint"}``.

    Raises:
        FileNotFoundError: no trained model for this embedding version.
        ValueError: the model was trained on other embeddings.
    """
    from pipeline.al.quality_model import load_checkpoint, predict
    from registry.patches import set_quality_scores

    folder = model_dir(data_dir, reg.embedding_version)
    model, _ = load_checkpoint(folder, embedding_version=reg.embedding_version, embedding_dim=reg.embedding_dim)
    total = reg.count_objects()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="quality score", unit="obj")
    scored, s_sum, lo, hi = 0, 0.0, 1.0, 0.0
    for ids in _pages(reg, batch_size):
        got, vec = reg.get_embeddings(ids)
        if not got:
            continue
        q = predict(model, vec)
        set_quality_scores(reg.connection, {oid: float(v) for oid, v in zip(got, q, strict=True)})
        scored += len(got)
        s_sum += float(q.sum())
        lo, hi = min(lo, float(q.min())), max(hi, float(q.max()))
        if bar is not None:
            bar.update(len(got))
    if bar is not None:
        bar.close()
    return {"scored": scored, "without_embedding": total - scored, "mean": s_sum / scored if scored else None,
            "min": lo if scored else None, "max": hi if scored else None, "checkpoint": str(folder)}
