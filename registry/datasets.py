"""Dataset build: select objects with a filter, split them into train/val/test without leaks.

A dataset is a filter (:class:`DatasetFilter`) plus a split (ratios and a seed), stored as a row
of ``datasets`` and its membership as rows of ``dataset_objects (dataset_id, object_id, split)``.

Leak-free splits. The split unit is the *source* (an image, or a whole video with all its
frames), never the object. Sources are joined into groups by union-find before splitting:

* sources with the same content hash (the same bytes registered twice, e.g. ``copy=False``);
* sources sharing a track (all objects of one track end up in one split);
* near-duplicate sources: cosine similarity ≥ ``near_duplicate_threshold`` (default 0.95)
  between the L2-normalised mean embeddings of their selected objects, when embeddings exist;
  compared with chunked matrix products (memory ``chunk x n_sources``).

Determinism. Groups are ordered by ``blake2b(f"{seed}:{group key}")`` (the key is the group's
smallest source id), never by Python's salted ``hash()`` or by SQLite's ``RANDOM()``; each group
then goes to the split furthest below its target (counted in images), so the same registry,
filter and seed always give the same split. When there are at least as many groups as splits
with a non-zero ratio, every such split receives at least one group (a YOLO trainer needs a
non-empty ``val``).

Background images. Image sources with no objects (rejected ones aside) that match the filter's
``project`` / ``sources`` are split by the same ratios after the sources with objects (whose
split they never change; one sharing a content hash with a source with objects follows it) and
recorded under
``split_config["background_sources"]`` (``{split: [source ids]}``); the exporters write them
with an empty label file (YOLO) or an image entry without annotations (COCO), as trainers
want some background images. ``include_background=False`` leaves them out of the build.

Versions. Building a name that exists makes a new dataset row (``version`` = previous + 1); the
membership of older versions is never touched, so each stays reproducible.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from registry.dataset_reads import (
    _version_number,
    dataset_background,
    dataset_members,
    get_dataset,
    list_datasets,
)
from registry.dataset_split import (
    SPLITS,
    _assign,
    _Groups,
    _near_duplicate_pairs,
    _order_key,
    parse_split,
)
from registry.ids import new_id, utc_now

NEAR_DUPLICATE_THRESHOLD = 0.95

__all__ = [
    "SPLITS",
    "DatasetFilter",
    "build_dataset",
    "get_dataset",
    "list_datasets",
    "dataset_members",
    "dataset_background",
    "parse_split",
    "select_objects_sql",
]


@dataclass
class DatasetFilter:
    """Which objects a dataset holds. ``None``/empty means "no restriction".

    Attributes:
        categories: category names or synonyms (resolved through the registry).
        min_confidence: keep objects with ``confidence >= min_confidence`` (objects without a
            confidence, e.g. drawn by hand or imported, are kept).
        validated_only: keep only ``validation_status == "approved"`` objects. Rejected objects
            are never exported, whatever the filter.
        project: project id of the objects.
        sources: source ids.
    """

    categories: list[str] | None = None
    min_confidence: float | None = None
    validated_only: bool = False
    project: str | None = None
    sources: list[str] | None = None

    @classmethod
    def from_dict(cls, data: dict | None) -> DatasetFilter:
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown dataset filter keys {sorted(unknown)}; expected some of "
                f"{sorted(cls.__dataclass_fields__)}"
            )
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


def _resolve_categories(reg: Any, names: Iterable[str]) -> list[int]:
    ids = []
    for name in names:
        cat = reg.get_category(name)
        if cat is None:
            known = sorted(c["name"] for c in reg.list_categories())
            raise ValueError(f"unknown category {name!r}; the registry has {known}")
        ids.append(int(cat["category_id"]))
    return sorted(set(ids))


def select_objects_sql(reg: Any, flt: DatasetFilter) -> tuple[str, list]:
    """SQL ``WHERE`` clause (on ``objects o``) and parameters for a filter.

    Rejected objects are always excluded.
    """
    where = ["o.validation_status <> 'rejected'"]
    params: list = []
    if flt.categories:
        ids = _resolve_categories(reg, flt.categories)
        where.append(f"o.category_id IN ({','.join('?' * len(ids))})")
        params += ids
    if flt.min_confidence is not None:
        where.append("(o.confidence IS NULL OR o.confidence >= ?)")
        params.append(float(flt.min_confidence))
    if flt.validated_only:
        where.append("o.validation_status = 'approved'")
    if flt.project:
        where.append("o.project_id = ?")
        params.append(flt.project)
    if flt.sources:
        where.append(f"o.source_id IN ({','.join('?' * len(flt.sources))})")
        params += list(flt.sources)
    return " AND ".join(where), params


def _background_sources(reg: Any, flt: DatasetFilter) -> list[tuple[str, str | None, int]]:
    """``(source_id, content_hash, 0)`` of image sources without any non-rejected object that
    match the filter's ``project`` and ``sources`` (the object-level criteria do not apply)."""
    where = ["s.source_type = 'image'",
             "NOT EXISTS (SELECT 1 FROM objects o WHERE o.source_id = s.source_id"
             " AND o.validation_status <> 'rejected')"]
    params: list = []
    if flt.project:
        where.append("s.project_id = ?")
        params.append(flt.project)
    if flt.sources:
        where.append(f"s.source_id IN ({','.join('?' * len(flt.sources))})")
        params += list(flt.sources)
    rows = reg.db.execute(
        f"SELECT s.source_id, s.content_hash FROM sources s WHERE {' AND '.join(where)} ORDER BY s.source_id",
        params,
    ).fetchall()
    return [(sid, h, 0) for sid, h in rows]


