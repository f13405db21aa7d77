"""``launch.py domains ...`` and ``launch.py classify ...`` as a user runs them (in process,
offline), on a registry seeded with synthetic class clusters as stored embeddings."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli.main import main
from registry.facade import ObjectIn, Registry
from tests.pipeline.classify.seed import CLASSES, seed_clusters

DIM, VERSION = 32, "test-emb"


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Path, dict]:
    data = tmp_path / "data"
    with Registry(data, embedding_dim=DIM, embedding_version=VERSION, index="exact", sync_on_write=False) as reg:
        info = seed_clusters(reg, tmp_path / "img")
    return data, info


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _objects(data: Path) -> dict[str, dict]:
    with Registry(data, embedding_dim=DIM, embedding_version=VERSION, index="exact", sync_on_write=False) as reg:
        return {o["object_id"]: o for o in reg.iter_objects()}


def test_build_list_classify_apply_and_resume(seeded, capsys):
    data, info = seeded
    rc, out, err = _cli(capsys, "domains", "build", "--data", str(data), "--name", "bugs", "--from-validated")
    assert rc == 0, err
    assert "domain bugs@" in out and "3 classes (ant 4, bee 4, cat 4)" in out and f"{VERSION} {DIM}-d" in out
    assert "calibration (leave-one-out on 12 support items)" in out
    rc, out, _ = _cli(capsys, "domains", "list", "--data", str(data), "--json")
    listed = json.loads(out)
    assert [d["domain"] for d in listed] == ["bugs"] and listed[0]["classes"] == CLASSES

    with Registry(data, embedding_dim=DIM, embedding_version=VERSION, index="exact", sync_on_write=False) as reg:
        src = reg.list_sources()[0]["source_id"]
        bare = reg.register_objects(src, [ObjectIn("thing", (20, 20, 40, 40))], dedupe=False).object_ids[0]
    rc, out, err = _cli(capsys, "classify", "--data", str(data), "--domain", "bugs", "--only-pending", "--json",
                        "--batch-size", "3")  # several batches
    assert rc == 0, err
    s = json.loads(out)
    assert s["classified"] == len(info["pending"]) == 8 and s["skipped"] == 0 and s["applied"] == 0
    assert s["no_embedding"] == 1 and _objects(data)[bare]["classification_model"] is None
    objs = _objects(data)
    for oid, truth in info["pending"].items():
        o = objs[oid]
        cls = o["metadata"]["classification"]
        assert o["classification_model"] == s["model"] and s["model"].startswith("domain:bugs@")
        assert cls["verdict"] == truth, (oid, cls)
        assert o["classification_confidence"] == pytest.approx(cls["confidence"])
        assert len(cls["top_k"]) == 3 and cls["s1"] == cls["top_k"][0]["score"]
        assert o["category"] == "thing"  # not applied
    assert s["verdicts"] == {"unknown": 2, "ant": 2, "bee": 2, "cat": 2}
    for oid in info["approved"]:
        assert objs[oid]["classification_model"] is None  # --only-pending

    # resumable: the same pack version skips what it did; --apply still applies the stored verdicts
    rc, out, err = _cli(capsys, "classify", "--data", str(data), "--domain", "bugs", "--only-pending", "--apply")
    assert rc == 0, err
    assert "0 classified, 8 already done (skipped), 1 without embedding, 6 verdict(s) applied" in out
    objs = _objects(data)
    for oid, truth in info["pending"].items():
        assert objs[oid]["category"] == ("thing" if truth == "unknown" else truth)
        assert objs[oid]["validation_status"] == "pending"

    # all objects, forced: validated objects are scored but never relabelled
    rc, out, err = _cli(capsys, "classify", "--data", str(data), "--domain", "bugs", "--force", "--apply", "--json")
    s = json.loads(out)
    assert s["classified"] == 20 and s["skipped"] == 0 and s["applied"] == 0
    objs = _objects(data)
    assert all(objs[i]["classification_model"] == s["model"] for i in info["approved"])


def test_round_trip_export_import_elsewhere_gives_the_same_verdicts(seeded, tmp_path, capsys):
    data, info = seeded
    assert _cli(capsys, "domains", "build", "--data", str(data), "--name", "bugs", "--from-validated")[0] == 0
    assert _cli(capsys, "classify", "--data", str(data), "--domain", "bugs")[0] == 0
    zipped = tmp_path / "bugs.zip"
    rc, out, _ = _cli(capsys, "domains", "export", "--data", str(data), "bugs", str(zipped))
    assert rc == 0 and zipped.is_file()
    other = tmp_path / "other"
    with Registry(other, embedding_dim=DIM, embedding_version=VERSION, index="exact", sync_on_write=False) as reg:
        info2 = seed_clusters(reg, tmp_path / "img2")  # same seed: the same vectors, new ids
    rc, out, err = _cli(capsys, "domains", "import", "--data", str(other), str(zipped))
    assert rc == 0 and "imported domain bugs@" in out, err
    assert _cli(capsys, "classify", "--data", str(other), "--domain", "bugs")[0] == 0
    a, b = _objects(data), _objects(other)
    by_vec = {np.asarray(info["vectors"][i]).tobytes(): a[i]["metadata"]["classification"] for i in a}
    assert len(b) == len(a) == 20
    for oid, o in b.items():
        mine = o["metadata"]["classification"]
        theirs = by_vec[np.asarray(info2["vectors"][oid]).tobytes()]
        assert (mine["verdict"], mine["top_k"], mine["version"]) == (theirs["verdict"], theirs["top_k"], theirs["version"])
        assert o["classification_model"] == a[next(iter(a))]["classification_model"]
    assert _cli(capsys, "domains", "delete", "--data", str(other), "bugs")[0] == 0
    rc, _, err = _cli(capsys, "classify", "--data", str(other), "--domain", "bugs")
    assert rc == 2 and "unknown domain 'bugs'" in err


def test_a_domain_of_another_embedding_model_is_refused(seeded, tmp_path, capsys):
    data, _ = seeded
    assert _cli(capsys, "domains", "build", "--data", str(data), "--name", "bugs", "--from-validated")[0] == 0
    other = tmp_path / "other"
    with Registry(other, embedding_dim=16, embedding_version="other-emb", index="exact", sync_on_write=False) as reg:
        seed_clusters(reg, tmp_path / "img3")
    exported = tmp_path / "exp"
    assert _cli(capsys, "domains", "export", "--data", str(data), "bugs", str(exported))[0] == 0
    assert _cli(capsys, "domains", "import", "--data", str(other), str(exported / "bugs"))[0] == 0
    rc, _, err = _cli(capsys, "classify", "--data", str(other), "--domain", "bugs")
    assert rc == 2
    assert f"'{VERSION}' ({DIM}-d)" in err and "'other-emb' (16-d)" in err and "rebuild the domain" in err


def test_bad_input_gets_one_clear_line(seeded, tmp_path, capsys):
    data, _ = seeded
    rc, _, err = _cli(capsys, "domains", "build", "--data", str(data), "--name", "../x", "--from-validated")
    assert rc == 2 and "domain name" in err and not (data / "x").exists()
    rc, _, err = _cli(capsys, "domains", "build", "--data", str(data), "--name", "none", "--from-validated",
                      "--categories", "zebra")
    assert rc == 2 and "no approved objects of categories ['zebra']" in err
    rc, _, err = _cli(capsys, "domains", "import", "--data", str(data), str(tmp_path / "missing.zip"))
    assert rc == 2 and "no such file or folder" in err


def test_folders_without_weights_fail_fast_saying_how_to_get_them(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AGL_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    (tmp_path / "classes" / "red").mkdir(parents=True)
    rc, _, err = _cli(capsys, "domains", "build", "--data", str(tmp_path / "data"), "--name", "colours",
                      "--folders", str(tmp_path / "classes"))
    assert rc == 2 and "models download" in err and "Traceback" not in err
    assert not (tmp_path / "data" / "domains" / "colours").exists()


def test_folders_with_the_tiny_dinov2_build_a_domain(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from tests.chain_models import FOLDERS
    from tests.pipeline.tiny_models_sam2_dino import TINY_DINO_DIM, build_tiny_dinov2

    monkeypatch.delenv("AGL_WEIGHTS", raising=False)
    data = tmp_path / "data"
    build_tiny_dinov2(data / "models" / FOLDERS["embedder"])
    rng = np.random.default_rng(0)
    for cls, colour in (("red", (220, 30, 30)), ("blue", (30, 40, 220))):
        for i in range(3):
            img = np.clip(np.array(colour) + rng.normal(0, 10, (40, 40, 3)), 0, 255).astype(np.uint8)
            (tmp_path / "classes" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(tmp_path / "classes" / cls / f"{i}.png")
    (tmp_path / "classes" / "blue" / "notes.txt").write_text("not an image")
    rc, out, err = _cli(capsys, "domains", "build", "--data", str(data), "--name", "colours",
                        "--folders", str(tmp_path / "classes"), "--json")
    assert rc == 0, err
    meta = json.loads(out)
    assert meta["classes"] == ["blue", "red"] and meta["counts"] == {"blue": 3, "red": 3}
    assert meta["embedding_dim"] == TINY_DINO_DIM and meta["source"]["kind"] == "folders"
    assert meta["embedding_model"].startswith("dinov2")
    assert meta["preprocessing"]["embedding_input"].startswith("whole images")


def test_review_queue_orders_by_classification_confidence(seeded, capsys):
    from app.workflows import review as rv

    data, info = seeded
    assert _cli(capsys, "domains", "build", "--data", str(data), "--name", "bugs", "--from-validated")[0] == 0
    assert _cli(capsys, "classify", "--data", str(data), "--domain", "bugs", "--only-pending")[0] == 0
    with Registry(data, embedding_dim=DIM, embedding_version=VERSION, index="exact", sync_on_write=False) as reg:
        order = rv.ORDERS["least sure classification first"]
        queue = rv.load_queue(reg, rv.ReviewQuery(status="all", order=order), page_size=50)
        objs = reg.get_objects(queue.ids)
    confs = [o["classification_confidence"] for o in objs]
    assert len(confs) == 20 and confs[8:] == [None] * 12  # the 12 approved support objects were not classified
    assert confs[:8] == sorted(confs[:8]) and confs[0] < confs[7]
    assert set(queue.ids[:8]) == set(info["pending"])


def test_classify_tab_says_up_front_what_works_without_weights():
    from app.ui.tab_classify import answer_markdown, classify_notice

    assert "only **pick an object**" in classify_notice(False) and "models download" in classify_notice(False)
    assert "uploaded image" in classify_notice(True) and "only" not in classify_notice(True)
    ans = {"verdict": "unknown", "is_unknown": True, "s1": 0.2, "margin": 0.01, "tau1": 0.3, "tau2": 0.05,
           "confidence": 0.1, "model": "domain:x@1", "top_k": [{"class": "ant", "score": 0.2}]}
    text = answer_markdown(ans, "The image")
    assert "s1 0.200 < τ1 0.300" in text and "margin 0.010 < τ2 0.050" in text and "best class: ant" in text


def _tab_fn(demo, api_name: str):
    return next(f.fn for f in demo.fns.values() if getattr(f, "api_name", None) == api_name)


def test_classify_tab_without_embedder_weights_offers_object_ids(tmp_path):
    import gradio as gr

    from app.ui import tab_classify
    from app.ui.common import Shared
    from tests.app.fakes import make_context, make_scene

    ctx = make_context(tmp_path / "data", with_embedder=False)
    try:
        info = seed_clusters(ctx.registry, tmp_path / "img")
        with gr.Blocks() as demo:  # the tab alone, as build_app lays it out
            tab_classify.build(ctx, Shared())
        build, classify = _tab_fn(demo, "build_domain"), _tab_fn(demo, "classify")
        _, msg = build("bugs", "")
        assert "Built domain **bugs**: ant 4, bee 4, cat 4" in msg
        with pytest.raises(gr.Error, match="needs image-embedder weights.*Type an object id instead"):
            classify("bugs", make_scene(0), "", {})
        oid = next(i for i, t in info["pending"].items() if t == "bee")
        answer, rows, *_ = classify("bugs", make_scene(0), oid, {})
        assert f"Object `{oid}`: verdict **bee**" in answer and rows[0][0] == "bee"
        with pytest.raises(gr.Error, match="Pick a domain first"):
            classify(None, None, oid, {})
    finally:
        ctx.registry.close()


def test_thresholds_override_makes_a_new_version_that_reclassifies(seeded, capsys):
    data, info = seeded
    assert _cli(capsys, "domains", "build", "--data", str(data), "--name", "bugs", "--from-validated")[0] == 0
    first = json.loads(_cli(capsys, "classify", "--data", str(data), "--domain", "bugs", "--only-pending",
                            "--json")[1])
    rc, out, err = _cli(capsys, "domains", "thresholds", "--data", str(data), "bugs", "--tau1", "1.5")
    assert rc == 0 and "tau1 1.5000" in out, err
    again = json.loads(_cli(capsys, "classify", "--data", str(data), "--domain", "bugs", "--only-pending",
                            "--json")[1])
    assert again["model"] != first["model"] and again["skipped"] == 0
    assert again["verdicts"] == {"unknown": 8}  # no fused score reaches 1.5
    rc, _, err = _cli(capsys, "domains", "thresholds", "--data", str(data), "bugs")
    assert rc == 2 and "expected --tau1 and/or --tau2" in err


def test_folders_pack_carries_the_embedders_identity_not_the_registrys_majority(tmp_path, capsys, monkeypatch):
    """A registry whose stored vectors come from another model must not lend that model's name
    to a pack whose vectors the installed DINOv2 made (classify would then trust them)."""
    from PIL import Image

    from registry.facade import ObjectIn, Registry
    from tests.chain_models import FOLDERS
    from tests.pipeline.tiny_models_sam2_dino import TINY_DINO_DIM, build_tiny_dinov2

    monkeypatch.delenv("AGL_WEIGHTS", raising=False)
    data = tmp_path / "data"
    build_tiny_dinov2(data / "models" / FOLDERS["embedder"])
    img = tmp_path / "scene.png"
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(img)
    with Registry(data, embedding_version="other-model", embedding_dim=TINY_DINO_DIM, sync_on_write=False) as reg:
        sid = reg.register_source(img)
        vec = np.ones(TINY_DINO_DIM, np.float32) / np.sqrt(TINY_DINO_DIM)
        reg.register_objects(sid, [ObjectIn("cat", (1, 1, 9, 9), embedding=vec)], dedupe=False)
    for cls, colour in (("red", (220, 30, 30)), ("blue", (30, 40, 220))):
        (tmp_path / "classes" / cls).mkdir(parents=True, exist_ok=True)
        for i in range(2):
            Image.fromarray(np.full((32, 32, 3), colour, np.uint8)).save(tmp_path / "classes" / cls / f"{i}.png")
    rc, out, err = _cli(capsys, "domains", "build", "--data", str(data), "--name", "colours",
                        "--folders", str(tmp_path / "classes"), "--json")
    assert rc == 0, err
    meta = json.loads(out)
    assert meta["embedding_model"].startswith("dinov2") and meta["embedding_model"] != "other-model"
    assert "other-model" in err  # the user is told that this registry's objects were embedded otherwise
