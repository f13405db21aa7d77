"""The registry's SQLite schema, its version, and in-place upgrades of older databases.

Conventions stored in the tables:

* Boxes are ``bbox_x, bbox_y, bbox_w, bbox_h``: xywh, absolute pixels of the source image,
  (x, y) = (column, row) of the top-left corner.
* Masks are compressed COCO RLE in the object row: ``mask_counts`` (the RLE ``counts`` string,
  column-major as pycocotools writes it) with ``mask_h``/``mask_w`` = the source image's size.
* Timestamps are UTC ISO-8601 strings with milliseconds (``2025-01-31T12:00:00.123Z``), so
  string order is time order.
* ``embeddings`` holds every object's vector (float32 little-endian bytes): the source of truth
  from which the vector index can always be rebuilt. ``embedding_outbox`` queues the index
  changes (upsert/delete) written in the same transaction as the rows they describe.

Versions:

* 1: the layout of the original spec: no ``validation_status`` (only ``is_validated``), no
  ``embeddings`` table (vectors only as outbox BLOBs), no name lookup table.
* 2: ``validation_status``, ``embeddings``, ``category_names``.
* 3: the current layout (this file's ``SCHEMA``): ``runs`` (training runs) and ``run_epochs``
  (their per-epoch losses and metrics), see :mod:`registry.runs`.

:func:`ensure_schema` creates a fresh database at the current version or upgrades an older one in
place, inside one write transaction.
"""
from __future__ import annotations

import json
import sqlite3

from registry.db import Connection

SCHEMA_VERSION = 3

NOW = "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"

# Tables of version 3 (current). Kept as plain DDL so `sqlite3 registry.db .schema` reads the same.
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER NOT NULL,
    applied_at  TEXT NOT NULL DEFAULT {NOW}
);

CREATE TABLE IF NOT EXISTS sources (
    source_id    TEXT PRIMARY KEY CHECK (source_id LIKE 'src\\_%' ESCAPE '\\'),
    source_type  TEXT NOT NULL CHECK (source_type IN ('image', 'video', 'text')),
    file_path    TEXT,
    file_name    TEXT,
    width        INTEGER CHECK (width IS NULL OR width > 0),
    height       INTEGER CHECK (height IS NULL OR height > 0),
    frame_count  INTEGER CHECK (frame_count IS NULL OR frame_count >= 0),
    fps          REAL CHECK (fps IS NULL OR fps > 0),
    content_hash TEXT UNIQUE,
    project_id   TEXT,
    metadata     TEXT CHECK (metadata IS NULL OR json_valid(metadata)),
    created_at   TEXT NOT NULL DEFAULT {NOW}
);

CREATE TABLE IF NOT EXISTS frames (
    frame_id   TEXT PRIMARY KEY CHECK (frame_id LIKE 'frm\\_%' ESCAPE '\\'),
    source_id  TEXT NOT NULL REFERENCES sources(source_id) ON DELETE CASCADE,
    frame_idx  INTEGER NOT NULL CHECK (frame_idx >= 0),
    timestamp  REAL,
    file_path  TEXT,
    created_at TEXT NOT NULL DEFAULT {NOW},
    UNIQUE (source_id, frame_idx)
);

CREATE TABLE IF NOT EXISTS categories (
    category_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    supercategory TEXT,
    synonyms      TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(synonyms)),
    color         TEXT NOT NULL DEFAULT '#808080' CHECK (color GLOB '#[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]'),
    description   TEXT,
    created_at    TEXT NOT NULL DEFAULT {NOW}
);

-- Case-folded names *and* synonyms -> category: one key can name one category only.
CREATE TABLE IF NOT EXISTS category_names (
    name_key    TEXT PRIMARY KEY,
    category_id INTEGER NOT NULL REFERENCES categories(category_id) ON DELETE CASCADE,
    is_synonym  INTEGER NOT NULL DEFAULT 0 CHECK (is_synonym IN (0, 1))
);