def _source_mean_embeddings(reg: Any, where: str, params: list) -> tuple[list[str], np.ndarray]:
    """Mean embedding per source over the selected objects (one embedding version: the most common)."""
    row = reg.db.execute(
        f"SELECT e.version_id, count(*) FROM embeddings e JOIN objects o USING (object_id) "
        f"WHERE {where} GROUP BY e.version_id ORDER BY count(*) DESC LIMIT 1",
        params,
    ).fetchone()
    if row is None:
        return [], np.zeros((0, 0), np.float32)
    version = row[0]
    sums: dict[str, np.ndarray] = {}
    counts: Counter = Counter()
    cursor = reg.db.execute(
        f"SELECT o.source_id, e.vector FROM embeddings e JOIN objects o USING (object_id) "
        f"WHERE {where} AND e.version_id = ?",
        [*params, version],
    )
    for source_id, blob in cursor:
        vec = np.frombuffer(blob, dtype="<f4").astype(np.float64)
        if source_id in sums:
            sums[source_id] += vec
        else:
            sums[source_id] = vec.copy()
        counts[source_id] += 1
    ids = sorted(sums)
    if not ids:
        return [], np.zeros((0, 0), np.float32)
    return ids, np.stack([sums[s] / counts[s] for s in ids]).astype(np.float32)


