"""What ``doctor`` now catches (issue 9 items 4, 5, 12): vectors listed but not found by
themselves, media files changed or missing, orphan media and temporary files left by kills."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from registry.facade import ObjectIn, Registry
from tests.registry.conftest import make_image

ROOT = Path(__file__).resolve().parents[2]
DIM = 16


def _chroma(data: Path) -> Registry:
    return Registry(data, embedding_dim=DIM, embedding_version="doc-v1", index="chroma")


def _fill(reg: Registry, folder: Path, n_sources: int = 2, per: int = 20, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    ids = []
    for s in range(n_sources):
        sid = reg.register_source(make_image(folder / f"img{seed}_{s}.png", 64, 48, seed=seed * 10 + s))
        objs = [ObjectIn("cat", (i, i, i + 10, i + 10), embedding=rng.standard_normal(DIM).astype(np.float32))
                for i in range(per)]
        ids += reg.register_objects(sid, objs, dedupe=False).registered
    return ids


def _age(path: Path, seconds: float = 3600) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t), follow_symlinks=False)


def test_self_query_finds_vectors_the_id_comparison_missed(data_dir, tmp_path):
    with _chroma(data_dir) as reg:
        ids = _fill(reg, tmp_path)
        assert reg.doctor()["ok"]
        # Three ids stay listed but hold other vectors (what concurrent writers left behind).
        rng = np.random.default_rng(99)
        bad = ids[:3]
        reg.index.add(bad, rng.standard_normal((3, DIM)).astype(np.float32), [{"category": "cat"}] * 3)
        report = reg.doctor()
        idx = report["checks"]["index"]
        assert idx["missing"] == 0 and idx["extra"] == 0  # the id sets still agree ...
        sq = idx["self_query"]
        assert not report["ok"] and not idx["ok"]  # ... the self-query does not
        assert sq["checked"] == len(ids)
        assert sq["wrong_vector"] == 3 and set(sq["wrong_vector_sample"]) == set(bad)
        assert sq["not_found"] >= 1
        repaired = reg.doctor(repair=True)
        assert repaired["ok"], repaired
        assert any("rebuilt the vector index" in a for a in repaired["repaired"])
        for oid in bad:
            assert reg.index.query(reg.get_embedding(oid), 1)[0][0] == oid


def test_media_check_reports_changed_and_missing_files(data_dir, tmp_path):
    with _chroma(data_dir) as reg:
        _fill(reg, tmp_path, n_sources=3, per=2)
        sources = reg.list_sources()
        assert "media" not in reg.doctor()["checks"]  # opt-in: it reads every file
        assert reg.doctor(check_media=True)["checks"]["media"] == {
            "ok": True, "checked": 3, "missing": 0, "changed": 0, "missing_sample": [], "changed_sample": []}
        changed, gone = Path(sources[0]["file_path"]), Path(sources[1]["file_path"])
        with changed.open("ab") as f:  # edited in place, e.g. through an export's hard link
            f.write(b"edited")
        gone.unlink()
        media = reg.doctor(check_media=True)["checks"]["media"]
        assert not media["ok"] and media["changed"] == 1 and media["missing"] == 1
        item = media["changed_sample"][0]
        assert item["source_id"] == sources[0]["source_id"] and item["path"] == str(changed)
        assert item["expected_sha256"] == sources[0]["content_hash"] and item["actual_sha256"] != item["expected_sha256"]
        assert item["size"] == changed.stat().st_size
        assert media["missing_sample"] == [{"source_id": sources[1]["source_id"], "path": str(gone)}]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cli = subprocess.run([sys.executable, "launch.py", "doctor", "--data", str(data_dir), "--embedding-dim", str(DIM),
                          "--embedding-version", "doc-v1", "--check-media"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 1, cli.stderr[-2000:]
    assert "FAIL media" in cli.stdout and str(changed) in cli.stdout


def test_litter_is_listed_and_repair_removes_only_old_litter_inside_the_data_folder(data_dir, tmp_path):
    with _chroma(data_dir) as reg:
        _fill(reg, tmp_path, n_sources=1, per=3)
        kept = Path(reg.list_sources()[0]["file_path"])
        _age(kept)
        media = data_dir / "media" / "ab"
        media.mkdir(parents=True, exist_ok=True)
        orphan = media / ("ab" + "0" * 62 + ".jpg")
        orphan.write_bytes(b"an image whose source row never committed")
        old_tmp = media / ".tmp-k1ll3d"
        old_tmp.write_bytes(b"half a copy")
        export_tmp = data_dir / "exports" / ".tmp-export.zip"
        export_tmp.parent.mkdir()
        export_tmp.write_bytes(b"half a zip")
        fresh_tmp = media / ".tmp-running"  # a running import's copy: not litter yet
        fresh_tmp.write_bytes(b"being copied")
        target = tmp_path / "outside.bin"
        target.write_bytes(b"not ours")
        link = data_dir / "media" / "link.bin"
        os.symlink(target, link)
        for p in (orphan, old_tmp, export_tmp, link):
            _age(p)
        report = reg.doctor()
        litter = report["checks"]["litter"]
        assert not report["ok"] and not litter["ok"]
        assert litter["orphan_media"] == 2 and litter["temp_files"] == 2
        assert sorted(litter["orphan_sample"]) == ["media/ab/" + orphan.name, "media/link.bin"]
        assert sorted(litter["temp_sample"]) == ["exports/.tmp-export.zip", "media/ab/.tmp-k1ll3d"]
        repaired = reg.doctor(repair=True)
        assert repaired["ok"], repaired
        assert "removed 4 litter files (orphan media, temporary files)" in repaired["repaired"]
        assert not orphan.exists() and not old_tmp.exists() and not export_tmp.exists() and not link.is_symlink()
        assert fresh_tmp.exists() and kept.exists() and target.read_bytes() == b"not ours"
        assert reg.doctor()["checks"]["litter"]["ok"]


def test_self_query_accepts_ties_between_identical_vectors(data_dir, tmp_path):
    with _chroma(data_dir) as reg:
        sid = reg.register_source(make_image(tmp_path / "same.png", 64, 48, seed=5))
        same = np.random.default_rng(5).standard_normal(DIM).astype(np.float32)
        ids = reg.register_objects(sid, [ObjectIn("cat", (i, 0, i + 5, 5), embedding=same) for i in range(0, 40, 8)],
                                   dedupe=False).registered
        assert len(ids) == 5
        report = reg.doctor()
        assert report["ok"], report
        assert report["checks"]["index"]["self_query"] == {
            "ok": True, "checked": 5, "not_found": 0, "not_fetched": 0, "wrong_vector": 0}