CREATE TABLE IF NOT EXISTS objects (
    object_id      TEXT PRIMARY KEY CHECK (object_id LIKE 'obj\\_%' ESCAPE '\\'),
    source_id      TEXT NOT NULL REFERENCES sources(source_id) ON DELETE CASCADE,
    category_id    INTEGER NOT NULL REFERENCES categories(category_id),
    frame_id       TEXT REFERENCES frames(frame_id) ON DELETE SET NULL,
    project_id     TEXT,
    bbox_x         REAL NOT NULL CHECK (bbox_x >= 0),
    bbox_y         REAL NOT NULL CHECK (bbox_y >= 0),
    bbox_w         REAL NOT NULL CHECK (bbox_w >= 0),
    bbox_h         REAL NOT NULL CHECK (bbox_h >= 0),
    mask_counts    TEXT,
    mask_h         INTEGER,
    mask_w         INTEGER,
    mask_path      TEXT,
    polygon        TEXT,
    area           REAL CHECK (area IS NULL OR area >= 0),
    confidence     REAL CHECK (confidence IS NULL OR confidence BETWEEN 0 AND 1),
    detection_model           TEXT,
    classification_model      TEXT,
    classification_confidence REAL CHECK (classification_confidence IS NULL OR classification_confidence BETWEEN 0 AND 1),
    is_validated      INTEGER NOT NULL DEFAULT 0 CHECK (is_validated IN (0, 1)),
    validation_status TEXT NOT NULL DEFAULT 'pending' CHECK (validation_status IN ('pending', 'approved', 'rejected')),
    validated_by   TEXT,
    validated_at   TEXT,
    quality_score  REAL CHECK (quality_score IS NULL OR quality_score BETWEEN 0 AND 1),
    is_occluded    INTEGER NOT NULL DEFAULT 0 CHECK (is_occluded IN (0, 1)),
    is_truncated   INTEGER NOT NULL DEFAULT 0 CHECK (is_truncated IN (0, 1)),
    is_difficult   INTEGER NOT NULL DEFAULT 0 CHECK (is_difficult IN (0, 1)),
    metadata       TEXT CHECK (metadata IS NULL OR json_valid(metadata)),
    created_at     TEXT NOT NULL DEFAULT {NOW},
    updated_at     TEXT NOT NULL DEFAULT {NOW},
    CHECK ((mask_counts IS NULL) = (mask_h IS NULL) AND (mask_h IS NULL) = (mask_w IS NULL)),
    CHECK (is_validated = (validation_status <> 'pending'))
);

CREATE TABLE IF NOT EXISTS tracks (
    track_id        TEXT PRIMARY KEY CHECK (track_id LIKE 'trk\\_%' ESCAPE '\\'),
    source_id       TEXT NOT NULL REFERENCES sources(source_id) ON DELETE CASCADE,
    category_id     INTEGER REFERENCES categories(category_id),
    start_frame_idx INTEGER,
    end_frame_idx   INTEGER,
    object_count    INTEGER NOT NULL DEFAULT 0 CHECK (object_count >= 0),
    avg_confidence  REAL,
    metadata        TEXT CHECK (metadata IS NULL OR json_valid(metadata)),
    created_at      TEXT NOT NULL DEFAULT {NOW}
);

CREATE TABLE IF NOT EXISTS track_objects (
    track_id     TEXT NOT NULL REFERENCES tracks(track_id) ON DELETE CASCADE,
    object_id    TEXT NOT NULL REFERENCES objects(object_id) ON DELETE CASCADE,
    sequence_idx INTEGER NOT NULL CHECK (sequence_idx >= 0),
    PRIMARY KEY (track_id, object_id)
);

