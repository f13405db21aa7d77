"""Registry statistics: counts per category and split, validation rate, confidence histogram."""
from __future__ import annotations

from typing import Any

from registry.db import Connection

HIST_BINS = 10  # confidence histogram: 10 bins of width 0.1 over [0, 1]; 1.0 falls in the last


def compute_stats(conn: Connection, embedding_version: str) -> dict[str, Any]:
    """Returns a JSON-ready dict.

    Keys: ``sources``, ``objects``, ``categories`` (name -> {objects, pending, approved,
    rejected}), ``splits`` (split -> objects over all datasets) and ``datasets`` (name ->
    split -> objects), ``validation`` (counts per status and ``rate`` = validated / all),
    ``confidence_histogram`` (``edges`` of 11 values, ``counts`` of 10, ``unknown``),
    ``embeddings`` (of ``embedding_version``) and ``outbox`` (pending / failed / synced).
    """
    total = int(conn.scalar("SELECT count(*) FROM objects"))
    cats: dict[str, dict[str, int]] = {}
    for r in conn.query(
        """SELECT c.name, o.validation_status AS status, count(o.object_id) AS n
           FROM categories c LEFT JOIN objects o ON o.category_id = c.category_id
           GROUP BY c.category_id, o.validation_status ORDER BY c.name COLLATE NOCASE"""
    ):
        entry = cats.setdefault(r["name"], {"objects": 0, "pending": 0, "approved": 0, "rejected": 0})
        if r["status"] is not None:
            entry[r["status"]] += r["n"]
            entry["objects"] += r["n"]
    status_counts = {s: 0 for s in ("pending", "approved", "rejected")}
    for r in conn.query("SELECT validation_status AS s, count(*) AS n FROM objects GROUP BY validation_status"):
        status_counts[r["s"]] = r["n"]
    validated = status_counts["approved"] + status_counts["rejected"]
    splits = {s: 0 for s in ("train", "val", "test")}
    for r in conn.query("SELECT split, count(*) AS n FROM dataset_objects GROUP BY split"):
        splits[r["split"]] = r["n"]
    datasets: dict[str, dict[str, int]] = {}
    for r in conn.query(
        """SELECT d.name, d.dataset_id, x.split, count(x.object_id) AS n FROM datasets d
           LEFT JOIN dataset_objects x ON x.dataset_id = d.dataset_id
           GROUP BY d.dataset_id, x.split ORDER BY d.name"""
    ):
        key = r["name"] if r["name"] not in datasets else f"{r['name']} ({r['dataset_id']})"
        entry = datasets.setdefault(key, {"train": 0, "val": 0, "test": 0})
        if r["split"] is not None:
            entry[r["split"]] = r["n"]
    counts = [0] * HIST_BINS
    for r in conn.query(
        f"SELECT min(CAST(confidence * {HIST_BINS} AS INTEGER), {HIST_BINS - 1}) AS b, count(*) AS n "
        "FROM objects WHERE confidence IS NOT NULL GROUP BY b"
    ):
        counts[int(r["b"])] = r["n"]
    unknown = int(conn.scalar("SELECT count(*) FROM objects WHERE confidence IS NULL"))
    outbox = {s: 0 for s in ("pending", "failed", "synced")}
    for r in conn.query("SELECT status, count(*) AS n FROM embedding_outbox GROUP BY status"):
        outbox[r["status"]] = r["n"]
    return {
        "sources": int(conn.scalar("SELECT count(*) FROM sources")),
        "objects": total,
        "categories": cats,
        "splits": splits,
        "datasets": datasets,
        "validation": {**status_counts, "rate": (validated / total) if total else 0.0},
        "confidence_histogram": {
            "edges": [round(i / HIST_BINS, 2) for i in range(HIST_BINS + 1)],
            "counts": counts,
            "unknown": unknown,
        },
        "embeddings": int(
            conn.scalar("SELECT count(*) FROM embeddings WHERE version_id = ?", (embedding_version,))
        ),
        "outbox": outbox,
    }


def format_stats(s: dict[str, Any]) -> str:
    """Human-readable text of :func:`compute_stats`' dict."""
    lines = [f"sources {s['sources']}   objects {s['objects']}   embeddings {s['embeddings']}"]
    v = s["validation"]
    lines.append(
        f"validation: {v['approved']} approved, {v['rejected']} rejected, {v['pending']} pending "
        f"(rate {v['rate']:.1%})"
    )
    lines.append("categories:")
    for name, c in s["categories"].items():
        lines.append(f"  {name:<30} {c['objects']:>8}  (approved {c['approved']}, rejected {c['rejected']})")
    lines.append("splits: " + ", ".join(f"{k} {n}" for k, n in s["splits"].items()))
    h = s["confidence_histogram"]
    lines.append("confidence:")
    top = max(h["counts"] + [1])
    for i, n in enumerate(h["counts"]):
        lines.append(f"  {h['edges'][i]:.1f}-{h['edges'][i + 1]:.1f} {n:>8} {'#' * round(30 * n / top)}")
    lines.append(f"  unknown {h['unknown']:>8}")
    o = s["outbox"]
    lines.append(f"outbox: {o['pending']} pending, {o['failed']} failed, {o['synced']} synced")
    return "\n".join(lines)
