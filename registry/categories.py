"""Categories: names, synonyms, colours, and the SQL that creates, renames and merges them.

A category is found by its name or any synonym through ``category_names.name_key``
(:func:`name_key`: NFC, case-folded, stripped), so lookups are case-insensitive and a key
names at most one category.
"""
from __future__ import annotations

import colorsys
import hashlib
import json
import sqlite3
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from registry import outbox
from registry.db import Connection

MAX_CATEGORY_NAME = 200


def name_key(name: str) -> str:
    """The lookup key of a category name or synonym: NFC-normalised, case-folded, stripped."""
    return unicodedata.normalize("NFC", name).strip().casefold()


def check_category_name(name: Any, *, what: str = "category name") -> str:
    """Returns the stripped name, or raises ValueError for empty/overlong/control-character names.

    Quotes, semicolons, slashes and any printable unicode are stored as given (SQL is always
    parameterised); the limit is :data:`MAX_CATEGORY_NAME` characters.
    """
    if not isinstance(name, str):
        raise ValueError(f"expected a {what} as str, got {type(name).__name__}")
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned:
        raise ValueError(f"expected a non-empty {what}, got {name!r}")
    if len(cleaned) > MAX_CATEGORY_NAME:
        raise ValueError(
            f"expected a {what} of at most {MAX_CATEGORY_NAME} characters, got {len(cleaned)}; shorten it"
        )
    bad = [ch for ch in cleaned if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn")]
    if bad:
        raise ValueError(
            f"expected a {what} without control/invisible characters, got {cleaned[:40]!r} "
            f"containing {bad[0]!r}; remove them"
        )
    return cleaned


def stable_color(name: str) -> str:
    """A colour derived from the name's hash: the same name always gets the same ``#rrggbb``."""
    digest = hashlib.sha256(name_key(name).encode("utf-8")).digest()
    hue = int.from_bytes(digest[:2], "big") / 65536.0
    sat = 0.55 + (digest[2] / 255.0) * 0.35
    val = 0.80 + (digest[3] / 255.0) * 0.15
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def category_dict(row: dict) -> dict:
    """A ``categories`` row as the dict the registry returns (``synonyms`` decoded)."""
    return {
        "category_id": row["category_id"],
        "name": row["name"],
        "supercategory": row["supercategory"],
        "synonyms": json.loads(row["synonyms"] or "[]"),
        "color": row["color"],
        "description": row["description"],
        "created_at": row["created_at"],
    }


def get_category(conn: Connection, name_or_synonym: str) -> dict | None:
    """The category a name or synonym (case-insensitive) refers to, or None."""
    if not isinstance(name_or_synonym, str):
        return None
    rows = conn.query(
        "SELECT c.* FROM category_names n JOIN categories c USING (category_id) WHERE n.name_key = ?",
        (name_key(name_or_synonym),),
    )
    return category_dict(rows[0]) if rows else None


def category_by_id(conn: Connection, category_id: int) -> dict:
    """The category row with id ``category_id`` as a dict."""
    rows = conn.query("SELECT * FROM categories WHERE category_id = ?", (category_id,))
    return category_dict(rows[0])


def resolve_category_tx(tx: sqlite3.Connection, name: str, *, create: bool = True) -> int | None:
    """The id ``name`` (a checked name or synonym) refers to; created when unknown and ``create``."""
    key = name_key(name)
    row = tx.execute("SELECT category_id FROM category_names WHERE name_key = ?", (key,)).fetchone()
    if row is not None:
        return int(row[0])
    if not create:
        return None
    cur = tx.execute("INSERT INTO categories (name, color) VALUES (?, ?)", (name, stable_color(name)))
    cid = int(cur.lastrowid)
    tx.execute("INSERT INTO category_names (name_key, category_id, is_synonym) VALUES (?, ?, 0)", (key, cid))
    return cid


def add_keys_tx(tx: sqlite3.Connection, category_id: int, names: Iterable[str], is_synonym: int) -> None:
    """Points the lookup keys of ``names`` at ``category_id``; ValueError if one names another."""
    for n in names:
        key = name_key(n)
        row = tx.execute("SELECT category_id FROM category_names WHERE name_key = ?", (key,)).fetchone()
        if row is not None and int(row[0]) != category_id:
            other = tx.execute("SELECT name FROM categories WHERE category_id = ?", (row[0],)).fetchone()[0]
            raise ValueError(
                f"expected {n!r} to be a free name or synonym, got it already naming category {other!r}; "
                "merge the categories or pick another name"
            )
        tx.execute(
            "INSERT OR REPLACE INTO category_names (name_key, category_id, is_synonym) VALUES (?, ?, ?)",
            (key, category_id, is_synonym),
        )


def create_category(
    conn: Connection,
    name: str,
    *,
    supercategory: str | None = None,
    synonyms: Sequence[str] = (),
    color: str | None = None,
    description: str | None = None,
) -> dict:
    """Creates a category; ValueError if the name or a synonym already names one."""
    name = check_category_name(name)
    if isinstance(synonyms, str):
        synonyms = [synonyms]
    syns = [check_category_name(s, what="synonym") for s in synonyms]
    syns = [s for s in dict.fromkeys(syns) if name_key(s) != name_key(name)]
    if supercategory is not None:
        supercategory = check_category_name(supercategory, what="supercategory")
    color = check_color(color) if color is not None else stable_color(name)
    with conn.transaction() as tx:
        if tx.execute("SELECT 1 FROM category_names WHERE name_key = ?", (name_key(name),)).fetchone():
            raise ValueError(f"expected a new category name, got {name!r} which already exists; use get_category()")
        cur = tx.execute(
            "INSERT INTO categories (name, supercategory, synonyms, color, description) VALUES (?, ?, ?, ?, ?)",
            (name, supercategory, json.dumps(syns, ensure_ascii=False), color, description),
        )
        cid = int(cur.lastrowid)
        add_keys_tx(tx, cid, [name], 0)
        add_keys_tx(tx, cid, syns, 1)
    return category_by_id(conn, cid)


def check_color(color: str) -> str:
    """``color`` as lower-case ``#rrggbb``; ValueError for anything else."""
    c = str(color).strip()
    if len(c) != 7 or c[0] != "#" or any(ch not in "0123456789abcdefABCDEF" for ch in c[1:]):
        raise ValueError(f"expected a colour like '#1f77b4', got {color!r}")
    return c.lower()


def list_categories(conn: Connection) -> list[dict]:
    """All categories by name, each with ``object_count``."""
    rows = conn.query(
        """SELECT c.*, (SELECT count(*) FROM objects o WHERE o.category_id = c.category_id) AS object_count
           FROM categories c ORDER BY c.name COLLATE NOCASE, c.category_id"""
    )
    out = []
    for r in rows:
        d = category_dict(r)
        d["object_count"] = r["object_count"]
        out.append(d)
    return out


def require_category(tx: sqlite3.Connection, name: str) -> int:
    """The id of an existing category; ValueError naming it otherwise."""
    cid = resolve_category_tx(tx, check_category_name(name), create=False)
    if cid is None:
        raise ValueError(f"unknown category {name!r}; see list_categories()")
    return cid


def rename_category(conn: Connection, old: str, new: str, version: str) -> int:
    """Renames a category (its id, objects and synonyms stay); returns its id.

    The renamed objects' vectors of ``version`` are queued for the index (the caller relays)."""
    new = check_category_name(new)
    with conn.transaction() as tx:
        cid = require_category(tx, old)
        old_name = tx.execute("SELECT name FROM categories WHERE category_id = ?", (cid,)).fetchone()[0]
        add_keys_tx(tx, cid, [new], 0)
        if name_key(old_name) != name_key(new):
            tx.execute("DELETE FROM category_names WHERE name_key = ? AND category_id = ?", (name_key(old_name), cid))
        syns = [s for s in json.loads(
            tx.execute("SELECT synonyms FROM categories WHERE category_id = ?", (cid,)).fetchone()[0])
            if name_key(s) != name_key(new)]
        tx.execute(
            "UPDATE categories SET name = ?, synonyms = ? WHERE category_id = ?",
            (new, json.dumps(syns, ensure_ascii=False), cid),
        )
        # The index filters on the category *name*: re-send these objects' metadata.
        moved = [r[0] for r in tx.execute(
            "SELECT o.object_id FROM objects o JOIN embeddings e ON e.object_id = o.object_id AND e.version_id = ? "
            "WHERE o.category_id = ?", (version, cid))]
        outbox.enqueue_tx(tx, moved, version, "upsert")
    return cid


def add_synonyms(conn: Connection, name: str, synonyms: Sequence[str]) -> dict:
    """Adds synonyms (case-insensitive lookup keys) to a category."""
    if isinstance(synonyms, str):
        synonyms = [synonyms]
    syns = [check_category_name(s, what="synonym") for s in synonyms]
    with conn.transaction() as tx:
        cid = require_category(tx, name)
        row = tx.execute("SELECT name, synonyms FROM categories WHERE category_id = ?", (cid,)).fetchone()
        current = json.loads(row[1] or "[]")
        keys = {name_key(s) for s in current} | {name_key(row[0])}
        added = [s for s in dict.fromkeys(syns) if name_key(s) not in keys]
        add_keys_tx(tx, cid, added, 1)
        tx.execute(
            "UPDATE categories SET synonyms = ? WHERE category_id = ?",
            (json.dumps(current + added, ensure_ascii=False), cid),
        )
    return category_by_id(conn, cid)


def merge_categories(conn: Connection, src: str, dst: str, version: str) -> int:
    """Moves every object (and track) of ``src`` into ``dst``; ``src`` becomes a synonym of it.

    Returns the id of ``dst``; the moved objects' vectors of ``version`` are queued for the index."""
    with conn.transaction() as tx:
        sid = require_category(tx, src)
        did = require_category(tx, dst)
        if sid == did:
            raise ValueError(f"expected two different categories to merge, got {src!r} and {dst!r} naming the same one")
        src_name, src_syns = tx.execute("SELECT name, synonyms FROM categories WHERE category_id = ?", (sid,)).fetchone()
        moved = [r[0] for r in tx.execute(
            "SELECT o.object_id FROM objects o JOIN embeddings e ON e.object_id = o.object_id AND e.version_id = ? "
            "WHERE o.category_id = ?", (version, sid))]
        tx.execute("UPDATE objects SET category_id = ? WHERE category_id = ?", (did, sid))
        tx.execute("UPDATE tracks SET category_id = ? WHERE category_id = ?", (did, sid))
        tx.execute("UPDATE category_names SET category_id = ?, is_synonym = 1 WHERE category_id = ?", (did, sid))
        dst_syns = json.loads(tx.execute("SELECT synonyms FROM categories WHERE category_id = ?", (did,)).fetchone()[0])
        merged = list(dict.fromkeys(dst_syns + [src_name] + json.loads(src_syns or "[]")))
        tx.execute("UPDATE categories SET synonyms = ? WHERE category_id = ?", (json.dumps(merged, ensure_ascii=False), did))
        tx.execute("DELETE FROM categories WHERE category_id = ?", (sid,))
        outbox.enqueue_tx(tx, moved, version, "upsert")
    return did


def category_ids_for(conn: Connection, category: str | Sequence[str]) -> list[int]:
    """The ids that a name/synonym or a list of them refer to (unknown names are left out)."""
    names = [category] if isinstance(category, str) else list(category)
    ids = []
    for n in names:
        if not isinstance(n, str):
            raise ValueError(f"expected category names as str, got {type(n).__name__}")
        row = conn.scalar("SELECT category_id FROM category_names WHERE name_key = ?", (name_key(n),))
        if row is not None:
            ids.append(int(row))
    return ids
