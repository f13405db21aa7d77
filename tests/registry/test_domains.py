"""Domain packs on disk (save/load/list/export/import/delete, validation) and classification
results stored on objects."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from registry import domains
from registry.facade import ObjectIn
from tests.registry.conftest import unit


def _pack(dim: int = 8, classes=("ant", "bee")):
    rng = np.random.default_rng(0)
    support = rng.standard_normal((4, dim)).astype(np.float32)
    support /= np.linalg.norm(support, axis=1, keepdims=True)
    labels = np.array([0, 0, 1, 1], np.int64)
    protos = np.stack([support[:2].mean(0), support[2:].mean(0)]).astype(np.float32)
    arrays = {"prototypes": protos, "support": support, "labels": labels, "centre": np.zeros(dim, np.float32)}
    meta = {"classes": list(classes), "counts": {"ant": 2, "bee": 2}, "embedding_model": "test-v1",
            "embedding_dim": dim, "preprocessing": {"l2_normalize": True, "centre": False},
            "tau1": 0.1, "tau2": 0.02, "created_at": "2026-01-01T00:00:00Z"}
    return arrays, meta


def test_save_load_list_roundtrip_atomically(data_dir):
    arrays, meta = _pack()
    folder = domains.save_pack(data_dir, "bugs", arrays, meta)
    assert folder == data_dir / "domains" / "bugs"
    assert sorted(p.name for p in folder.iterdir()) == ["prototypes.meta.json", "prototypes.npz"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tmp")]
    got, m = domains.load_pack(data_dir, "bugs", embedding_version="test-v1", embedding_dim=8)
    assert np.array_equal(got["support"], arrays["support"]) and m["classes"] == ["ant", "bee"]
    assert m["schema_version"] == domains.SCHEMA_VERSION and m["domain"] == "bugs" and len(m["version"]) == 12
    listed = domains.list_domains(data_dir)
    assert [d["domain"] for d in listed] == ["bugs"] and listed[0]["counts"] == {"ant": 2, "bee": 2}
    with pytest.raises(ValueError, match="already exists"):
        domains.save_pack(data_dir, "bugs", arrays, meta)
    domains.save_pack(data_dir, "bugs", arrays, {**meta, "tau1": 0.5}, overwrite=True)
    assert domains.load_pack(data_dir, "bugs")[1]["tau1"] == 0.5


@pytest.mark.parametrize("bad", ["../evil", "a/b", "..", ".hidden", "", "x" * 65, "a b"])
def test_names_never_leave_the_domains_folder(data_dir, bad):
    arrays, meta = _pack()
    with pytest.raises(ValueError, match="domain name"):
        domains.save_pack(data_dir, bad, arrays, meta)
    assert not (data_dir / "evil").exists()


def test_a_pack_of_another_embedding_model_is_refused_naming_both(data_dir):
    arrays, meta = _pack()
    domains.save_pack(data_dir, "bugs", arrays, meta)
    with pytest.raises(ValueError, match=r"'test-v1' \(8-d\).*'dinov2-base' \(768-d\)"):
        domains.load_pack(data_dir, "bugs", embedding_version="dinov2-base", embedding_dim=768)


def test_malformed_packs_name_the_file(data_dir):
    arrays, meta = _pack()
    folder = domains.save_pack(data_dir, "bugs", arrays, meta)
    (folder / "prototypes.meta.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"prototypes\.meta\.json: not valid JSON"):
        domains.load_pack(data_dir, "bugs")
    assert "error" in domains.list_domains(data_dir)[0]
    domains.save_pack(data_dir, "bugs", arrays, meta, overwrite=True)
    np.savez(folder / "prototypes.npz", **{**arrays, "prototypes": arrays["prototypes"][:1]})
    with pytest.raises(ValueError, match=r"prototypes\.npz: expected 'prototypes' of shape \(2, 8\)"):
        domains.load_pack(data_dir, "bugs")
    (folder / "prototypes.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"prototypes\.npz: not a readable"):
        domains.load_pack(data_dir, "bugs")
    (folder / "prototypes.npz").unlink()
    with pytest.raises(ValueError, match=r"prototypes\.npz: missing"):
        domains.load_pack(data_dir, "bugs")
    with pytest.raises(ValueError, match="unknown domain 'nope'"):
        domains.load_pack(data_dir, "nope")


def test_export_import_zip_and_folder_then_delete(data_dir, tmp_path):
    arrays, meta = _pack()
    domains.save_pack(data_dir, "bugs", arrays, meta)
    version = domains.load_pack(data_dir, "bugs")[1]["version"]
    z = domains.export_domain(data_dir, "bugs", tmp_path / "out" / "bugs.zip")
    assert sorted(zipfile.ZipFile(z).namelist()) == ["bugs/prototypes.meta.json", "bugs/prototypes.npz"]
    f = domains.export_domain(data_dir, "bugs", tmp_path / "folder")
    assert (f / "prototypes.npz").is_file()
    other = tmp_path / "other"
    assert domains.import_domain(other, z)["version"] == version
    assert domains.import_domain(other, f, name="bugs2")["domain"] == "bugs2"
    assert domains.import_domain(other, tmp_path / "folder", name="bugs3")["classes"] == ["ant", "bee"]
    assert [d["domain"] for d in domains.list_domains(other)] == ["bugs", "bugs2", "bugs3"]
    assert np.array_equal(domains.load_pack(other, "bugs")[0]["support"], arrays["support"])
    with pytest.raises(ValueError, match="already exists"):
        domains.import_domain(other, z)
    domains.delete_domain(other, "bugs")
    assert [d["domain"] for d in domains.list_domains(other)] == ["bugs2", "bugs3"]
    with pytest.raises(ValueError, match="nothing to delete"):
        domains.delete_domain(other, "bugs")


def test_import_refuses_bad_zips(data_dir, tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../../prototypes.meta.json", "{}")
    with pytest.raises(ValueError, match="expected prototypes.npz and prototypes.meta.json"):
        domains.import_domain(data_dir, bad)
    (tmp_path / "nozip.zip").write_bytes(b"plain")
    with pytest.raises(ValueError, match="not a zip file"):
        domains.import_domain(data_dir, tmp_path / "nozip.zip")
    arrays, meta = _pack()
    pickled = tmp_path / "pickled.zip"
    src = domains.save_pack(tmp_path / "d2", "p", arrays, meta)
    np.savez(src / "prototypes.npz", **{**arrays, "labels": np.array([object()] * 4, dtype=object)})
    with zipfile.ZipFile(pickled, "w") as zf:
        for name in ("prototypes.npz", "prototypes.meta.json"):
            zf.write(src / name, f"p/{name}")
    with pytest.raises(ValueError, match=r"prototypes\.npz: not a readable"):
        domains.import_domain(data_dir, pickled)
    assert domains.list_domains(data_dir) == []


def test_write_classifications_keeps_other_metadata(reg, image):
    sid = reg.register_source(image)
    a, b = reg.register_objects(sid, [
        ObjectIn("thing", (1, 1, 20, 20), embedding=unit(8, 1), metadata={"note": "keep me"}),
        ObjectIn("thing", (30, 5, 60, 40), embedding=unit(8, 2)),
    ]).object_ids
    n = domains.write_classifications(reg.connection, [
        {"object_id": a, "model": "domain:bugs@abc", "confidence": 0.75, "classification": {"verdict": "ant"}},
        {"object_id": b, "model": "domain:bugs@abc", "confidence": 0.1, "classification": {"verdict": "unknown"}},
    ])
    assert n == 2
    oa, ob = reg.get_object(a), reg.get_object(b)
    assert oa["classification_model"] == "domain:bugs@abc" and oa["classification_confidence"] == 0.75
    assert oa["metadata"] == {"note": "keep me", "classification": {"verdict": "ant"}}
    assert ob["metadata"] == {"classification": {"verdict": "unknown"}}
    with pytest.raises(ValueError, match="classification_confidence in \\[0, 1\\]"):
        domains.write_classifications(reg.connection, [{"object_id": a, "model": "m", "confidence": 1.5, "classification": {}}])
    assert reg.get_object(a)["classification_confidence"] == 0.75

