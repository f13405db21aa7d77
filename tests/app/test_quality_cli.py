"""``launch.py quality train|score`` on a seeded registry whose review outcomes depend on the
embedding: the held-out accuracy beats both baselines, ``score`` fills ``quality_score`` in
[0, 1] for every embedded object, and Review's "lowest quality first" ordering surfaces bad ones.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.cli.main import main
from app.workflows import review as rv
from tests.app.al_fixtures import add_image, add_objects, open_registry
from tests.pipeline.al.synthetic import quality_set

DIM = 16


def _seed(data_dir: Path, tmp_path: Path) -> dict:
    data = quality_set(seed=3, n=480, n_images=40, dim=DIM)
    bad_ids: set[str] = set()
    relabelled = 0
    with open_registry(data_dir, DIM) as reg:
        sources = [add_image(reg, tmp_path / "imgs", i, size=(48, 64)) for i in range(40)]
        for img, src in enumerate(sources):
            rows = np.flatnonzero(data["image"] == img)
            ids = add_objects(reg, src, [{"category": f"c{data['label'][i]}", "confidence": float(data["conf"][i]),
                                          "embedding": data["x"][i], "xyxy": (1 + i % 30, 1, 12 + i % 30, 12),
                                          "status": "approved" if data["good"][i] else "rejected"} for i in rows])
            bad_ids |= {oid for oid, i in zip(ids, rows, strict=True) if not data["good"][i]}
            bad_here = [oid for oid, i in zip(ids, rows, strict=True) if not data["good"][i]]
            if img < 10 and bad_here:  # a bad crop may also be relabelled (approved, corrected): still bad
                rv.apply(reg, bad_here[0], "relabel", category="other", validated_by="t")
                relabelled += 1
        # a few pending objects without review get a score too
        add_objects(reg, sources[0], [{"category": "c1", "confidence": 0.5, "embedding": data["x"][0]}])
    assert relabelled >= 5
    return {"bad": bad_ids}


def test_quality_train_then_score(data_dir: Path, tmp_path: Path, capsys):
    seeded = _seed(data_dir, tmp_path)
    assert main(["quality", "score", "--data", str(data_dir)]) == 2
    assert "run `launch.py quality train --data DIR` first" in capsys.readouterr().err
    assert main(["quality", "train", "--data", str(data_dir), "--epochs", "8", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    with capsys.disabled():
        print(f"\nquality train on the registry: held-out pairwise accuracy {res['accuracy']['test']:.3f} "
              f"vs {res['baselines']} ({res['pairs']['test']} pairs)")
    assert res["examples"] == 480 and res["embedding_dim"] == DIM and res["bad"] == len(seeded["bad"])
    assert res["accuracy"]["test"] > 0.8
    assert res["accuracy"]["test"] > max(res["baselines"].values()) + 0.1
    assert (Path(res["checkpoint"]) / "quality.pt").is_file()
    assert main(["quality", "score", "--data", str(data_dir)]) == 0
    assert "quality_score set on 481 object(s)" in capsys.readouterr().out
    with open_registry(data_dir, DIM) as reg:
        objs = list(reg.iter_objects())
        assert all(o["quality_score"] is not None and 0 <= o["quality_score"] <= 1 for o in objs)
        worst = reg.list_objects(order="quality_score_asc", status=["approved", "rejected"], limit=40)
        hit = sum(o["object_id"] in seeded["bad"] for o in worst)
        assert hit >= 32, hit  # 35 % of the objects are bad; the lowest-scored 40 are mostly bad
        q = rv.load_queue(reg, rv.ReviewQuery(status="all", order="quality_score_asc"), page_size=5)
        assert q.ids == [o["object_id"] for o in worst[:5]]
