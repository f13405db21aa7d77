"""``launch.py evaluate``: how good is a trained run, or how good were the auto-labels.

    python launch.py evaluate --data DIR --run RUN_ID [--split test] [--json]
    python launch.py evaluate --data DIR --auto-labels [--detection-model NAME] [--json]

``--run``: the run's best weights predict the chosen split of the dataset version it was trained
on; pycocotools' COCOeval scores them (bbox, and segm for segmentation models): mAP, mAP50,
per-class AP, a confusion matrix (PNG + numbers) and PR curves (PNG), written under
``<data>/runs/<run_id>/eval/`` (see app/workflows/evaluate.py and docs/training.md).

``--auto-labels``: compares what the detector proposed with what reviewers validated.
"""
from __future__ import annotations

import argparse
import json
import os

from app.cli.common import add_data_arg, add_json_arg, ensure_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained run (--run) or the auto-labels (--auto-labels)")
    add_data_arg(p)
    add_json_arg(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", default=None, metavar="RUN_ID", help="a training run id (run_…)")
    what.add_argument("--auto-labels", action="store_true",
                      help="score the auto-labels against what reviewers validated")
    p.add_argument("--split", choices=("train", "val", "test"), default="test",
                   help="dataset split to evaluate a run on (default test)")
    p.add_argument("--conf", type=float, default=0.001,
                   help="lowest prediction score kept for --run (default 0.001, as COCO mAP expects)")
    p.add_argument("--device", default=None, help="cpu, cuda or a CUDA index (default: the run's device)")
    p.add_argument("--detection-model", default=None, help="with --auto-labels: only this detector's objects")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.auto_labels:
        return run_auto_labels(args)
    return run_run(args)


def run_auto_labels(args: argparse.Namespace) -> int:
    """``--auto-labels``: P/R/F1 per class at IoU 0.5 and confidence AUROC (app/workflows/autolabel_eval.py)."""
    from app.workflows.autolabel_eval import evaluate_auto_labels, summary_lines
    from registry.facade import Registry

    with Registry(ensure_data_dir(args.data), sync_on_write=False) as reg:
        result = evaluate_auto_labels(reg, detection_model=args.detection_model)
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else "\n".join(summary_lines(result)))
    return 0


def run_run(args: argparse.Namespace) -> int:
    """``--run RUN_ID``: COCOeval of the run's best weights on ``--split``."""
    from app.workflows.evaluate import evaluate_run, summary_lines
    from registry.facade import Registry

    os.environ.setdefault("YOLO_OFFLINE", "1")
    if args.json:  # ultralytics logs to stdout (its first run announces a settings file): keep it JSON
        os.environ.setdefault("YOLO_VERBOSE", "False")
    data = ensure_data_dir(args.data)
    if not 0.0 <= args.conf <= 1.0:
        raise ValueError(f"--conf: expected a value in [0, 1], got {args.conf}")
    with Registry(data, sync_on_write=False) as reg:
        result = evaluate_run(reg, data, args.run, split=args.split, conf=args.conf, device=args.device)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    else:
        print("\n".join(summary_lines(result)))
    return 0
