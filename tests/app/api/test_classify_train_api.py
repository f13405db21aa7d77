"""/api/v1 domains + classify, runs (recorded directly, one tiny 1-epoch run, a stub trainer for
the busy/stop states), suggest and the auto-label evaluation, each over its own seeded registry."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from registry.datasets import build_dataset
from registry.facade import ObjectIn
from tests.app.api.conftest import AUTH, mount, unit
from tests.app.fakes import write_scene
from tests.pipeline.train.helpers import CLASSES, tiny_train_env
from tests.registry.export_helpers import populate


def _noisy(dim: int, hot: int, rng: np.random.Generator) -> np.ndarray:
    v = unit(dim, hot) + rng.normal(0, 0.05, dim).astype(np.float32)
    return (v / np.linalg.norm(v)).astype(np.float32)


def seed_support(reg, tmp_path, *, per_class: int = 6) -> dict:
    """Approved cats (around axis 0) and dogs (around axis 5) with embeddings, plus three pending
    objects: one near the cats (conf 0.8), one near the dogs (conf 0.3), one off both (conf 0.55)."""
    rng = np.random.default_rng(0)
    dim = reg.embedding_dim
    sid = reg.register_source(write_scene(tmp_path / "s" / "scene.png", seed=0), project="p1")
    objs = [ObjectIn(category=c, xyxy=(4 * i, 4 * i, 4 * i + 30, 4 * i + 30), confidence=0.9,
                     embedding=_noisy(dim, hot, rng), detection_model="test")
            for c, hot in (("cat", 0), ("dog", 5)) for i in range(per_class)]
    ids = reg.register_objects(sid, objs, project="p1", dedupe=False).object_ids
    for oid in ids:
        reg.update_object(oid, status="approved", validated_by="t")
    pend = reg.register_objects(sid, [
        ObjectIn(category="thing", xyxy=(100, 100, 140, 140), confidence=0.8, embedding=_noisy(dim, 0, rng)),
        ObjectIn(category="thing", xyxy=(150, 100, 190, 140), confidence=0.3, embedding=_noisy(dim, 5, rng)),
        ObjectIn(category="thing", xyxy=(200, 100, 240, 140), confidence=0.55, embedding=unit(dim, 20)),
    ], project="p1", dedupe=False).object_ids
    return {"source_id": sid, "approved": ids, "near_cat": pend[0], "near_dog": pend[1], "odd": pend[2]}


def test_build_list_classify_and_delete_a_domain(ctx, client, tmp_path):
    s = seed_support(ctx.registry, tmp_path)
    r = client.post("/api/v1/domains", json={"name": "pets"})
    assert r.status_code == 201, r.text
    meta = r.json()
    assert meta["domain"] == "pets" and sorted(meta["classes"]) == ["cat", "dog"]
    assert meta["counts"] == {"cat": 6, "dog": 6} and meta["embedding_dim"] == ctx.registry.embedding_dim
    assert client.post("/api/v1/domains", json={"name": "pets"}).status_code == 409
    listed = client.get("/api/v1/domains").json()
    assert [d["domain"] for d in listed] == ["pets"] and listed[0]["version"] == meta["version"]

    r = client.post("/api/v1/domains/pets/classify", json={"object_ids": [s["near_cat"], s["near_dog"], s["odd"]]})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["object_id"] for i in items] == [s["near_cat"], s["near_dog"], s["odd"]]
    assert [i["verdict"] for i in items[:2]] == ["cat", "dog"] and not items[0]["is_unknown"]
    assert items[2]["is_unknown"] and items[2]["verdict"] == "unknown"
    first = items[0]
    assert first["top_k"][0]["class"] == "cat" and abs(first["s1"] - first["top_k"][0]["score"]) < 1e-5
    assert first["margin"] > 0 and first["model"] == f"domain:pets@{meta['version']}"

    vec = unit(ctx.registry.embedding_dim, 5).tolist()  # the dogs' centre: above both thresholds
    r = client.post("/api/v1/domains/pets/classify", json={"embedding": vec, "top_k": 1})
    assert r.json()["items"][0]["verdict"] == "dog" and len(r.json()["items"][0]["top_k"]) == 1
    # nothing was written by the per-object answers
    assert ctx.registry.get_object(s["near_cat"])["classification_model"] is None

    r = client.delete("/api/v1/domains/pets")
    assert r.json() == {"deleted": "pets"} and client.get("/api/v1/domains").json() == []
    r = client.delete("/api/v1/domains/pets")
    assert r.status_code == 404 and "pets" in r.json()["detail"]


def test_classify_errors_name_the_problem(ctx, client, tmp_path):
    s = seed_support(ctx.registry, tmp_path)
    r = client.post("/api/v1/domains", json={"name": "pets", "categories": ["horse"]})
    assert r.status_code == 400 and "horse" in r.json()["detail"]
    assert client.post("/api/v1/domains", json={"name": "pets"}).status_code == 201
    r = client.post("/api/v1/domains/zoo/classify", json={"object_ids": [s["odd"]]})
    assert r.status_code == 404 and "zoo" in r.json()["detail"]
    r = client.post("/api/v1/domains/pets/classify", json={"object_ids": ["obj_nope"]})
    assert r.status_code == 404 and "obj_nope" in r.json()["detail"]
    r = client.post("/api/v1/domains/pets/classify", json={"embedding": [0.1, 0.2]})
    assert r.status_code == 400 and str(ctx.registry.embedding_dim) in r.json()["detail"]
    r = client.post("/api/v1/domains/pets/classify", json={})
    assert r.status_code == 400 and "exactly one" in r.json()["detail"]


def test_classify_pending_and_apply(ctx, client, tmp_path):
    s = seed_support(ctx.registry, tmp_path)
    assert client.post("/api/v1/domains", json={"name": "pets"}).status_code == 201
    r = client.post("/api/v1/classify", json={"domain": "pets", "only_pending": True, "apply": True})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["classified"], out["applied"], out["skipped"]) == (3, 2, 0)
    assert out["verdicts"] == {"cat": 1, "dog": 1, "unknown": 1}
    reg = ctx.registry
    assert [reg.get_object(s[k])["category"] for k in ("near_cat", "near_dog", "odd")] == ["cat", "dog", "thing"]
    assert reg.get_object(s["odd"])["metadata"]["classification"]["is_unknown"] is True
    again = client.post("/api/v1/classify", json={"domain": "pets", "only_pending": True}).json()
    assert (again["classified"], again["skipped"]) == (0, 3)
    assert client.post("/api/v1/classify", json={"domain": "zoo"}).status_code == 404


def test_suggest_least_confident_order_and_bad_strategy(ctx, client, tmp_path):
    s = seed_support(ctx.registry, tmp_path)
    r = client.get("/api/v1/suggest", params={"n": 2, "strategy": "least-confident"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["ids"] == [s["near_dog"], s["odd"]]  # confidence 0.3, then 0.55 (0.8 left out)
    assert np.allclose(out["scores"], [0.7, 0.45])
    assert [o["object_id"] for o in out["items"]] == out["ids"] and out["candidates"] == 3
    r = client.get("/api/v1/suggest", params={"n": 2, "exclude": [s["near_dog"]]})
    assert r.json()["ids"] == [s["odd"], s["near_cat"]]  # the next page of the same queue
    r = client.get("/api/v1/suggest", params={"n": 3, "strategy": "diversity"})
    assert r.status_code == 200 and sorted(r.json()["ids"]) == sorted([s["near_cat"], s["near_dog"], s["odd"]])
    r = client.get("/api/v1/suggest", params={"strategy": "smartest"})
    assert r.status_code == 400 and "least-confident" in r.json()["detail"]


def test_evaluate_auto_labels_on_a_seeded_case(ctx, client, tmp_path):
    """Detector 'det' proposed two cats on one image: one approved as is (TP), one rejected
    (FP); a reviewer drew the cat it missed (FN) → precision = recall = 1/2."""
    reg = ctx.registry
    sid = reg.register_source(write_scene(tmp_path / "s" / "a.png", seed=1))
    a, b = reg.register_objects(sid, [
        ObjectIn(category="cat", xyxy=(10, 10, 60, 60), confidence=0.9, detection_model="det"),
        ObjectIn(category="cat", xyxy=(100, 100, 150, 150), confidence=0.2, detection_model="det"),
    ], dedupe=False).object_ids
    (m,) = reg.register_objects(sid, [ObjectIn(category="cat", xyxy=(200, 20, 260, 90), detection_model="manual")],
                                dedupe=False).object_ids
    reg.update_object(a, status="approved")
    reg.update_object(b, status="rejected")
    reg.update_object(m, status="approved")
    r = client.get("/api/v1/evaluate/auto-labels")
    assert r.status_code == 200, r.text
    out = r.json()
    cat = out["per_class"]["cat"]
    assert (cat["tp"], cat["fp"], cat["fn"]) == (1, 1, 1) and cat["precision"] == 0.5 and cat["recall"] == 0.5
    assert out["outcomes"]["approved"] == 1 and out["outcomes"]["rejected"] == 1
    assert out["outcomes"]["added by hand"] == 1 and out["detection_models"] == {"det": 2}
    r = client.get("/api/v1/evaluate/auto-labels", params={"detection_model": "yolo"})
    assert r.status_code == 400 and "yolo" in r.json()["detail"]


def test_runs_list_get_and_refusals(ctx, client):
    reg = ctx.registry
    rid = reg.create_run(model="yolo11n.yaml", task="detect", params={"epochs": 2}, dataset_name="shapes",
                         dataset_version="1")
    reg.record_epoch(rid, 1, {"box_loss": 1.5, "box_map50": 0.1})
    reg.record_epoch(rid, 2, {"box_loss": 1.2, "box_map50": 0.25, "lr": 0.01})
    reg.update_run(rid, status="finished", best_metrics={"box_map50": 0.25})
    listed = client.get("/api/v1/runs").json()
    assert [r["run_id"] for r in listed] == [rid] and listed[0]["status"] == "finished"
    got = client.get(f"/api/v1/runs/{rid}").json()
    assert got["params"] == {"epochs": 2} and got["best_metrics"] == {"box_map50": 0.25}
    assert [(e["epoch"], e["box_map50"]) for e in got["epochs"]] == [(1, 0.1), (2, 0.25)]
    assert got["epochs"][1]["extras"] == {"lr": 0.01}
    assert got["training"] is False and got["log"] == []  # not started in this server
    r = client.get("/api/v1/runs/run_nope")
    assert r.status_code == 404 and "run_nope" in r.json()["detail"]
    r = client.post(f"/api/v1/runs/{rid}/stop")
    assert r.status_code == 409 and "not training" in r.json()["detail"]
    for kw in ({"json": {"split": "test"}}, {}):  # the body is optional
        r = client.post(f"/api/v1/runs/{rid}/evaluate", **kw)
        assert r.status_code == 400 and rid in r.json()["detail"]
    assert client.post("/api/v1/runs/run_nope/evaluate").status_code == 404
    r = client.post("/api/v1/runs", json={"dataset": "nope", "model": "yolo11n.yaml", "epochs": 1})
    assert r.status_code == 400 and "nope" in r.json()["detail"]
    assert client.get("/api/v1/runs").json()[0]["run_id"] == rid  # nothing recorded
    assert client.post("/api/v1/runs", json={"dataset": "x", "epochs": 0}).status_code == 422


def test_start_a_tiny_run_in_the_background_then_evaluate_it(ctx, client, tmp_path, monkeypatch):
    """One 1-epoch detection run at 64 px on 10 random images (the training tests' dataset),
    started over the API, recorded with its epoch, then evaluated on val."""
    tiny_train_env(monkeypatch, tmp_path)
    seed_shapes(ctx.registry, tmp_path)
    body = {"dataset": "shapes", "model": "yolo11n.yaml", "epochs": 1, "imgsz": 64, "batch": 4}
    r = client.post("/api/v1/runs", json=body)
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]
    from app.workflows.train import shared_training

    job = shared_training(ctx)  # the runner the API shares with the Train tab
    job.join(300)
    assert not job.running and job.error is None
    run = client.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "finished" and run["task"] == "detect" and run["params"]["epochs"] == 1
    assert [e["epoch"] for e in run["epochs"]] == [1] and run["epochs"][0]["box_loss"] > 0
    assert client.post(f"/api/v1/runs/{run_id}/stop").status_code == 409  # finished: nothing to stop
    r = client.post(f"/api/v1/runs/{run_id}/evaluate", json={"split": "val"})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["run_id"] == run_id and report["split"] == "val" and report["images"] == 2
    assert {c: v["gt"] for c, v in report["bbox"]["per_class"].items()} == {c: 2 for c in CLASSES}
    assert 0.0 <= report["bbox"]["map50"] <= 1.0 and Path(report["files"]["metrics"]).is_file()
    assert len(report["confusion_matrix"]["names"]) == len(report["confusion_matrix"]["matrix"])


def seed_shapes(reg, tmp_path) -> None:
    """Dataset "shapes" (10 random images, three masked objects each; split 0.6/0.2/0.2)."""
    populate(reg, tmp_path / "raw", 10)
    build_dataset(reg, "shapes", None, [0.6, 0.2, 0.2], 0)


def test_a_second_start_is_refused_while_one_trains_and_stop_reaches_it(ctx, client, tmp_path, monkeypatch):
    """The trainer is replaced by one that waits for the stop event, so "still training" is a
    state, not a race; the real start_run still checks the request and records the run. A run
    started the Train tab's way (its shared runner) blocks the API too, and the API stops it."""
    import app.workflows.train as train_wf

    seed_shapes(ctx.registry, tmp_path)
    entered = threading.Event()

    def waiting_trainer(reg, data_dir, run_id, *, stop, **_):
        entered.set()
        stop.wait(60)
        return reg.update_run(run_id, status="stopped")

    monkeypatch.setattr(train_wf, "execute_run", waiting_trainer)
    body = {"dataset": "shapes", "model": "yolo11n.yaml", "epochs": 3, "imgsz": 64}
    r = client.post("/api/v1/runs", json=body)
    assert r.status_code == 202 and r.json()["status"] == "queued"
    run_id = r.json()["run_id"]
    assert entered.wait(30)
    again = client.post("/api/v1/runs", json=body)
    assert again.status_code == 409 and run_id in again.json()["detail"]
    assert [x["run_id"] for x in client.get("/api/v1/runs").json()] == [run_id]  # the refused one left no row
    r = client.post(f"/api/v1/runs/{run_id}/stop")
    assert r.status_code == 200 and r.json() == {"run_id": run_id, "stopping": True}
    job = train_wf.shared_training(ctx)
    job.join(30)
    assert client.get(f"/api/v1/runs/{run_id}").json()["status"] == "stopped"

    entered.clear()  # now as the Train tab starts one
    tab_run = job.start(ctx.registry, ctx.data_dir, train_wf.TrainRequest("shapes", "yolo11n.yaml", epochs=1))
    assert entered.wait(30)
    busy = client.post("/api/v1/runs", json=body)
    assert busy.status_code == 409 and tab_run in busy.json()["detail"]
    assert client.post(f"/api/v1/runs/{run_id}/stop").status_code == 409  # the old run is not the one training
    assert client.get(f"/api/v1/runs/{tab_run}").json()["training"] is True
    assert client.get(f"/api/v1/runs/{run_id}").json()["training"] is False
    assert client.post(f"/api/v1/runs/{tab_run}/stop").json()["stopping"] is True
    job.join(30)
    assert ctx.registry.get_run(tab_run)["status"] == "stopped"
    got = client.get(f"/api/v1/runs/{tab_run}").json()
    assert got["training"] is False and any("stop requested" in line for line in got["log"])


def test_the_new_routes_sit_behind_auth(ctx, tmp_path):
    seed_support(ctx.registry, tmp_path)
    with mount(ctx, auth=AUTH) as locked:
        for method, path in (("get", "/api/v1/domains"), ("get", "/api/v1/runs"), ("get", "/api/v1/suggest"),
                             ("get", "/api/v1/evaluate/auto-labels"), ("post", "/api/v1/classify")):
            assert getattr(locked, method)(path).status_code == 401, path
        r = locked.get("/api/v1/suggest", params={"n": 1}, auth=AUTH)
        assert r.status_code == 200 and len(r.json()["ids"]) == 1


def test_evaluate_is_refused_while_the_run_still_trains(ctx, client, tmp_path, monkeypatch):
    """best.pt is rewritten after every better epoch while a run trains: evaluating it then reads
    a half-written checkpoint. The Train tab refuses; the API must too (409, naming the run)."""
    import app.workflows.train as train_wf

    seed_shapes(ctx.registry, tmp_path)
    entered = threading.Event()
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"half-written")

    def waiting_trainer(reg, data_dir, run_id, *, stop, **_):
        reg.update_run(run_id, status="running", best_weights=str(weights))
        entered.set()
        stop.wait(60)
        return reg.update_run(run_id, status="stopped")

    monkeypatch.setattr(train_wf, "execute_run", waiting_trainer)
    r = client.post("/api/v1/runs", json={"dataset": "shapes", "model": "yolo11n.yaml", "epochs": 3, "imgsz": 64})
    run_id = r.json()["run_id"]
    assert entered.wait(30)
    try:
        busy = client.post(f"/api/v1/runs/{run_id}/evaluate", json={"split": "val"})
        assert busy.status_code == 409 and run_id in busy.json()["detail"] and "training" in busy.json()["detail"]
    finally:
        client.post(f"/api/v1/runs/{run_id}/stop")
        train_wf.shared_training(ctx).join(30)
    assert ctx.registry.get_run(run_id)["status"] == "stopped"


def test_extra_train_arguments_cannot_override_what_the_run_owns(ctx, client, tmp_path):
    """``extra`` is for ultralytics knobs (patience, lr0...): ``project``/``name`` would put the
    weights outside <data>/runs/<run_id> (where stop, evaluate and the labeler look), ``workers``
    would fork dataloaders inside the server, ``epochs`` would disagree with the recorded run."""
    seed_shapes(ctx.registry, tmp_path)
    for key, value in (("project", str(tmp_path / "elsewhere")), ("name", "mine"), ("workers", 4), ("epochs", 9)):
        r = client.post("/api/v1/runs", json={"dataset": "shapes", "model": "yolo11n.yaml", "epochs": 1,
                                              "extra": {key: value}})
        assert r.status_code == 400, (key, r.json())
        assert key in r.json()["detail"] and "extra" in r.json()["detail"]
    assert client.get("/api/v1/runs").json() == []  # nothing recorded
    assert not (tmp_path / "elsewhere").exists()
