"""``launch.py train``: train a YOLO model on a dataset version and record the run.

    python launch.py train --data DIR --dataset NAME_OR_ID --model yolo11n.pt|yolo11n-seg.yaml|PATH
        [--version N] [--epochs N] [--imgsz S] [--batch B] [--device cpu|cuda] [--workers W]
        [--patience P] [--seed S] [--json]

The dataset version is exported as YOLO for the model's task (detect/segment) unless an export
of it already exists; ultralytics' trainer runs offline (a ``.yaml`` model starts from random
weights, a ``.pt`` must be on disk: nothing is downloaded). Each epoch is recorded in the
registry (``runs`` / ``run_epochs``) and shown on a progress bar. The first Ctrl+C stops after
the current batch (the epoch is validated and saved; the run ends ``stopped`` with the best
weights so far); a second one interrupts at once (the weights saved so far are kept).
Exit status 0 when the run finished or was stopped, 2 on a usage error.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import threading

from app.cli.common import add_data_arg, add_json_arg, ensure_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a YOLO model on a dataset version (recorded as a run)")
    add_data_arg(p)
    add_json_arg(p)
    p.add_argument("--dataset", required=True, help="dataset name (latest version) or ds_… id")
    p.add_argument("--version", type=int, default=None, help="dataset version number (with a name)")
    p.add_argument("--model", required=True,
                   help="yolo11n.pt (a local checkpoint) | yolo11n-seg.yaml (random init) | a path")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--imgsz", type=int, default=640, help="square training size in pixels (default 640)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--workers", type=int, default=2, help="dataloader processes (default 2)")
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience in epochs")
    p.add_argument("--seed", type=int, default=None, help="training seed")
    p.set_defaults(func=run)


class _StopOnFirstInterrupt:
    """First SIGINT sets ``event`` (graceful stop); the second raises KeyboardInterrupt.

    Dataloader worker processes are forked with this handler and get the same Ctrl+C (one
    process group): there it does nothing, so only the training process decides.
    """

    def __init__(self, event: threading.Event, say) -> None:
        self.event, self.say, self.previous = event, say, None
        self.pid = os.getpid()

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        if os.getpid() != self.pid:
            return  # a forked dataloader worker: the training process handles Ctrl+C
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        self.say("stop requested: finishing this epoch's validation and keeping the best weights "
                 "(Ctrl+C again to interrupt now)")

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def run(args: argparse.Namespace) -> int:
    import sys

    from app.workflows.train import TrainRequest, epoch_line, execute_run, start_run
    from registry.facade import Registry

    os.environ.setdefault("YOLO_OFFLINE", "1")  # never reach the hub / GitHub from a training run
    if args.json:  # ultralytics logs to stdout (its first run announces a settings file): keep it JSON
        os.environ.setdefault("YOLO_VERBOSE", "False")
    extra = {k: getattr(args, k) for k in ("patience", "seed") if getattr(args, k) is not None}
    req = TrainRequest(dataset=args.dataset, model=args.model, epochs=args.epochs, imgsz=args.imgsz,
                       batch=args.batch, device=args.device, workers=args.workers, version=args.version, extra=extra)
    data = ensure_data_dir(args.data)
    stop = threading.Event()
    with Registry(data, sync_on_write=False) as reg:
        run_id = start_run(reg, data, req)
        from tqdm import tqdm

        bar = tqdm(total=req.epochs, unit="epoch", desc=run_id, disable=args.json, file=sys.stderr)

        def on_epoch(epoch: int, metrics: dict) -> None:
            bar.update(1)
            bar.set_postfix_str(epoch_line(epoch, req.epochs, metrics).split(": ", 1)[-1])

        def say(line: str) -> None:
            if not args.json:
                bar.write(line, file=sys.stderr)

        with _StopOnFirstInterrupt(stop, say):
            row = execute_run(reg, data, run_id, stop=stop, on_epoch=on_epoch, say=say, quiet=True)
        bar.close()
        epochs = reg.run_epochs(run_id)
    if args.json:
        print(json.dumps({"run": row, "epochs": epochs}, indent=2, ensure_ascii=False, default=str))
    else:
        best = row.get("best_metrics") or {}
        print(f"{run_id} {row['status']}: {len(epochs)} epochs on {row['dataset_name']} v{row['dataset_version']}; "
              f"best epoch {best.get('best_epoch')}: mAP50 {best.get('box_map50', 0):.3f}, "
              f"mAP50-95 {best.get('box_map50_95', 0):.3f}; weights {row['best_weights']}")
        print(f"evaluate it: python launch.py evaluate --data {data} --run {run_id}")
    return 0
