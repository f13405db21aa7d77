"""A damaged Chroma folder never takes a process down (issue 9 item 3): real corruption, real
processes. Random bytes in the HNSW file made chromadb segfault (exit 139) in ``doctor``,
``doctor --repair`` and the web server's first search; a truncated ``chroma.sqlite3`` made
``--repair`` fail with an AttributeError pointing at itself.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from registry.facade import ObjectIn, Registry
from tests.serve_process import serving

ROOT = Path(__file__).resolve().parents[2]
DIM, VERSION, N = 32, "corrupt-test", 1500  # enough vectors for Chroma to write its HNSW files


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["ANONYMIZED_TELEMETRY"] = "False"
    return env


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _doctor(data: Path, *extra: str) -> subprocess.CompletedProcess:
    return _run("launch.py", "doctor", "--data", str(data), "--embedding-dim", str(DIM),
                "--embedding-version", VERSION, "--json", *extra)


SEARCH = f"""
import json, sys
import numpy as np
from registry.facade import Registry
reg = Registry(sys.argv[1], embedding_dim={DIM}, embedding_version={VERSION!r}, index="chroma")
reg._vectors.planner.quantized = False  # through the ANN index (small registries are scanned by sign bits)
ids = sys.argv[2].split(",")
found = [reg.search(reg.get_embedding(oid), k=1)[0]["object_id"] for oid in ids]
print(json.dumps({{"found": found, "recovery": reg.index_recovery}}, default=str))
reg.close()
"""


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A data folder with N objects whose vectors are in Chroma (HNSW files on disk)."""
    data = tmp_path_factory.mktemp("pristine") / "data"
    rng = np.random.default_rng(7)
    with Registry(data, embedding_dim=DIM, embedding_version=VERSION, index="chroma") as reg:
        for b in range(3):
            src = data.parent / f"src{b}.bin"
            src.write_bytes(f"source {b}".encode())
            sid = reg.register_source(src, width=640, height=480, copy=False)
            objs = [ObjectIn("thing", (i % 600, (i // 600) * 10, i % 600 + 20, (i // 600) * 10 + 20),
                             embedding=rng.standard_normal(DIM).astype(np.float32)) for i in range(N // 3)]
            reg.register_objects(sid, objs, dedupe=False)
        assert reg.index.count() == N
    segments = [p for p in (data / "chroma").iterdir() if p.is_dir()]
    assert segments and (segments[0] / "data_level0.bin").stat().st_size > 100_000
    return data


@pytest.fixture
def data(pristine: Path, tmp_path: Path) -> Path:
    d = tmp_path / "data"
    shutil.copytree(pristine, d)
    (d / "index.clean.json").unlink(missing_ok=True)  # the copy's stamp names the pristine folder anyway
    return d


def _some_ids(data: Path, n: int = 5) -> list[str]:
    import sqlite3

    with sqlite3.connect(data / "registry.db") as conn:
        return [r[0] for r in conn.execute("SELECT object_id FROM embeddings ORDER BY random() LIMIT ?", (n,))]


def _scramble_hnsw(data: Path) -> Path:
    seg = next(p for p in (data / "chroma").iterdir() if p.is_dir())
    target = seg / "data_level0.bin"
    size = target.stat().st_size
    rng = np.random.default_rng(0)
    target.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    return target


def _moved_aside(data: Path) -> list[Path]:
    return sorted(p for p in data.iterdir() if p.name.startswith("chroma.corrupt-"))


def test_random_bytes_in_the_hnsw_file_are_reported_then_repaired(data):
    _scramble_hnsw(data)
    # Before: the doctor's own process crashed (exit 139). Now the finding is reported.
    res = _doctor(data)
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    report = json.loads(res.stdout)
    assert "SIGSEGV" in report["checks"]["index"]["error"]
    assert not _moved_aside(data)  # a check changes nothing
    res = _doctor(data, "--repair")
    assert res.returncode == 0, (res.returncode, res.stdout[-3000:], res.stderr[-2000:])
    report = json.loads(res.stdout)
    assert any("moved it to" in a and f"({N} vectors)" in a for a in report["repaired"]), report["repaired"]
    assert len(_moved_aside(data)) == 1
    assert report["checks"]["index"]["indexed"] == N
    assert report["checks"]["index"]["self_query"]["not_found"] == 0
    ids = _some_ids(data)
    out = _run("-c", SEARCH, str(data), ",".join(ids))
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["found"] == ids


def test_the_first_search_heals_a_damaged_index_instead_of_crashing(data):
    """What the web server does on its first search: open the index, search."""
    _scramble_hnsw(data)
    ids = _some_ids(data)
    out = _run("-c", SEARCH, str(data), ",".join(ids))
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    got = json.loads(out.stdout)
    assert got["found"] == ids
    assert "SIGSEGV" in got["recovery"]["error"] and got["recovery"]["rebuilt"] == N
    assert [str(p) for p in _moved_aside(data)] == [got["recovery"]["moved_to"]]


def test_a_process_that_is_not_the_index_writer_gets_an_error_not_a_crash(data):
    _scramble_hnsw(data)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys,time; from registry import index_lock as L; "
         "assert L.acquire(sys.argv[1]); print('HELD', flush=True); time.sleep(120)", str(data)],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "HELD"
        code = SEARCH.replace('found = [', 'try:\n    found = [').replace(
            'for oid in ids]\n', 'for oid in ids]\nexcept RuntimeError as exc:\n    found = str(exc)\n')
        out = _run("-c", code, str(data), ",".join(_some_ids(data, 1)))
        assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
        message = json.loads(out.stdout)["found"]
        assert "is damaged" in message and "SIGSEGV" in message and "doctor" in message, message
        assert not _moved_aside(data)  # only the writer may move it
    finally:
        holder.kill()
        holder.wait(timeout=30)


@pytest.mark.parametrize("probed_before", [False, True], ids=["never-probed", "probed-before"])
def test_a_truncated_chroma_sqlite_reports_the_real_error_and_is_rebuilt(data, probed_before):
    if probed_before:  # the HNSW files are as the last probe saw them: the damage shows in-process
        assert _doctor(data).returncode == 0
        assert (data / "index.clean.json").is_file()
    db = data / "chroma" / "chroma.sqlite3"
    with db.open("r+b") as f:
        f.truncate(db.stat().st_size // 3)
    res = _doctor(data)
    assert res.returncode == 1, res.stderr[-2000:]
    error = json.loads(res.stdout)["checks"]["index"]["error"]
    assert "bindings" not in error and "RustBindingsAPI" not in error, error
    assert "malformed" in error.lower() or "database" in error.lower(), error
    assert not _moved_aside(data)  # a check changes nothing
    res = _doctor(data, "--repair")
    assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-2000:])
    assert "bindings" not in res.stdout + res.stderr
    ids = _some_ids(data)
    out = _run("-c", SEARCH, str(data), ",".join(ids))
    assert out.returncode == 0 and json.loads(out.stdout)["found"] == ids, out.stderr[-2000:]


def test_a_read_only_index_folder_is_named_with_its_permission_and_left_alone(data):
    folder = data / "chroma"
    mode = folder.stat().st_mode
    folder.chmod(0o555)
    try:
        for extra in ((), ("--repair",)):
            res = _doctor(data, *extra)
            assert res.returncode == 1, (extra, res.stdout[-2000:], res.stderr[-2000:])
            text = res.stdout
            assert "read-only" in text and str(folder) in text and "chmod -R u+w" in text, text[-2000:]
            assert "Traceback" not in res.stderr
        assert not _moved_aside(data)
        assert (folder / "chroma.sqlite3").is_file()
    finally:
        folder.chmod(stat.S_IMODE(mode))
    assert _doctor(data).returncode == 0


def test_the_web_server_survives_a_damaged_index_and_search_answers(tmp_path):
    """``launch.py serve`` on a folder whose HNSW file holds random bytes: before, the server
    process died (SIGSEGV) on the first search, for every user."""

    from gradio_client import Client

    data = tmp_path / "data"
    rng = np.random.default_rng(3)
    with Registry(data) as reg:  # what `serve` opens without weights: 768-d, dinov2-base
        src = tmp_path / "src.bin"
        src.write_bytes(b"one source")
        sid = reg.register_source(src, width=640, height=480, copy=False)
        # Pairs of near-identical vectors: search by object excludes the object itself, so the
        # right answer for object 2i is object 2i+1.
        base = rng.standard_normal((600, 768)).astype(np.float32)
        vecs = np.repeat(base, 2, axis=0) + 0.01 * rng.standard_normal((1200, 768)).astype(np.float32)
        objs = [ObjectIn("thing", (i % 600, (i // 600) * 10, i % 600 + 20, (i // 600) * 10 + 20),
                         embedding=vecs[i]) for i in range(1200)]
        ids = reg.register_objects(sid, objs, dedupe=False).registered
    _scramble_hnsw(data)
    env = _env()
    env["AGL_WEIGHTS"] = str(tmp_path / "no-weights")
    with serving(data, env) as (base, server):
        client = Client(base + "/", verbose=False)
        for i in (0, 2, 598, 1198):
            hits = client.predict(ids[i], 1, "", 0.0, False, api_name="/search")
            assert [h["object_id"] for h in hits] == [ids[i + 1]]
        assert server.poll() is None  # still serving
        assert len(_moved_aside(data)) == 1


def test_a_probe_is_skipped_only_for_the_same_files_and_collection(data, monkeypatch):
    from registry.vectors import probe as probe_mod

    folder = (data / "chroma").resolve()
    calls: list[str] = []
    real = probe_mod.probe

    def counting(f, collection, dim, **kw):
        calls.append(collection)
        return real(f, collection, dim, **kw)

    monkeypatch.setattr(probe_mod, "probe", counting)
    name = "objects_" + VERSION
    assert probe_mod.check_folder(folder, name, DIM) is None
    assert probe_mod.check_folder(folder, name, DIM) is None  # same files, same collection: no probe
    assert calls == [name]
    assert probe_mod.check_folder(folder, "objects_other", DIM) is None  # another collection: probed
    assert calls == [name, "objects_other"]
    seg_file = next(p for p in folder.glob("*/data_level0.bin"))
    os.utime(seg_file, ns=(seg_file.stat().st_atime_ns, seg_file.stat().st_mtime_ns + 1_000_000))
    assert probe_mod.check_folder(folder, name, DIM) is None  # a segment file changed: probed again
    assert calls == [name, "objects_other", name]
    _scramble_hnsw(data)
    assert "SIGSEGV" in probe_mod.check_folder(folder, name, DIM)
