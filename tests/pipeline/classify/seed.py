"""Seeds a registry with objects whose stored embeddings are synthetic class clusters.

Used by the CLI, workflow and browser tests of classification: approved objects form the
support set, pending ones are the objects to classify (some from out-of-domain clusters).
Boxes are xyxy absolute pixels of a 64x48 image; embeddings (dim,) float32.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from registry.facade import ObjectIn
from tests.pipeline.classify.synthetic import make_synthetic

CLASSES = ["ant", "bee", "cat"]


def seed_clusters(reg, tmp: Path, *, shots: int = 4, pending_per_class: int = 2, ood: int = 2,
                  seed: int = 0, project: str | None = None) -> dict:
    """Registers ``shots`` approved + ``pending_per_class`` pending objects per class of
    :data:`CLASSES`, plus ``ood`` pending out-of-domain objects (category "thing").

    Returns ``{"approved": [ids], "pending": {id: true class or "unknown"}, "vectors": {id: vector}}``.
    """
    s = make_synthetic(dim=reg.embedding_dim, n_classes=len(CLASSES), shots=shots,
                       queries_per_class=pending_per_class, n_ood=1, ood_per_cluster=max(ood, 1), noise=0.05,
                       seed=seed)
    names = {f"class_{i}": c for i, c in enumerate(CLASSES)}
    tmp.mkdir(parents=True, exist_ok=True)
    img = tmp / f"seed_{seed}.png"
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(img)
    sid = reg.register_source(img)
    objs, truth = [], []
    for v, lab in zip(s.support, s.support_labels, strict=True):
        objs.append(ObjectIn(names[lab], (0, 0, 10, 10), embedding=v, validation_status="approved",
                             validated_by="seed"))
        truth.append(None)
    for v, lab in zip(s.queries, s.query_labels, strict=True):
        objs.append(ObjectIn("thing", (0, 0, 10, 10), embedding=v, confidence=0.5))
        truth.append(names[lab])
    for v in s.ood[:ood]:
        objs.append(ObjectIn("thing", (0, 0, 10, 10), embedding=v, confidence=0.5))
        truth.append("unknown")
    ids = reg.register_objects(sid, objs, project=project, dedupe=False).object_ids
    return {
        "approved": [i for i, t in zip(ids, truth, strict=True) if t is None],
        "pending": {i: t for i, t in zip(ids, truth, strict=True) if t is not None},
        "vectors": {i: o.embedding for i, o in zip(ids, objs, strict=True)},
    }
