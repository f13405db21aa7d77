"""Does the loop learn? Train a tiny YOLO on learnable synthetic shapes, evaluate it, compare with
the same architecture before training (the reference, measured in the same run).

    python launch.py bench train [--images 48] [--epochs 30] [--imgsz 96] [--model yolo11n.yaml] [--json]

Data: ``--images`` dark, noisy 96x96 images, each with 1-3 bright filled shapes — squares
("square") and discs ("disc") at random places and sizes — registered with their exact boxes and
masks, built into a dataset (split 0.7/0.15/0.15 by image). The run goes through the real
workflow (``app.workflows.train.train_run``: YOLO export, ultralytics' trainer, runs +
epochs recorded) and ``app.workflows.evaluate.evaluate_run`` (COCOeval on the test split).
The reference is ``evaluate_run`` on a run whose "best weights" are the untrained model (epoch 0).
Printed: seconds per epoch, mAP50 / mAP on test trained vs untrained, and the last epoch's
validation mAP50 from ultralytics.

Measured here (2 CPU cores shared with other work, so load-dependent): ``--images 32 --epochs 15
--imgsz 64``: 20 s of training (1.3 s/epoch), test mAP50 0.000 trained and 0.000 untrained;
``--images 32 --epochs 20 --imgsz 96``: 3.6 s/epoch, 0.000 as well. A YOLO trained from random
weights needs far more epochs than a one-minute benchmark allows: to see it learn, run e.g.
``--images 200 --epochs 150`` (minutes on a CPU, seconds per epoch on a GPU) or fine-tune a
local ``.pt`` checkpoint (``--model yolo11n.pt``).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

# Short runs: no warm-up epochs and no mosaic (ultralytics' defaults are tuned for 100+ epochs).
FAST_SCHEDULE = {"optimizer": "AdamW", "warmup_epochs": 0, "mosaic": 0.0, "close_mosaic": 0, "seed": 0}


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=48, help="synthetic images (default 48)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    parser.add_argument("--imgsz", type=int, default=96, help="training size in pixels (default 96)")
    parser.add_argument("--model", default="yolo11n.yaml", help="architecture or checkpoint (default yolo11n.yaml)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lr0", type=float, default=0.005, help="initial learning rate (AdamW; default 0.005)")
    parser.add_argument("--workdir", default=None, help="keep the data folder here (default: a temp dir)")


def _shapes(reg, root: Path, n: int, seed: int = 0) -> int:
    import cv2
    import numpy as np
    from PIL import Image

    from registry.facade import ObjectIn

    rng = np.random.default_rng(seed)
    count = 0
    for i in range(n):
        img = rng.integers(0, 50, (96, 96, 3), dtype=np.uint8)
        objs = []
        for _ in range(int(rng.integers(1, 4))):
            kind = "square" if rng.random() < 0.5 else "disc"
            r = int(rng.integers(8, 18))
            cx, cy = (int(v) for v in rng.integers(r + 1, 96 - r - 1, 2))
            mask = np.zeros((96, 96), np.uint8)
            if kind == "square":
                cv2.rectangle(mask, (cx - r, cy - r), (cx + r, cy + r), 1, -1)
            else:
                cv2.circle(mask, (cx, cy), r, 1, -1)
            m = mask.astype(bool)
            if any(np.logical_and(m, o.mask).any() for o in objs):
                continue  # keep shapes apart: one object, one box
            img[m] = rng.integers(180, 255, 3, dtype=np.uint8)
            ys, xs = np.nonzero(m)
            objs.append(ObjectIn(kind, (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)),
                                 mask=m, confidence=1.0, validation_status="approved"))
        path = root / f"shape_{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
        reg.register_objects(reg.register_source(path), objs, dedupe=False)
        count += len(objs)
    return count


def run(args: argparse.Namespace) -> dict:
    from app.workflows.evaluate import evaluate_run
    from app.workflows.train import TrainRequest, run_dir, train_run
    from registry.datasets import build_dataset
    from registry.facade import Registry

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="agl-bench-train-"))
    data = work / "data"
    try:
        with Registry(data, embedding_dim=8, embedding_version="bench", index="exact", sync_on_write=False) as reg:
            objects = _shapes(reg, work / "raw", args.images)
            built = build_dataset(reg, "shapes", None, [0.7, 0.15, 0.15], 0)
            t0 = time.perf_counter()
            row = train_run(reg, data, TrainRequest(built["dataset_id"], args.model, epochs=args.epochs,
                                                    imgsz=args.imgsz, batch=8, device=args.device,
                                                    extra=dict(FAST_SCHEDULE, lr0=args.lr0)), quiet=True)
            seconds = time.perf_counter() - t0
            trained = evaluate_run(reg, data, row["run_id"], split="test")
            # the reference: the same architecture untrained, saved as a checkpoint by ultralytics
            from ultralytics import YOLO

            untrained_pt = run_dir(data, row["run_id"]) / "untrained.pt"
            model = YOLO(row["params"]["resolved_model"])
            model.model.names = YOLO(row["best_weights"]).names
            model.save(str(untrained_pt))
            ref_id = reg.create_run(model=args.model, task=row["task"], params=row["params"],
                                    dataset_id=row["dataset_id"], dataset_name=row["dataset_name"],
                                    dataset_version=row["dataset_version"], export_path=row["export_path"])
            reg.update_run(ref_id, status="finished", best_weights=str(untrained_pt))
            untrained = evaluate_run(reg, data, ref_id, split="test")
            epochs = reg.run_epochs(row["run_id"])
        result = {
            "images": args.images, "objects": objects, "epochs": args.epochs, "imgsz": args.imgsz,
            "model": args.model, "train_seconds": round(seconds, 1),
            "seconds_per_epoch": round(seconds / max(len(epochs), 1), 2),
            "test_map50_trained": round(trained["bbox"]["map50"], 3), "test_map_trained": round(trained["bbox"]["map"], 3),
            "test_map50_untrained": round(untrained["bbox"]["map50"], 3),
            "val_map50_last_epoch": round(epochs[-1]["box_map50"] or 0.0, 3) if epochs else None,
            "per_class_ap50": {k: v["ap50"] for k, v in trained["bbox"]["per_class"].items()},
        }
        return result
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
