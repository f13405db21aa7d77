"""Writing a registration batch: multi-row INSERTs, and a pipelined path for large batches.

Why multi-row ``INSERT ... VALUES (...), (...)``: ``executemany`` resets, binds and steps once
per row, releasing and re-taking the GIL around every ``sqlite3_step``; one statement of 64
rows is one step. On the ingest rows (28 columns, 8 indexes, 3 KB embedding blobs) it wrote
~20 % more objects per second than ``executemany`` of the same rows.

Why a pipeline: because one statement is one step with the GIL released, a writer thread can
insert chunk ``k`` while the calling thread validates, deduplicates and builds the rows of
chunk ``k + 1`` (pure Python / numpy). With ``executemany`` it could not: the writer needs the
GIL back after every row, and waits for the switch interval (5 ms) each time.

Thread safety: the caller holds :meth:`registry.db.Connection.transaction` for the whole call
(the process-wide writer lock and the connection lock, both owned by the calling thread), so no
other thread of the app (search, relay) can touch the connection meanwhile. Inside the call one
thread at a time uses it: the calling thread runs SQL only before the first writer starts (the
reads and category creation of :func:`plan`) and after the last writer is joined (COMMIT or
ROLLBACK in ``Connection.transaction``); each writer is joined before the next one starts, and
on every exit path (an error included) before the function returns.
"""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from registry import dedupe as overlap
from registry.categories import check_category_name, name_key, resolve_category_tx
from registry.records import ObjectIn

#: Objects per pipeline chunk; batches under two chunks' worth take the serial path.
CHUNK = 128
#: Rows per INSERT statement at most (fewer where SQLite's bound-parameter limit is lower).
STMT_ROWS = 64

OBJECT_COLUMNS = (
    "object_id, source_id, category_id, frame_id, project_id, bbox_x, bbox_y, bbox_w, bbox_h, mask_counts, "
    "mask_h, mask_w, area, confidence, detection_model, classification_model, classification_confidence, "
    "is_validated, validation_status, validated_by, validated_at, quality_score, is_occluded, is_truncated, "
    "is_difficult, metadata, created_at, updated_at"
)
_TABLES = {  # name -> (INSERT head, one row's placeholders, values per row)
    "objects": (f"INSERT INTO objects ({OBJECT_COLUMNS}) VALUES ", "(" + ",".join("?" * 28) + ")", 28),
    "embeddings": ("INSERT INTO embeddings (object_id, version_id, dim, vector) VALUES ", "(?,?,?,?)", 4),
    "outbox": ("INSERT INTO embedding_outbox (object_id, version_id, operation) VALUES ", "(?,?,'upsert')", 2),
}
_SQL: dict[tuple[str, int], str] = {}


@dataclass
class Rows:
    """One chunk's rows as flat parameter lists (values of row after row)."""

    objects: list
    embeddings: list
    outbox: list


def insert_rows(tx: sqlite3.Connection, rows: Rows) -> None:
    """Inserts the rows with statements of ``STMT_ROWS``, 32, 16, ... 1 rows (a few distinct
    statement texts, so sqlite3's statement cache keeps them compiled)."""
    limit = _variable_limit(tx)
    for table, flat in (("objects", rows.objects), ("embeddings", rows.embeddings), ("outbox", rows.outbox)):
        head, one, width = _TABLES[table]
        n = len(flat) // width
        top = STMT_ROWS
        while top > 1 and top * width > limit:
            top //= 2
        start = 0
        for size in _piece_sizes(n, top):
            sql = _SQL.get((table, size))
            if sql is None:
                sql = _SQL[(table, size)] = head + ",".join([one] * size)
            tx.execute(sql, flat[start * width:(start + size) * width])
            start += size


