"""Registry statistics for the Stats tab and the ``stats`` API endpoint (plain data only)."""
from __future__ import annotations

from typing import Any

import numpy as np


def collect(reg: Any, *, bins: int = 10, recent: int = 15) -> dict:
    """Counts per category, validation rate, a confidence histogram and recent activity.

    Returns:
        {"sources", "objects", "approved", "rejected", "pending", "validation_rate",
         "categories": [{"category", "objects", "approved"}],
         "histogram": [{"bin", "low", "high", "count"}] over confidence [0, 1],
         "recent": [{"object_id", "category", "confidence", "status", "validated_by", "updated_at"}]}.
    """
    total = reg.count_objects()
    approved = reg.count_objects(status="approved")
    rejected = reg.count_objects(status="rejected")
    cats = []
    for c in reg.list_categories():
        n = int(c.get("object_count") or 0)
        if n:
            cats.append({"category": c["name"], "objects": n,
                         "approved": reg.count_objects(category=c["name"], status="approved")})
    cats.sort(key=lambda r: (-r["objects"], r["category"]))
    # Streams the objects (bounded memory) instead of loading the table.
    confs = np.fromiter((o["confidence"] for o in reg.iter_objects() if o.get("confidence") is not None), float)
    counts, edges = np.histogram(confs, bins=bins, range=(0.0, 1.0))
    hist = [{"bin": f"{edges[i]:.1f}–{edges[i + 1]:.1f}", "low": float(edges[i]), "high": float(edges[i + 1]),
             "count": int(counts[i])} for i in range(bins)]
    rows = reg.list_objects(order="created_desc", limit=200)
    rows.sort(key=lambda o: str(o.get("updated_at") or o.get("created_at") or ""), reverse=True)
    recent_rows = [{k: o.get(k) for k in ("object_id", "category", "confidence", "validation_status",
                                          "validated_by", "updated_at")} for o in rows[:recent]]
    for r in recent_rows:
        if r["confidence"] is not None:
            r["confidence"] = round(float(r["confidence"]), 3)
    return {
        "sources": reg.count_sources(),
        "objects": total,
        "approved": approved,
        "rejected": rejected,
        "pending": total - approved - rejected,
        "validation_rate": (approved + rejected) / total if total else 0.0,
        "categories": cats,
        "histogram": hist,
        "recent": recent_rows,
    }