def build_dataset(
    reg: Any,
    name: str,
    filter: DatasetFilter | dict | None = None,  # noqa: A002 - the spec's word
    split: str | Sequence[float] | dict | None = None,
    seed: int = 0,
    *,
    near_duplicate_threshold: float | None = NEAR_DUPLICATE_THRESHOLD,
    fmt: str = "yolo",
    dry_run: bool = False,
    include_background: bool = True,
) -> dict:
    """Builds (a new version of) a dataset: selects objects, splits them, stores the membership.

    Args:
        reg: the :class:`registry.facade.Registry`.
        name: dataset name; an existing name gets a new version.
        filter: a :class:`DatasetFilter` or its dict form.
        split: ratios (see :func:`parse_split`); default 0.8/0.1/0.1.
        seed: the split seed (any int).
        near_duplicate_threshold: cosine threshold for near-duplicate sources; ``None`` disables.
        fmt: the format recorded in the row (export may use another).
        dry_run: compute the split and its counts without storing anything (the Export tab's
            preview): ``dataset_id`` is then ``None`` and ``version`` is the number a real
            build would get.
        include_background: also split the matching image sources that have no objects
            (background images, see the module doc).

    Returns:
        ``{"dataset_id", "name", "version", "object_count", "image_count", "group_count",
        "background_images", "splits": {split: {"images", "objects", "background", "classes":
        {name: n}}}, "ratios": {split:
        achieved fraction of images}, "object_ratios": {split: fraction of objects},
        "target_ratios", "seed", "filter", "category_mapping"}``.

    Raises:
        ValueError: bad ratios, unknown category names, or nothing matches the filter.
    """
    if not name or not str(name).strip():
        raise ValueError("expected a dataset name, got an empty string")
    flt = filter if isinstance(filter, DatasetFilter) else DatasetFilter.from_dict(filter)
    ratios = parse_split(split)
    seed = int(seed)
    where, params = select_objects_sql(reg, flt)

    # Per source: object count and content hash. Grouping keys only: bounded by #sources.
    rows = reg.db.execute(
        f"SELECT o.source_id, s.content_hash, count(*) FROM objects o "
        f"JOIN sources s ON s.source_id = o.source_id WHERE {where} GROUP BY o.source_id",
        params,
    ).fetchall()
    if not rows:
        raise ValueError(
            f"no objects match the filter {flt.to_dict()}; loosen it (categories, "
            "min_confidence, validated_only, project, sources)"
        )
    background = _background_sources(reg, flt) if include_background else []
    rows = list(rows) + background
    uf = _Groups()
    by_hash: dict[str, str] = {}
    for source_id, content_hash, _n in rows:
        uf.add(source_id)
        if content_hash:
            if content_hash in by_hash:
                uf.union(by_hash[content_hash], source_id)
            else:
                by_hash[content_hash] = source_id
    # Tracks: every source holding an object of the same track joins one group.
    track_rows = reg.db.execute(
        f"SELECT t.track_id, o.source_id FROM track_objects t JOIN objects o USING (object_id) "
        f"WHERE {where} ORDER BY t.track_id",
        params,
    )
    first_of_track: dict[str, str] = {}
    for track_id, source_id in track_rows:
        if track_id in first_of_track:
            uf.union(first_of_track[track_id], source_id)
        else:
            first_of_track[track_id] = source_id
    if near_duplicate_threshold is not None:
        ids, means = _source_mean_embeddings(reg, where, params)
        for a, b in _near_duplicate_pairs(ids, means, float(near_duplicate_threshold)):
            uf.union(a, b)

    group_images: Counter = Counter()
    with_objects: set[str] = set()
    for source_id, _h, n in rows:
        root = uf.find(source_id)
        group_images[root] += 1
        if n:
            with_objects.add(root)
    groups = [(_order_key(seed, key), key, n) for key, n in group_images.items()]
    # Groups with objects are split first, exactly as without background images (adding
    # background images never moves an object); background-only groups are split by the same
    # ratios on their own.
    group_split = _assign([g for g in groups if g[1] in with_objects], ratios)
    group_split.update(_assign([g for g in groups if g[1] not in with_objects], ratios))
    source_split = {source_id: group_split[uf.find(source_id)] for source_id, _h, _n in rows}
    background_split: dict[str, list[str]] = {sp: [] for sp in SPLITS}
    for source_id, _h, _n in background:
        background_split[source_split[source_id]].append(source_id)

    # Versioning and membership, in one transaction (nothing is written on a dry run).
    categories = {int(c["category_id"]): c["name"] for c in reg.list_categories()}
    if dry_run:
        dataset_id = None
        version = _next_version(reg, name)
        counts, mapping = _count_members(reg, where, params, source_split, categories, None)
    else:
        dataset_id = new_id("ds")
        with reg.transaction():
            version = _next_version(reg, name)
            reg.db.execute(
                "INSERT INTO datasets (dataset_id, name, format, version, split_config,"
                " filter_config, category_mapping, object_count, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
                [
                    dataset_id,
                    name,
                    fmt,
                    str(version),
                    json.dumps({**ratios, "seed": seed, "unit": "source",
                                "near_duplicate_threshold": near_duplicate_threshold,
                                "background_sources": {sp: ids for sp, ids in background_split.items() if ids}}),
                    json.dumps(flt.to_dict()),
                    "{}",
                    utc_now(),
                ],
            )
            counts, mapping = _count_members(reg, where, params, source_split, categories, dataset_id)
            reg.db.execute(
                "UPDATE datasets SET object_count = ?, category_mapping = ? WHERE dataset_id = ?",
                [sum(c["objects"] for c in counts.values()), json.dumps(mapping), dataset_id],
            )
    total_objects = sum(c["objects"] for c in counts.values())
    for sp in source_split.values():
        counts[sp]["images"] += 1
    total_images = len(source_split)
    for sp, ids in background_split.items():
        counts[sp]["background"] = len(ids)
    return {
        "dataset_id": dataset_id,
        "name": name,
        "version": version,
        "object_count": total_objects,
        "image_count": total_images,
        "group_count": len(groups),
        "background_images": len(background),
        "splits": {s: {"images": c["images"], "objects": c["objects"], "background": c.get("background", 0),
                       "classes": dict(sorted(c["classes"].items()))} for s, c in counts.items()},
        "ratios": {s: counts[s]["images"] / total_images for s in SPLITS},
        "object_ratios": {s: counts[s]["objects"] / max(total_objects, 1) for s in SPLITS},
        "target_ratios": ratios,
        "seed": seed,
        "filter": flt.to_dict(),
        "category_mapping": mapping,
    }


