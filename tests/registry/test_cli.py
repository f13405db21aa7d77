"""``launch.py doctor`` and ``launch.py stats`` through a real subprocess."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from registry.facade import ObjectIn, Registry
from registry.stats import format_stats
from tests.registry.conftest import box_mask, make_image, unit

ROOT = Path(__file__).resolve().parents[2]


def _launch(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "launch.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _fill(data_dir: Path, tmp_path: Path) -> list[str]:
    with Registry(data_dir, embedding_dim=768, index="chroma") as reg:
        sid = reg.register_source(make_image(tmp_path / "a.png", seed=3))
        ids = reg.register_objects(sid, [
            ObjectIn("cat", (0, 0, 10, 10), mask=box_mask(48, 64, 0, 0, 10, 10), confidence=0.95, embedding=unit(768, 1)),
            ObjectIn("dog", (20, 0, 30, 10), confidence=0.15, embedding=unit(768, 2)),
            ObjectIn("dog", (40, 0, 50, 10), confidence=None),
        ]).object_ids
        reg.update_object(ids[0], status="approved", validated_by="me")
        with reg.transaction() as tx:
            tx.execute("INSERT INTO datasets (dataset_id, name) VALUES ('ds_1', 'first')")
            tx.executemany("INSERT INTO dataset_objects (dataset_id, object_id, split) VALUES ('ds_1', ?, ?)",
                           [(ids[0], "train"), (ids[1], "val")])
    return ids


def test_doctor_and_stats_cli(data_dir, tmp_path):
    _fill(data_dir, tmp_path)
    res = _launch("doctor", "--data", str(data_dir), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["ok"] is True

    shutil.rmtree(data_dir / "chroma")
    res = _launch("doctor", "--data", str(data_dir), "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    assert json.loads(res.stdout)["checks"]["index"]["ok"] is False
    res = _launch("doctor", "--data", str(data_dir), "--repair")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "rebuilt the vector index" in res.stdout and res.stdout.rstrip().endswith("consistent")

    res = _launch("stats", "--data", str(data_dir), "--json")
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    assert s["objects"] == 3 and s["sources"] == 1 and s["embeddings"] == 2
    assert s["categories"]["dog"]["objects"] == 2 and s["categories"]["cat"]["approved"] == 1
    assert s["splits"] == {"train": 1, "val": 1, "test": 0}
    assert s["validation"]["rate"] == 1 / 3
    assert s["confidence_histogram"]["counts"][9] == 1 and s["confidence_histogram"]["counts"][1] == 1
    assert s["confidence_histogram"]["unknown"] == 1
    text = format_stats(s)
    assert "dog" in text and "rate 33.3%" in text


def test_doctor_reports_broken_mask(data_dir, tmp_path):
    ids = _fill(data_dir, tmp_path)
    with Registry(data_dir, embedding_dim=768, index="chroma", sync_on_write=False) as reg:
        with reg.transaction() as tx:
            tx.execute("UPDATE objects SET mask_counts = 'not-an-rle~' WHERE object_id = ?", (ids[0],))
    res = _launch("doctor", "--data", str(data_dir), "--json", "--repair")
    assert res.returncode == 1
    masks = json.loads(res.stdout)["checks"]["masks"]
    assert masks["broken"] == 1 and masks["broken_sample"][0]["object_id"] == ids[0]
