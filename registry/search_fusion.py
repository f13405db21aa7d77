"""Fusion of similarity with metadata, the optional last stage of a search.

    score = w_similarity · similarity
          + w_category   · [object's category == fusion_category]
          + w_confidence · confidence            (detector confidence in [0, 1]; unknown = 0)
          + w_validated  · [validation_status == "approved"]

``similarity`` is the exact cosine when stage 2 ran (else the ANN's). Weights are set by the
caller (missing keys: ``similarity`` 1.0, the others 0.0), must be finite and >= 0, and are not
normalised: with ``{"similarity": 1, "category": 0.2}`` an object of the favoured category
outranks one of another category that is up to 0.2 more similar. Candidates are the stage-1/2
set (``k · m``), so fusion re-orders near neighbours and never pulls in far ones. Each fused
hit keeps its terms (``score_components``) so a user can see why it ranked where it did.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from registry.db import Connection

FUSION_KEYS = ("similarity", "category", "confidence", "validated")
DEFAULTS = {"similarity": 1.0, "category": 0.0, "confidence": 0.0, "validated": 0.0}


def check_weights(weights: Mapping[str, float] | None) -> dict[str, float] | None:
    """The weights with defaults filled in, or None (no fusion).

    Raises:
        ValueError: an unknown key, or a weight that is not a finite number >= 0.
    """
    if weights is None:
        return None
    if not isinstance(weights, Mapping):
        raise ValueError(f"fusion weights: expected a dict like {{'similarity': 1.0, 'category': 0.2}}, "
                         f"got {type(weights).__name__}")
    unknown = sorted(set(weights) - set(FUSION_KEYS))
    if unknown:
        raise ValueError(f"fusion weights: unknown key(s) {unknown}; expected a subset of {list(FUSION_KEYS)}")
    out = dict(DEFAULTS)
    for key, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ValueError(f"fusion weight {key!r}: expected a finite number >= 0, got {value!r}")
        out[key] = float(value)
    return out


def fuse(conn: Connection, hits: list[dict[str, Any]], objects: Mapping[str, dict], weights: dict[str, float],
         category: str | None) -> list[dict[str, Any]]:
    """Scores ``hits`` (``{"object_id", "ann", "exact"}``) by the weighted sum above, best first.

    Args:
        conn: the registry connection (resolves ``category`` by name or synonym).
        hits: candidates with their similarity; ``objects`` holds their registry dicts.
        weights: checked weights (:func:`check_weights`).
        category: the favoured category's name or synonym (None: the category term is 0).

    Returns:
        the hits with ``fused`` (the score) and ``terms`` (each weighted term), sorted by score.
    """
    from registry.categories import get_category

    favoured = None
    if category is not None:
        cat = get_category(conn, category)
        favoured = cat["name"] if cat else category.strip()
    for h in hits:
        o = objects[h["object_id"]]
        sim = float(h["exact"] if h.get("exact") is not None else h["ann"])
        terms = {
            "similarity": weights["similarity"] * sim,
            "category": weights["category"] * float(favoured is not None and o.get("category") == favoured),
            "confidence": weights["confidence"] * float(o.get("confidence") or 0.0),
            "validated": weights["validated"] * float(o.get("validation_status") == "approved"),
        }
        h["terms"] = terms
        h["fused"] = sum(terms.values())
    return sorted(hits, key=lambda h: (-h["fused"], h["object_id"]))
