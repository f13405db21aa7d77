"""/api/v1/datasets: create (filter + split), rebuild, list, get, export (format/task) and download."""
from __future__ import annotations

import io
import zipfile

from tests.app.api.conftest import seed


def _seed_many(ctx, tmp_path, n=4):
    return [seed(ctx.registry, tmp_path, seed_no=i) for i in range(n)]


def test_create_build_get_list(ctx, client, tmp_path):
    _seed_many(ctx, tmp_path)
    body = {"name": "pets", "filter_config": {"categories": ["cat"], "min_confidence": 0.5},
            "split_config": {"train": 0.5, "val": 0.5, "test": 0.0}, "seed": 1}
    r = client.post("/api/v1/datasets", json=body)
    assert r.status_code == 201, r.text
    ds = r.json()
    assert (ds["name"], ds["version"], ds["object_count"], ds["image_count"]) == ("pets", 1, 4, 4)
    assert sum(ds["splits"].values()) == 4 and ds["splits"]["test"] == 0
    got = client.get(f"/api/v1/datasets/{ds['dataset_id']}").json()
    assert got["filter_config"]["categories"] == ["cat"] and got["object_count"] == 4
    r = client.post(f"/api/v1/datasets/{ds['dataset_id']}/build", json={})
    assert r.status_code == 201 and r.json()["version"] == 2 and r.json()["splits"] == ds["splits"]
    r = client.post("/api/v1/datasets/pets/build", json={"filter_config": {"categories": ["cat", "dog"]}})
    assert r.json()["version"] == 3 and r.json()["object_count"] == 8
    assert client.get("/api/v1/datasets/pets").json()["version"] in (3, "3")
    assert [d["name"] for d in client.get("/api/v1/datasets").json()] == ["pets"] * 3


def test_dataset_bad_input_and_unknown(ctx, client, tmp_path):
    _seed_many(ctx, tmp_path, 1)
    r = client.post("/api/v1/datasets", json={"name": "x", "filter_config": {"categories": ["unicorn"]}})
    assert r.status_code == 400 and "unicorn" in r.json()["detail"]
    r = client.post("/api/v1/datasets", json={"name": "x", "split_config": {"train": 0, "val": 1, "test": 0}})
    assert r.status_code == 400
    assert client.post("/api/v1/datasets", json={"name": "x", "filter_config": {"colour": 1}}).status_code == 422
    assert client.get("/api/v1/datasets/ds_nope").status_code == 404
    assert client.post("/api/v1/datasets/ds_nope/build", json={}).status_code == 404
    assert client.post("/api/v1/datasets/ds_nope/export", json={}).status_code == 404


def test_export_yolo_segment_and_download(ctx, client, tmp_path):
    _seed_many(ctx, tmp_path, 3)
    ds = client.post("/api/v1/datasets", json={"name": "pets v1"}).json()
    r = client.post(f"/api/v1/datasets/{ds['dataset_id']}/export", json={"format": "yolo", "task": "segment"})
    assert r.status_code == 200, r.text
    ex = r.json()
    assert ex["folder"] == "exports/pets_v1_v1_yolo_segment" and ex["zip"].endswith(".zip")
    assert (ctx.data_dir / ex["folder"] / "data.yaml").is_file()
    z = client.get(ex["download"])
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(z.content)).namelist()
    assert any(n.endswith(".txt") and "labels" in n for n in names)
    assert client.post(f"/api/v1/datasets/{ds['dataset_id']}/export", json={"format": "voc"}).status_code == 422
    r = client.post(f"/api/v1/datasets/{ds['dataset_id']}/export", json={"format": "coco", "task": "detect"})
    assert r.status_code == 200 and r.json()["counts"]


def test_download_only_serves_export_zips(ctx, client, tmp_path):
    _seed_many(ctx, tmp_path, 1)
    for name in ("registry.db", "..%2Fregistry.db", "nothing.zip"):
        r = client.get(f"/api/v1/datasets/exports/{name}")
        assert r.status_code == 404, name
        assert b"SQLite" not in r.content
