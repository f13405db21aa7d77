"""``launch.py runs``: the training runs recorded in a data folder, newest first.

    python launch.py runs --data DIR [--run RUN_ID] [--json]

One line per run (id, status, model, task, dataset version, epochs, best mAP50 / mAP50-95, best
weights); ``--run`` prints one run with its per-epoch metrics. See docs/training.md.
"""
from __future__ import annotations

import argparse
import json

from app.cli.common import add_data_arg, add_json_arg, ensure_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list training runs (launch.py train) and their best metrics")
    add_data_arg(p)
    add_json_arg(p)
    p.add_argument("--run", default=None, metavar="RUN_ID", help="one run with its per-epoch metrics")
    p.set_defaults(func=run)


def _num(value) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def run(args: argparse.Namespace) -> int:
    from registry.facade import Registry

    with Registry(ensure_data_dir(args.data), sync_on_write=False) as reg:
        rows = [reg.get_run(args.run)] if args.run else reg.list_runs()
        epochs = {r["run_id"]: reg.run_epochs(r["run_id"]) for r in rows}
    if args.json:
        out = [{**r, "epochs": epochs[r["run_id"]] if args.run else len(epochs[r["run_id"]])} for r in rows]
        print(json.dumps(out[0] if args.run else out, indent=2, ensure_ascii=False, default=str))
        return 0
    if not rows:
        print("no training runs yet: python launch.py train --data DIR --dataset NAME --model yolo11n.yaml")
        return 0
    for r in rows:
        best = r.get("best_metrics") or {}
        print(f"{r['run_id']}  {r['status']:8s}  {r['model']:18s} {r['task']:7s}  "
              f"{r['dataset_name']} v{r['dataset_version']}  {len(epochs[r['run_id']])} epochs  "
              f"mAP50 {_num(best.get('box_map50'))}  mAP50-95 {_num(best.get('box_map50_95'))}  "
              f"{r.get('best_weights') or '(no weights)'}")
    if args.run:
        for e in epochs[args.run]:
            print(f"  epoch {e['epoch']:3d}: box_loss {_num(e['box_loss'])}  mAP50 {_num(e['box_map50'])}  "
                  f"mAP50-95 {_num(e['box_map50_95'])}" + (f"  mask mAP50 {_num(e['mask_map50'])}"
                                                           if e.get("mask_map50") is not None else ""))
    return 0
