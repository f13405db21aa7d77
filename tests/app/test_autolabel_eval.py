"""``evaluate --auto-labels`` on a seeded registry where the right numbers are known: reviews go
through the real review workflow (relabel) and registry patch (box edit), which record the
proposal in metadata; Hungarian matching, per-class P/R/F1 and the confidence AUROC follow.

The last test runs the production wiring end to end: the real chain (scripted tiny Florence-2,
tiny SAM2, tiny DINOv2) labels scenes, a reviewer approves / relabels / rejects / draws a box,
then ``evaluate --auto-labels`` and ``suggest --strategy diversity`` run on what the chain stored
(its detection_model, derived confidences and DINOv2 embeddings of the tiny model's size)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli.main import main
from app.workflows import review as rv
from app.workflows.autolabel_eval import evaluate_auto_labels
from pipeline.al.autolabel_metrics import Box, auroc, evaluate, match_image
from tests.app.al_fixtures import add_image, add_objects, open_registry
from tests.chain_models import build_chain_models, scene_boxes, write_scene
from tests.pipeline.tiny_models_sam2_dino import TINY_DINO_DIM

B1, B2, B3, B4 = (2, 2, 20, 20), (30, 2, 50, 20), (2, 30, 20, 50), (60, 30, 90, 60)


def _seed(data_dir: Path, tmp_path: Path) -> dict:
    with open_registry(data_dir) as reg:
        s1, s2, s3, s4 = (add_image(reg, tmp_path / "imgs", i) for i in range(4))
        a, b, c, d = add_objects(reg, s1, [
            {"category": "cat", "xyxy": B1, "confidence": 0.9},  # approved as is: TP cat
            {"category": "dog", "xyxy": B2, "confidence": 0.4},  # relabelled dog -> cat: FP dog + FN cat
            {"category": "cat", "xyxy": B3, "confidence": 0.85},  # rejected: FP cat
            {"category": "dog", "xyxy": B4, "detection_model": "manual", "status": "approved"},  # missed: FN dog
        ])
        f, g, h = add_objects(reg, s2, [
            {"category": "cat", "xyxy": B1, "confidence": 0.8},  # approved: TP
            {"category": "cat", "xyxy": B2, "confidence": 0.7},  # box moved (IoU 0.90), approved: TP
            {"category": "cat", "xyxy": B3, "confidence": 0.2},  # pending: left out
        ])
        add_objects(reg, s3, [{"category": "dog", "xyxy": B1, "detection_model": "manual", "status": "approved"}])
        (k,) = add_objects(reg, s4, [{"category": "cat", "xyxy": B1, "confidence": 0.6, "detection_model": "run:run_x"}])
        for oid in (a, f, k):
            rv.apply(reg, oid, "approve", validated_by="ann")
        rv.apply(reg, b, "relabel", category="cat", validated_by="ann")
        rv.apply(reg, c, "reject", validated_by="ann")
        reg.update_object(f, xyxy=(2, 2, 20, 20.5))  # a refined mask's box (IoU 0.97): still approved as is
        reg.update_object(g, xyxy=(32, 2, 50, 20))
        rv.apply(reg, g, "approve", validated_by="ann")
        meta_b, meta_g = reg.get_object(b)["metadata"], reg.get_object(g)["metadata"]
    return {"meta_b": meta_b, "meta_g": meta_g}


def test_review_records_the_proposal_once(data_dir: Path, tmp_path: Path):
    seeded = _seed(data_dir, tmp_path)
    assert seeded["meta_b"] == {"proposed_category": "dog"}
    assert seeded["meta_g"] == {"proposed_bbox_xywh": [30.0, 2.0, 20.0, 18.0]}
    with open_registry(data_dir) as reg:
        (oid,) = [o["object_id"] for o in reg.iter_objects() if o["metadata"] == {"proposed_category": "dog"}]
        reg.update_object(oid, category="bird")  # a second relabel keeps the first proposal
        reg.update_object(oid, xyxy=(30, 2, 51, 21), metadata={"note": "x", **reg.get_object(oid)["metadata"]})
        assert reg.get_object(oid)["metadata"] == {"note": "x", "proposed_category": "dog",
                                                   "proposed_bbox_xywh": [30.0, 2.0, 20.0, 18.0]}


def test_evaluate_auto_labels_known_numbers(data_dir: Path, tmp_path: Path, capsys):
    _seed(data_dir, tmp_path)
    with open_registry(data_dir) as reg:
        r = evaluate_auto_labels(reg, detection_model="florence-2")
    assert r["outcomes"] == {"approved": 2, "relabelled": 1, "box edited": 1, "rejected": 1, "added by hand": 1,
                             "pending": 1}
    assert r["proposals"] == 5 and r["validated"] == 5 and r["images"] == 2  # image 3 (hand-labelled only) and 4 (other model) out
    cat, dog = r["per_class"]["cat"], r["per_class"]["dog"]
    assert (cat["tp"], cat["fp"], cat["fn"]) == (3, 1, 1) and cat["precision"] == cat["recall"] == cat["f1"] == 0.75
    assert (dog["tp"], dog["fp"], dog["fn"]) == (0, 1, 1) and dog["f1"] == 0.0
    assert r["overall"]["precision"] == pytest.approx(3 / 5) and r["overall"]["recall"] == pytest.approx(3 / 5)
    # right: 0.9, 0.8, 0.7; wrong: 0.4, 0.85 -> 4 of 6 pairs ordered right
    assert r["auroc"] == pytest.approx(4 / 6)
    t75 = next(t for t in r["thresholds"] if t["threshold"] == 0.75)
    assert t75["kept"] == 3 and t75["precision"] == pytest.approx(2 / 3) and t75["recall"] == pytest.approx(2 / 5)
    # every detector: run:run_x's approved box joins (image 4: one more TP)
    assert main(["evaluate", "--data", str(data_dir), "--auto-labels", "--json"]) == 0
    every = json.loads(capsys.readouterr().out)
    assert every["per_class"]["cat"]["tp"] == 4 and every["detection_models"] == {"florence-2": 5, "run:run_x": 1}
    assert main(["evaluate", "--data", str(data_dir), "--auto-labels", "--detection-model", "florence-2"]) == 0
    text = capsys.readouterr().out
    print(text)
    assert "relabelled 1 · box edited 1 · rejected 1 · added by hand 1" in text
    assert "confidence AUROC (right vs wrong) 0.667" in text and "cat                     3    1    1" in text


def test_evaluate_auto_labels_errors(data_dir: Path, tmp_path: Path, capsys):
    with open_registry(data_dir) as reg:
        add_objects(reg, add_image(reg, tmp_path / "imgs", 9), [{"category": "cat", "confidence": 0.5}])
        with pytest.raises(ValueError, match=r"no reviewed auto-labels to evaluate \(1 pending\)"):
            evaluate_auto_labels(reg)
    assert main(["evaluate", "--data", str(data_dir), "--auto-labels", "--detection-model", "yolo"]) == 2
    assert "no objects made by 'yolo'; stored detection models: florence-2 (1)" in capsys.readouterr().err


def test_metrics_pure_functions():
    # Hungarian beats greedy: greedy pairs p0-t0 (IoU 0.90) and leaves p1-t1 at 0.33; the
    # assignment matches p0-t1 (0.54) and p1-t0 (0.60)
    props = [Box("i", "cat", (0, 0, 10, 10)), Box("i", "cat", (-2, 0, 8, 10))]
    truth = [Box("i", "cat", (0.5, 0, 10.5, 10)), Box("i", "cat", (3, 0, 13, 10))]
    hits, missed = match_image(props, truth, 0.5)
    assert hits == [True, True] and missed == 0
    hits, missed = match_image(props[:1], truth, 0.5)
    assert hits == [True] and missed == 1
    assert auroc([0.9, 0.1, 0.5, 0.5], [True, False, True, False]) == pytest.approx(0.875)
    assert auroc([0.3], [True]) is None
    r = evaluate([Box("i", "cat", (0, 0, 10, 10), 0.9)], [Box("j", "dog", (0, 0, 5, 5))])
    assert r["per_class"]["cat"]["recall"] is None and r["per_class"]["dog"]["recall"] == 0.0
    with pytest.raises(ValueError, match=r"iou_thr: expected a value in \(0, 1\], got 0"):
        evaluate([], [], iou_thr=0)


def test_imported_and_hand_drawn_objects_are_truth_not_proposals(data_dir: Path, tmp_path: Path):
    from app.workflows.quality import label_of

    with open_registry(data_dir) as reg:
        src = add_image(reg, tmp_path / "imgs", 5)
        det, imported, mot = add_objects(reg, src, [
            {"category": "cat", "xyxy": B1, "confidence": 0.7, "status": "approved"},
            {"category": "cat", "xyxy": B2, "detection_model": None, "status": "approved"},  # COCO import
            {"category": "cat", "xyxy": B3, "detection_model": "mot-import", "status": "approved"},
        ])
        r = evaluate_auto_labels(reg)
        assert r["detection_models"] == {"florence-2": 1} and r["proposals"] == 1
        assert r["per_class"]["cat"] == {"tp": 1, "fp": 0, "fn": 2, "precision": 1.0, "recall": pytest.approx(1 / 3),
                                         "f1": pytest.approx(0.5)}
        assert r["outcomes"]["added by hand"] == 2
        objs = {o["object_id"]: o for o in reg.iter_objects()}
        assert label_of(objs[det]) == 1 and label_of(objs[imported]) is None and label_of(objs[mot]) is None
        tiered = reg.update_object(imported, metadata={"quality_tier": 3})
        assert label_of(tiered) == 3  # a tier a person assigned makes any reviewed object an example


@pytest.fixture
def labeled(tmp_path, data_dir, monkeypatch):
    from app.cli.serve import build_context
    from app.workflows.labeling import label_paths
    from registry.facade import ObjectIn

    monkeypatch.delenv("AGL_WEIGHTS", raising=False)
    build_chain_models(data_dir / "models")
    ctx = build_context(data_dir, profile="cpu", segmenter="sam2")
    try:
        paths = [str(write_scene(tmp_path / "photos" / f"s{i}.png", seed=50 + i)) for i in range(3)]
        report = label_paths(ctx.registry, ctx.labeler(), paths, ["cat", "dog"], confidence=0.0, progress=False)
        assert report.labeled == 3 and report.objects == 6, report.to_dict()
        reg = ctx.registry
        objs = {(o["source_id"], o["category"]): o for o in reg.iter_objects()}
        sources = sorted({s for s, _ in objs})
        rv.apply(reg, objs[(sources[0], "cat")]["object_id"], "approve", validated_by="r")
        rv.apply(reg, objs[(sources[0], "dog")]["object_id"], "relabel", category="cat", validated_by="r")
        rv.apply(reg, objs[(sources[1], "cat")]["object_id"], "reject", validated_by="r")
        rv.apply(reg, objs[(sources[1], "dog")]["object_id"], "approve", validated_by="r")
        x0, y0, x1, y1 = scene_boxes()["cat"]
        reg.register_objects(sources[1], [ObjectIn(category="cat", xyxy=(x0 + 2, y0 + 2, x1 - 2, y1 - 2),
                                                   detection_model="manual", validation_status="approved",
                                                   validated_by="r")], dedupe=False)
        yield {"ctx": ctx, "objs": objs, "sources": sources}
    finally:
        ctx.registry.close()


def test_chain_then_review_then_evaluate_and_suggest(labeled, data_dir, capsys):
    model = labeled["ctx"].detection_model
    assert main(["evaluate", "--data", str(data_dir), "--auto-labels", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["detection_models"] == {model: 4}
    assert r["outcomes"] == {"approved": 2, "relabelled": 1, "box edited": 0, "rejected": 1, "added by hand": 1,
                             "pending": 2}
    # image 0: cat TP; the dog relabelled to cat: a dog FP and a cat FN. Image 1: dog TP; the
    # rejected cat matches the cat the reviewer drew in its place (IoU > 0.5): TP, nothing missed
    cat = r["per_class"]["cat"]
    assert (cat["tp"], cat["fp"], cat["fn"]) == (2, 0, 1)
    assert (r["per_class"]["dog"]["tp"], r["per_class"]["dog"]["fp"], r["per_class"]["dog"]["fn"]) == (1, 1, 0)
    assert r["auroc"] is not None and 0.0 <= r["auroc"] <= 1.0
    # diversity over the chain's stored DINOv2 vectors: the two pending objects of the third scene
    assert main(["suggest", "--data", str(data_dir), "--n", "2", "--strategy", "diversity", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["reviewed_seeds"] == 4 and s["pool"] == 2  # the drawn box has no embedding
    assert {o["source_id"] for o in s["objects"]} == {labeled["sources"][2]}
    from app.workflows.suggest import open_registry

    with open_registry(data_dir) as reg:
        assert reg.embedding_dim == TINY_DINO_DIM
