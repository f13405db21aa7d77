"""Schema: constraints and triggers in the database itself; upgrading a version-1 database."""
from __future__ import annotations

import sqlite3

import pytest

from registry.facade import ObjectIn, Registry
from registry.schema import SCHEMA_V1, SCHEMA_VERSION
from tests.registry.conftest import unit


def test_check_constraints_hold_for_raw_sql(reg, image):
    sid = reg.register_source(image)
    oid = reg.register_objects(sid, [ObjectIn("cat", (0, 0, 5, 5))]).object_ids[0]
    for sql in (
        "UPDATE objects SET confidence = 2 WHERE object_id = ?",
        "UPDATE objects SET validation_status = 'maybe' WHERE object_id = ?",
        "UPDATE objects SET is_validated = 1 WHERE object_id = ?",   # status still pending
        "UPDATE objects SET bbox_w = -1 WHERE object_id = ?",
        "UPDATE objects SET category_id = 999 WHERE object_id = ?",   # foreign key
    ):
        with pytest.raises(sqlite3.IntegrityError):
            with reg.transaction() as tx:
                tx.execute(sql, (oid,))
    assert reg.get_object(oid)["confidence"] is None


def test_upgrade_from_version_1_in_place(data_dir):
    db = sqlite3.connect(data_dir / "registry.db")
    db.executescript(SCHEMA_V1)
    vec = unit(8, 5).astype("<f4").tobytes()
    db.executescript("""
        INSERT INTO sources (source_id, source_type, width, height, content_hash) VALUES ('src_a', 'image', 64, 48, 'h1');
        INSERT INTO categories (category_id, name, synonyms) VALUES (1, 'person', '["human"]');
        INSERT INTO objects (object_id, source_id, category_id, bbox_x, bbox_y, bbox_w, bbox_h, confidence, is_validated)
            VALUES ('obj_a', 'src_a', 1, 0, 0, 10, 10, 0.7, 1), ('obj_b', 'src_a', 1, 20, 0, 10, 10, 0.2, 0);
    """)
    db.execute("INSERT INTO embedding_outbox (object_id, version_id, operation, embedding) VALUES ('obj_a', 'test-v1', 'upsert', ?)", (vec,))
    db.commit()
    db.close()
    with Registry(data_dir, embedding_dim=8, embedding_version="test-v1", index="exact") as reg:
        assert reg.schema_version == SCHEMA_VERSION
        assert reg.connection.scalar("SELECT max(version) FROM schema_version") == SCHEMA_VERSION
        a = reg.get_object("obj_a")
        assert a["validation_status"] == "approved" and a["is_validated"] and a["category"] == "person"
        assert reg.get_object("obj_b")["validation_status"] == "pending"
        assert reg.get_category("HUMAN")["name"] == "person"
        assert a["has_embedding"] and reg.get_embedding("obj_a").tobytes() == vec
        assert reg.index.ids() == {"obj_a"}  # the v1 outbox row was relayed at open
        assert reg.search(unit(8, 5), k=1)[0]["object_id"] == "obj_a"
        reg.update_object("obj_b", status="rejected", validated_by="x")
        assert reg.doctor()["ok"]
    with Registry(data_dir, embedding_dim=8, embedding_version="test-v1", index="exact") as reg:  # idempotent
        assert reg.count_objects() == 2


def test_newer_database_is_refused(data_dir):
    with Registry(data_dir, embedding_dim=8, index="exact") as reg:
        with reg.transaction() as tx:
            tx.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    with pytest.raises(RuntimeError, match="newer"):
        Registry(data_dir, embedding_dim=8, index="exact")