CREATE TABLE IF NOT EXISTS datasets (
    dataset_id       TEXT PRIMARY KEY CHECK (dataset_id LIKE 'ds\\_%' ESCAPE '\\'),
    name             TEXT NOT NULL,
    format           TEXT NOT NULL DEFAULT 'yolo',
    version          TEXT NOT NULL DEFAULT '1.0',
    split_config     TEXT NOT NULL DEFAULT '{{"train": 0.8, "val": 0.1, "test": 0.1}}' CHECK (json_valid(split_config)),
    filter_config    TEXT CHECK (filter_config IS NULL OR json_valid(filter_config)),
    category_mapping TEXT CHECK (category_mapping IS NULL OR json_valid(category_mapping)),
    object_count     INTEGER NOT NULL DEFAULT 0,
    export_path      TEXT,
    created_at       TEXT NOT NULL DEFAULT {NOW},
    exported_at      TEXT
);

CREATE TABLE IF NOT EXISTS dataset_objects (
    dataset_id TEXT NOT NULL REFERENCES datasets(dataset_id) ON DELETE CASCADE,
    object_id  TEXT NOT NULL REFERENCES objects(object_id) ON DELETE CASCADE,
    split      TEXT NOT NULL CHECK (split IN ('train', 'val', 'test')),
    PRIMARY KEY (dataset_id, object_id)
);

-- The source of truth for the vector index (float32 little-endian, dim values).
CREATE TABLE IF NOT EXISTS embeddings (
    object_id  TEXT NOT NULL REFERENCES objects(object_id) ON DELETE CASCADE,
    version_id TEXT NOT NULL,
    dim        INTEGER NOT NULL CHECK (dim > 0),
    vector     BLOB NOT NULL CHECK (length(vector) = 4 * dim),
    created_at TEXT NOT NULL DEFAULT {NOW},
    PRIMARY KEY (object_id, version_id)
);

-- No foreign key on object_id: a 'delete' entry must outlive the object it removes from the
-- index. 'upsert' entries read the vector from `embeddings` when relayed (the latest wins), so
-- vectors are not stored twice; `embedding` is kept only for rows written by version 1.
CREATE TABLE IF NOT EXISTS embedding_outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    object_id     TEXT NOT NULL,
    version_id    TEXT NOT NULL,
    operation     TEXT NOT NULL CHECK (operation IN ('upsert', 'delete')),
    embedding     BLOB,
    status        TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'synced', 'failed')),
    retry_count   INTEGER NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    error_message TEXT,
    created_at    TEXT NOT NULL DEFAULT {NOW},
    synced_at     TEXT
);

-- Training runs (version 3). dataset_id has no foreign key: a run outlives a deleted dataset.
CREATE TABLE IF NOT EXISTS runs (
    run_id          TEXT PRIMARY KEY CHECK (run_id LIKE 'run\\_%' ESCAPE '\\'),
    dataset_id      TEXT,
    dataset_name    TEXT,
    dataset_version TEXT,
    export_path     TEXT,
    model           TEXT NOT NULL,
    task            TEXT NOT NULL CHECK (task IN ('detect', 'segment')),
    params          TEXT NOT NULL DEFAULT '{{}}' CHECK (json_valid(params)),
    status          TEXT NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'stopped', 'finished', 'failed')),
    best_weights    TEXT,
    best_metrics    TEXT CHECK (best_metrics IS NULL OR json_valid(best_metrics)),
    error           TEXT,
    metadata        TEXT CHECK (metadata IS NULL OR json_valid(metadata)),
    created_at      TEXT NOT NULL DEFAULT {NOW},
    started_at      TEXT,
    finished_at     TEXT
);