def _next_version(reg: Any, name: str) -> int:
    prev = reg.db.execute("SELECT version FROM datasets WHERE name = ?", [name]).fetchall()
    return 1 + max((_version_number(v[0]) for v in prev), default=0)


def _count_members(
    reg: Any,
    where: str,
    params: list,
    source_split: dict[str, str],
    categories: dict[int, str],
    dataset_id: str | None,
) -> tuple[dict, dict]:
    """Counts objects per split and class; inserts membership rows when ``dataset_id`` is set.

    Returns ``(counts, category_mapping)``; counts hold ``images`` (filled by the caller),
    ``objects`` and ``classes`` per split.
    """
    batch: list[tuple] = []
    # fetchall: the inserts below run on the same connection as this read.
    rows = reg.db.execute(
        f"SELECT o.object_id, o.source_id, o.category_id FROM objects o WHERE {where}", params
    ).fetchall()
    counts = {s: {"images": 0, "objects": 0, "classes": Counter()} for s in SPLITS}
    used_categories: set[int] = set()
    for object_id, source_id, category_id in rows:
        sp = source_split[source_id]
        counts[sp]["objects"] += 1
        counts[sp]["classes"][categories.get(int(category_id), str(category_id))] += 1
        used_categories.add(int(category_id))
        if dataset_id is not None:
            batch.append((dataset_id, object_id, sp))
            if len(batch) >= 5000:
                _insert_members(reg, batch)
                batch = []
    if dataset_id is not None:
        _insert_members(reg, batch)
    return counts, _category_mapping(used_categories, categories)

def _insert_members(reg: Any, batch: list[tuple]) -> None:
    if batch:
        conn = getattr(reg.db, "conn", None)
        if conn is not None:
            conn.executemany(
                "INSERT INTO dataset_objects (dataset_id, object_id, split) VALUES (?, ?, ?)", batch
            )
        else:
            for row in batch:
                reg.db.execute(
                    "INSERT INTO dataset_objects (dataset_id, object_id, split) VALUES (?, ?, ?)", row
                )


def _category_mapping(used: set[int], names: dict[int, str]) -> dict:
    """Class ids per format. COCO ids are the registry's category ids (≥ 1, stable across every
    export of the same registry); YOLO ids are 0..n-1 over the dataset's categories in registry
    category-id order."""
    ordered = sorted(used)
    return {
        "categories": [
            {"category_id": cid, "name": names.get(cid, str(cid)), "coco_id": cid, "yolo_id": i}
            for i, cid in enumerate(ordered)
        ]
    }
