"""Outbox relay: idempotent, retried, never blocking registration; rebuild from SQLite."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from registry.facade import ObjectIn, Registry
from registry.outbox import MAX_RETRIES
from registry.vectors import ExactIndex
from tests.registry.conftest import make_image, unit


class FlakyIndex(ExactIndex):
    """An exact index whose writes fail while ``broken`` is set."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.broken = True
        self.calls = 0

    def add(self, ids, vectors, metadatas):
        self.calls += 1
        if self.broken:
            raise ConnectionError("index unreachable")
        super().add(ids, vectors, metadatas)

    def delete(self, ids):
        if self.broken:
            raise ConnectionError("index unreachable")
        super().delete(ids)


def _outbox(reg):
    return reg.connection.query("SELECT status, retry_count, error_message FROM embedding_outbox ORDER BY id")


def test_failing_index_keeps_rows_with_retries_and_error(data_dir, image):
    flaky = FlakyIndex(8)
    reg = Registry(data_dir, embedding_dim=8, index=flaky)
    sid = reg.register_source(image)
    ids = reg.register_objects(sid, [ObjectIn("cat", (0, 0, 5, 5), embedding=unit(8, 1)),
                                     ObjectIn("cat", (10, 0, 15, 5), embedding=unit(8, 2))]).object_ids
    assert all(ids) and reg.count_objects() == 2  # registration succeeded despite the index
    rows = _outbox(reg)
    assert [r["status"] for r in rows] == ["pending", "pending"]
    assert rows[0]["retry_count"] == 1 and "index unreachable" in rows[0]["error_message"]
    for _ in range(MAX_RETRIES):
        reg.sync_outbox()
    rows = _outbox(reg)
    assert [r["status"] for r in rows] == ["failed", "failed"] and rows[0]["retry_count"] == MAX_RETRIES
    calls = flaky.calls
    assert reg.sync_outbox() == {"synced": 0, "failed": 0, "pending": 0}  # failed rows are not retried blindly
    assert flaky.calls == calls
    report = reg.doctor()
    assert not report["ok"] and report["checks"]["outbox"]["failed"] == 2
    flaky.broken = False
    report = reg.doctor(repair=True)
    assert report["ok"], report
    assert flaky.ids() == set(ids)
    reg.close()


def test_relay_is_idempotent_and_last_operation_wins(data_dir, image):
    reg = Registry(data_dir, embedding_dim=8, index="exact", sync_on_write=False)
    sid = reg.register_source(image)
    a, b = reg.register_objects(sid, [ObjectIn("cat", (0, 0, 5, 5), embedding=unit(8, 1)),
                                      ObjectIn("dog", (10, 0, 15, 5), embedding=unit(8, 2))]).object_ids
    reg.update_object(a, embedding=unit(8, 3))
    reg.delete_object(b)
    assert reg.index.count() == 0
    assert reg.sync_outbox(batch_size=2) == {"synced": 4, "failed": 0, "pending": 0}
    assert reg.index.ids() == {a}
    assert reg.index.query(unit(8, 3), 1)[0][1] == pytest.approx(1.0, abs=1e-5)
    # replaying everything (e.g. after a crash before the status update) changes nothing
    reg.connection.execute("UPDATE embedding_outbox SET status = 'pending'")
    reg.sync_outbox(batch_size=1)
    assert reg.index.ids() == {a}
    reg.close()


def test_pending_rows_are_synced_at_open(data_dir, image):
    with Registry(data_dir, embedding_dim=8, index="exact", sync_on_write=False) as reg:
        sid = reg.register_source(image)
        oid = reg.register_objects(sid, [ObjectIn("cat", (0, 0, 5, 5), embedding=unit(8, 1))]).object_ids[0]
    index = ExactIndex(8)
    with Registry(data_dir, embedding_dim=8, index=index) as reg:
        assert index.ids() == {oid}
        assert reg.connection.scalar("SELECT count(*) FROM embedding_outbox WHERE status = 'pending'") == 0


def test_chroma_folder_deleted_doctor_repairs_and_same_ids(data_dir, tmp_path):
    reg = Registry(data_dir, embedding_dim=16, embedding_version="t-chroma", index="chroma")
    query = unit(16, 0)
    for s in range(3):
        sid = reg.register_source(make_image(tmp_path / f"{s}.png", seed=s))
        reg.register_objects(sid, [
            ObjectIn("cat" if i % 2 else "dog", (i * 6, 0, i * 6 + 5, 5), confidence=0.5,
                     embedding=query + 0.3 * unit(16, 100 * s + i))
            for i in range(8)
        ])
    before = [h["object_id"] for h in reg.search(query, k=10)]
    before_cat = [h["object_id"] for h in reg.search(query, k=5, category="cat")]
    assert len(before) == 10 and reg.doctor()["ok"]
    reg.close()
    shutil.rmtree(data_dir / "chroma")
    reg = Registry(data_dir, embedding_dim=16, embedding_version="t-chroma", index="chroma", sync_on_write=False)
    report = reg.doctor()
    assert not report["ok"] and not report["checks"]["index"]["ok"]
    assert report["checks"]["index"]["missing"] == 24 or report["checks"]["index"].get("error")
    report = reg.doctor(repair=True)
    assert report["ok"], report
    assert any("rebuilt" in a for a in report["repaired"])
    assert [h["object_id"] for h in reg.search(query, k=10)] == before
    assert [h["object_id"] for h in reg.search(query, k=5, category="cat")] == before_cat
    reg.close()


def test_rebuild_counts_and_marks_outbox(data_dir, image):
    reg = Registry(data_dir, embedding_dim=8, index="exact", sync_on_write=False)
    sid = reg.register_source(image)
    reg.register_objects(sid, [ObjectIn("cat", (i * 6, 0, i * 6 + 5, 5), embedding=unit(8, i)) for i in range(5)])
    assert reg.rebuild_index() == 5
    assert reg.index.count() == 5
    assert reg.connection.scalar("SELECT count(*) FROM embedding_outbox WHERE status <> 'synced'") == 0
    assert np.allclose(reg.index.query(unit(8, 2), 1)[0][1], 1.0, atol=1e-5)
    reg.close()