-- One row per finished epoch (1-based); metrics are NULL where the task has none (mask_* for detect).
CREATE TABLE IF NOT EXISTS run_epochs (
    run_id          TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    epoch           INTEGER NOT NULL CHECK (epoch >= 1),
    box_loss REAL, cls_loss REAL, dfl_loss REAL, seg_loss REAL,
    box_precision REAL, box_recall REAL, box_map50 REAL, box_map50_95 REAL,
    mask_precision REAL, mask_recall REAL, mask_map50 REAL, mask_map50_95 REAL,
    fitness         REAL,
    extras          TEXT NOT NULL DEFAULT '{{}}' CHECK (json_valid(extras)),
    created_at      TEXT NOT NULL DEFAULT {NOW},
    PRIMARY KEY (run_id, epoch)
);
"""

# Indexes the spec names, plus the composite ones the listing/dedupe queries use.
INDEXES = """
CREATE INDEX IF NOT EXISTS idx_objects_source ON objects(source_id, category_id);
CREATE INDEX IF NOT EXISTS idx_objects_category ON objects(category_id, validation_status, confidence);
CREATE INDEX IF NOT EXISTS idx_objects_project ON objects(project_id);
CREATE INDEX IF NOT EXISTS idx_objects_confidence ON objects(confidence);
CREATE INDEX IF NOT EXISTS idx_objects_status ON objects(validation_status, confidence);
CREATE INDEX IF NOT EXISTS idx_objects_is_validated ON objects(is_validated);
CREATE INDEX IF NOT EXISTS idx_objects_created ON objects(created_at);
CREATE INDEX IF NOT EXISTS idx_objects_frame ON objects(frame_id);
CREATE INDEX IF NOT EXISTS idx_frames_source ON frames(source_id, frame_idx);
CREATE INDEX IF NOT EXISTS idx_track_objects_object ON track_objects(object_id);
CREATE INDEX IF NOT EXISTS idx_tracks_source ON tracks(source_id);
CREATE INDEX IF NOT EXISTS idx_dataset_objects_object ON dataset_objects(object_id);
CREATE INDEX IF NOT EXISTS idx_embeddings_version ON embeddings(version_id);
CREATE INDEX IF NOT EXISTS idx_outbox_status ON embedding_outbox(status, id);
CREATE INDEX IF NOT EXISTS idx_outbox_object ON embedding_outbox(object_id);
CREATE INDEX IF NOT EXISTS idx_category_names_category ON category_names(category_id);
CREATE INDEX IF NOT EXISTS idx_runs_created ON runs(created_at);
"""

def _track_refresh(row: str) -> str:
    """The UPDATE that recomputes a track's summary columns for ``row`` (NEW or OLD) of track_objects."""
    tid = f"{row}.track_id"
    frames = (
        "FROM track_objects t JOIN objects o USING (object_id) "
        f"JOIN frames f ON f.frame_id = o.frame_id WHERE t.track_id = {tid}"
    )
    return f"""    UPDATE tracks SET
        object_count = (SELECT count(*) FROM track_objects WHERE track_id = {tid}),
        avg_confidence = (SELECT avg(o.confidence) FROM track_objects t JOIN objects o USING (object_id)
                          WHERE t.track_id = {tid}),
        start_frame_idx = (SELECT min(f.frame_idx) {frames}),
        end_frame_idx = (SELECT max(f.frame_idx) {frames})
    WHERE track_id = {tid};"""


# The database keeps these itself, whoever writes.
TRIGGERS = f"""
CREATE TRIGGER IF NOT EXISTS trg_objects_updated_at AFTER UPDATE ON objects
FOR EACH ROW WHEN NEW.updated_at = OLD.updated_at
BEGIN
    -- The "<>" guard stops a second firing within the same millisecond (recursive triggers).
    UPDATE objects SET updated_at = {NOW} WHERE object_id = NEW.object_id AND updated_at <> {NOW};
END;

CREATE TRIGGER IF NOT EXISTS trg_track_objects_insert AFTER INSERT ON track_objects
BEGIN
{_track_refresh("NEW")}
END;

CREATE TRIGGER IF NOT EXISTS trg_track_objects_delete AFTER DELETE ON track_objects
BEGIN
{_track_refresh("OLD")}
END;
"""