def _piece_sizes(n: int, top: int) -> list[int]:
    """``n`` as ``top``-row pieces, then a binary decomposition of the rest (``top`` a power of 2)."""
    out = [top] * (n // top)
    rest, size = n % top, top // 2
    while rest:
        if rest >= size:
            out.append(size)
            rest -= size
        size //= 2
    return out


def _variable_limit(tx: sqlite3.Connection) -> int:
    try:
        return int(tx.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    except (AttributeError, sqlite3.Error):  # Python < 3.11: the historical default
        return 999


def chunk_bounds(n: int) -> list[tuple[int, int]]:
    """``(start, end)`` of the pipeline's chunks: ``n // CHUNK`` chunks of near-equal size."""
    k = max(1, n // CHUNK)
    edges = [n * i // k for i in range(k + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


# -- the SQL done before the first writer starts ---------------------------------------------------
@dataclass
class Plan:
    """What the pipelined path reads (and creates) up front.

    Attributes:
        category_ids: checked category name -> category id (created where unknown).
        frames: frame id (None = the source's image) -> its deduplication state.
    """

    category_ids: dict[str, int]
    frames: dict


def plan(tx: sqlite3.Connection, source_id: str, objects: Sequence[ObjectIn], *, dedupe: bool, iou: float,
         stored) -> Plan | None:
    """Checks frames and category names, resolves (creates) categories in input order and reads
    the stored objects for dedupe, all before any row of the batch is written.

    Returns None where an input is irregular (not an ObjectIn, a bad name, an unknown frame, an
    unhashable frame id): the caller then takes the serial path, which words the same error as
    it always has. ``stored(frame_id, category_ids)`` reads ``(ids, Items)`` of stored objects.
    """
    names: dict[str, str] = {}
    order: list[str] = []  # checked names in first-appearance order
    per_frame: dict = {}
    for obj in objects:
        if not isinstance(obj, ObjectIn) or type(obj.category) is not str:
            return None
        raw = obj.category
        name = names.get(raw)
        if name is None:
            try:
                name = names[raw] = check_category_name(raw)
            except ValueError:
                return None
            order.append(name)
        try:
            per_frame.setdefault(obj.frame_id, set()).add(name)
        except TypeError:
            return None
    for fid in per_frame:
        if fid is None:
            continue
        row = tx.execute("SELECT source_id FROM frames WHERE frame_id = ?", (fid,)).fetchone()
        if row is None or row[0] != source_id:
            return None
    keys = {name: name_key(name) for name in order}
    wanted = sorted(set(keys.values()))
    by_key: dict[str, int] = {}
    for start in range(0, len(wanted), 10_000):  # below SQLite's bound-parameter limit
        part = wanted[start:start + 10_000]
        by_key.update(tx.execute(
            f"SELECT name_key, category_id FROM category_names WHERE name_key IN ({','.join('?' * len(part))})",
            part,
        ).fetchall())
    category_ids: dict[str, int] = {}
    for name in dict.fromkeys(names.values()):  # input order, as the serial path creates them
        key = keys[name]
        if key not in by_key:
            by_key[key] = resolve_category_tx(tx, name)
        category_ids[name] = by_key[key]
    frames = {}
    if dedupe:
        for fid, cats in per_frame.items():
            ids, items = stored(fid, sorted({category_ids[c] for c in cats}))
            frames[fid] = FrameDedupe(ids, items, iou)
    return Plan(category_ids, frames)


# -- dedupe, one chunk at a time -------------------------------------------------------------------
class FrameDedupe:
    """:func:`registry.dedupe.find_duplicates` of one frame's items, fed a chunk at a time.

    Same answer as one call on the whole batch: each item is compared with the stored objects
    (best match wins, ties to the first stored one), then with the EARLIER items of the batch
    that were kept (best match, ties to the earliest), in input order. The kept items of the
    chunks so far are held in memory (as :class:`~registry.dedupe.Items`, caches included), so
    this batch's uncommitted rows are never read back. Rows of a chunk are only compared with
    columns before them; kept items never need re-checking (kept means nothing earlier matched).
    """

    def __init__(self, stored_ids: list[str], stored: overlap.Items, iou: float) -> None:
        self.stored_ids, self.stored, self.iou = stored_ids, stored, iou
        self.stored_ext = stored.extent_xyxy() if len(stored) else None
        self.kept: overlap.Items | None = None
        self.kept_ext = np.zeros((0, 4))
        self.kept_ids: list[str] = []

    def run(self, items: list[dict]) -> dict[int, str]:
        """``chunk index -> id it duplicates`` for the chunk's items (in input order)."""
        t = self.iou
        new = overlap.Items.build([it["category_id"] for it in items], [it["box"] for it in items],
                                  [it["rle"] for it in items], [it["area"] for it in items],
                                  [it["coco"] for it in items], [it["mask_box"] for it in items])
        ext_new = new.extent_xyxy()
        dup: dict[int, str] = {}
        if self.stored_ext is not None:
            cand = overlap._candidate_chunks(new.category, ext_new, self.stored.category, self.stored_ext, lower=False)
            for pi, pj in cand:
                pi, pj, v = overlap._over(new, self.stored, pi, pj, t)
                for i, j in zip(*overlap._best_per_row(pi, pj, v), strict=True):
                    dup[int(i)] = self.stored_ids[int(j)]
        m = 0 if self.kept is None else len(self.kept)
        cols = new if self.kept is None else _concat(self.kept, new)
        col_ids = self.kept_ids + [it["object_id"] for it in items]
        kept = np.ones(len(cols), dtype=bool)
        if dup:
            kept[[m + i for i in dup]] = False
        ext_cols = ext_new if m == 0 else np.concatenate([self.kept_ext, ext_new])
        for pi, pj in overlap._candidate_chunks(new.category, ext_new, cols.category, ext_cols, lower=False):
            pi = pi + m
            keep = (pj < pi) & kept[pi] & kept[pj]  # earlier columns only; kept only turns False
            pi, pj, v = overlap._over(cols, cols, pi[keep], pj[keep], t)
            if not pi.size:
                continue
            # As find_duplicates: rows in input order, pairs best first (IoU desc, earliest j).
            order = np.lexsort((pj, -v, pi))
            pi, pj = pi[order], pj[order]
            starts = np.flatnonzero(np.r_[True, pi[1:] != pi[:-1]])
            ends = np.r_[starts[1:], pi.size]
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
                i = int(pi[s])
                if not kept[i]:
                    continue
                hit = np.flatnonzero(kept[pj[s:e]])  # kept is final for every j < i by now
                if hit.size:
                    kept[i] = False
                    dup[i - m] = col_ids[int(pj[s + hit[0]])]
        keep_idx = np.flatnonzero(kept)
        self.kept = _take(cols, keep_idx)
        self.kept_ext = ext_cols[keep_idx]
        self.kept_ids = [col_ids[k] for k in keep_idx.tolist()]
        return dup


def _mask_box_array(items: overlap.Items) -> np.ndarray:
    return items._mask_box if items._mask_box is not None else np.full((len(items), 4), np.nan)


def _concat(a: overlap.Items, b: overlap.Items) -> overlap.Items:
    return overlap.Items(
        category=np.concatenate([a.category, b.category]), box=np.concatenate([a.box, b.box]),
        rle=a.rle + b.rle, area=np.concatenate([a.area, b.area]),
        _mask_box=np.concatenate([_mask_box_array(a), _mask_box_array(b)]),
        _coco=(a._coco or [None] * len(a)) + (b._coco or [None] * len(b)),
    )


def _take(a: overlap.Items, idx: np.ndarray) -> overlap.Items:
    ks = idx.tolist()
    coco = a._coco or [None] * len(a)
    return overlap.Items(category=a.category[idx], box=a.box[idx], rle=[a.rle[k] for k in ks], area=a.area[idx],
                         _mask_box=_mask_box_array(a)[idx], _coco=[coco[k] for k in ks])


# -- the writer thread -----------------------------------------------------------------------------
class Writer:
    """Inserts one chunk's rows on a thread; :meth:`join` re-raises what the insert raised."""

    def __init__(self, tx: sqlite3.Connection, rows: Rows) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(tx, rows), name="registry-ingest-writer",
                                       daemon=True)
        self.thread.start()

    def _run(self, tx: sqlite3.Connection, rows: Rows) -> None:
        try:
            insert_rows(tx, rows)
        except BaseException as exc:  # handed to the calling thread by join()
            self.error = exc

    def join(self) -> None:
        self.thread.join()
        if self.error is not None:
            err, self.error = self.error, None
            raise err
