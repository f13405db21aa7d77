"""Find-by-upload's verdict, in the similarity server's shape (``top_k``, ``verdict``, ``s1``,
``margin``, ``is_unknown``), computed from the nearest registry objects.

Until the classification issue brings prototypes (a support set per class), a class's score is
the best cosine similarity among the query's nearest objects of that class. ``s1`` is the best
class's score, ``margin`` = ``s1`` minus the second class's score (``s1`` when only one class is
among the neighbours), and the query is *unknown* when ``s1 < tau1`` or ``margin < tau2``; the
defaults are the similarity server's ``TAU1 = 0.30`` and ``TAU2 = 0.04``.
"""
from __future__ import annotations

from collections.abc import Sequence

TAU1 = 0.30
TAU2 = 0.04


def verdict(hits: Sequence[dict], *, top_k: int = 3, tau1: float = TAU1, tau2: float = TAU2) -> dict:
    """The verdict for search hits (registry objects with ``category`` and ``similarity``).

    Args:
        hits: the nearest objects, any order.
        top_k: how many classes to list.
        tau1: minimum ``s1`` for a known class.
        tau2: minimum ``margin`` for a known class.

    Returns:
        ``{"top_k": [(category, score), ...] best first, "verdict": str | None, "s1", "margin",
        "is_unknown", "tau1", "tau2"}``; with no hits ``s1 = margin = 0`` and the query is unknown.
    """
    best: dict[str, float] = {}
    for h in hits:
        cat, sim = h["category"], float(h["similarity"])
        if sim > best.get(cat, float("-inf")):
            best[cat] = sim
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
    s1 = ranked[0][1] if ranked else 0.0
    margin = s1 - ranked[1][1] if len(ranked) > 1 else s1
    unknown = not ranked or s1 < tau1 or margin < tau2
    return {
        "top_k": [(c, round(s, 6)) for c, s in ranked[: int(top_k)]],
        "verdict": None if unknown else ranked[0][0],
        "s1": round(s1, 6),
        "margin": round(margin, 6),
        "is_unknown": bool(unknown),
        "tau1": float(tau1),
        "tau2": float(tau2),
    }