# Version 1 (the original spec's layout), kept so upgrades can be tested against the real thing.
SCHEMA_V1 = f"""
CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL DEFAULT {NOW});
CREATE TABLE sources (
    source_id TEXT PRIMARY KEY, source_type TEXT NOT NULL CHECK (source_type IN ('image', 'video', 'text')),
    file_path TEXT, file_name TEXT, width INTEGER, height INTEGER, frame_count INTEGER, fps REAL,
    content_hash TEXT UNIQUE, metadata TEXT, created_at TEXT NOT NULL DEFAULT {NOW});
CREATE TABLE frames (
    frame_id TEXT PRIMARY KEY, source_id TEXT NOT NULL REFERENCES sources(source_id) ON DELETE CASCADE,
    frame_idx INTEGER NOT NULL, timestamp REAL, file_path TEXT, created_at TEXT NOT NULL DEFAULT {NOW});
CREATE TABLE categories (
    category_id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, supercategory TEXT,
    synonyms TEXT, color TEXT DEFAULT '#808080', description TEXT, created_at TEXT NOT NULL DEFAULT {NOW});
CREATE TABLE objects (
    object_id TEXT PRIMARY KEY, source_id TEXT NOT NULL REFERENCES sources(source_id) ON DELETE CASCADE,
    category_id INTEGER REFERENCES categories(category_id), frame_id TEXT REFERENCES frames(frame_id),
    project_id TEXT, bbox_x REAL NOT NULL, bbox_y REAL NOT NULL, bbox_w REAL NOT NULL, bbox_h REAL NOT NULL,
    mask_counts TEXT, mask_h INTEGER, mask_w INTEGER, mask_path TEXT, polygon TEXT, area REAL,
    confidence REAL, detection_model TEXT, classification_model TEXT, classification_confidence REAL,
    is_validated INTEGER NOT NULL DEFAULT 0, validated_by TEXT, validated_at TEXT, quality_score REAL,
    is_occluded INTEGER NOT NULL DEFAULT 0, is_truncated INTEGER NOT NULL DEFAULT 0,
    is_difficult INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL DEFAULT {NOW},
    updated_at TEXT NOT NULL DEFAULT {NOW});
CREATE TABLE tracks (
    track_id TEXT PRIMARY KEY, source_id TEXT NOT NULL REFERENCES sources(source_id) ON DELETE CASCADE,
    category_id INTEGER REFERENCES categories(category_id), start_frame_idx INTEGER, end_frame_idx INTEGER,
    object_count INTEGER NOT NULL DEFAULT 0, avg_confidence REAL, metadata TEXT,
    created_at TEXT NOT NULL DEFAULT {NOW});
CREATE TABLE track_objects (
    track_id TEXT NOT NULL REFERENCES tracks(track_id) ON DELETE CASCADE,
    object_id TEXT NOT NULL REFERENCES objects(object_id) ON DELETE CASCADE,
    sequence_idx INTEGER NOT NULL, PRIMARY KEY (track_id, object_id));
CREATE TABLE datasets (
    dataset_id TEXT PRIMARY KEY, name TEXT NOT NULL, format TEXT DEFAULT 'yolo', version TEXT DEFAULT '1.0',
    split_config TEXT, filter_config TEXT, category_mapping TEXT, object_count INTEGER DEFAULT 0,
    export_path TEXT, created_at TEXT NOT NULL DEFAULT {NOW}, exported_at TEXT);
CREATE TABLE dataset_objects (
    dataset_id TEXT NOT NULL REFERENCES datasets(dataset_id) ON DELETE CASCADE,
    object_id TEXT NOT NULL REFERENCES objects(object_id) ON DELETE CASCADE,
    split TEXT NOT NULL, PRIMARY KEY (dataset_id, object_id));
CREATE TABLE embedding_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, object_id TEXT NOT NULL, version_id TEXT NOT NULL,
    operation TEXT NOT NULL CHECK (operation IN ('upsert', 'delete')), embedding BLOB,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'synced', 'failed')),
    retry_count INTEGER NOT NULL DEFAULT 0, error_message TEXT, created_at TEXT NOT NULL DEFAULT {NOW},
    synced_at TEXT);
INSERT INTO schema_version (version) VALUES (1);
"""


def current_version(conn: sqlite3.Connection) -> int:
    """The database's schema version; 0 for an empty file."""
    has = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if not has:
        has_objects = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'objects'"
        ).fetchone()
        if has_objects:
            raise RuntimeError(
                "expected a registry database with a schema_version table, got tables without one; "
                "point --data at an AgenticLabeling data folder or move this registry.db away"
            )
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def _executescript_in_tx(conn: sqlite3.Connection, script: str) -> None:
    # sqlite3.executescript() would COMMIT the open transaction first; run statement by statement.
    for statement in _split_sql(script):
        conn.execute(statement)


def _split_sql(script: str) -> list[str]:
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """v1 -> v2: validation_status + metadata columns, name lookup table, embeddings table."""
    conn.execute(
        "ALTER TABLE objects ADD COLUMN validation_status TEXT NOT NULL DEFAULT 'pending' "
        "CHECK (validation_status IN ('pending', 'approved', 'rejected'))"
    )
    conn.execute("UPDATE objects SET validation_status = 'approved' WHERE is_validated = 1")
    conn.execute("ALTER TABLE objects ADD COLUMN metadata TEXT")
    conn.execute("ALTER TABLE sources ADD COLUMN project_id TEXT")
    conn.execute("UPDATE categories SET synonyms = '[]' WHERE synonyms IS NULL OR NOT json_valid(synonyms)")
    conn.execute("UPDATE categories SET color = '#808080' WHERE color IS NULL")
    _executescript_in_tx(conn, SCHEMA)  # creates the tables v1 lacked (IF NOT EXISTS)
    # Every v1 name and synonym becomes a lookup key (first one wins on a clash).
    for cid, name, synonyms in conn.execute("SELECT category_id, name, synonyms FROM categories").fetchall():
        conn.execute(
            "INSERT OR IGNORE INTO category_names (name_key, category_id, is_synonym) VALUES (?, ?, 0)",
            (name.casefold(), cid),
        )
        for syn in json.loads(synonyms or "[]"):
            conn.execute(
                "INSERT OR IGNORE INTO category_names (name_key, category_id, is_synonym) VALUES (?, ?, 1)",
                (str(syn).casefold(), cid),
            )
    # v1 kept vectors only in the outbox: the latest upsert per object becomes its embedding.
    conn.execute(
        """
        INSERT OR REPLACE INTO embeddings (object_id, version_id, dim, vector)
        SELECT e.object_id, e.version_id, length(e.embedding) / 4, e.embedding
        FROM embedding_outbox e
        JOIN (SELECT object_id, version_id, max(id) AS id FROM embedding_outbox
              WHERE operation = 'upsert' AND embedding IS NOT NULL GROUP BY object_id, version_id) last
          ON last.id = e.id
        WHERE e.object_id IN (SELECT object_id FROM objects)
          AND length(e.embedding) > 0 AND length(e.embedding) % 4 = 0
        """
    )


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """v2 -> v3: the ``runs`` and ``run_epochs`` tables (nothing existing changes)."""
    _executescript_in_tx(conn, SCHEMA)  # IF NOT EXISTS: creates only the new tables


MIGRATIONS = {1: _migrate_1_to_2, 2: _migrate_2_to_3}


def ensure_schema(connection: Connection) -> int:
    """Creates the schema, or upgrades an older database in place; returns the version.

    Raises:
        RuntimeError: the database is newer than this code (upgrade the app instead).
    """
    with connection.transaction() as conn:
        version = current_version(conn)
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"expected registry schema version <= {SCHEMA_VERSION}, got {version}; "
                "this data folder was written by a newer AgenticLabeling: upgrade the app"
            )
        if version == 0:
            _executescript_in_tx(conn, SCHEMA)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            version = SCHEMA_VERSION
        while version < SCHEMA_VERSION:
            MIGRATIONS[version](conn)
            version += 1
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        _executescript_in_tx(conn, INDEXES)
        _executescript_in_tx(conn, TRIGGERS)
    return SCHEMA_VERSION
