"""``launch.py propagate``: follow frame K's masks through a video with SAM2.1 (or GrabCut).

    python launch.py propagate --data DIR --source SRC_ID --from-frame K [--objects OBJ_IDS]
        [--max-frames N] [--backward] [--drift-threshold T] [--profile cpu|gpu]
        [--device auto|cpu|cuda] [--weights-dir DIR] [--json]

Prompts with the objects on stored frame K (all of them unless ``--objects`` names some, comma
separated), writes one object per later frame, linked into each prompting object's track
(:mod:`app.workflows.propagate`). Without SAM2.1 video weights it falls back to per-frame
GrabCut and prints a warning line on stderr. ``--json`` prints the workflow's result.
Exit status: 0 when done (drift is reported, not an error), 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.cli.common import add_data_arg, add_json_arg, ensure_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    from pipeline.models.specs import PROFILES

    p = sub.add_parser("propagate", help="propagate frame K's masks through a video source's frames")
    add_data_arg(p)
    add_json_arg(p)
    p.add_argument("--source", required=True, metavar="SRC_ID", help="the video source")
    p.add_argument("--from-frame", required=True, type=int, metavar="K",
                   help="original 0-based index of the stored frame whose objects prompt")
    p.add_argument("--objects", default=None, metavar="OBJ_IDS",
                   help="comma-separated object ids on frame K (default: all of them)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="follow at most N stored frames after K (default: to the end)")
    p.add_argument("--backward", action="store_true", help="follow the frames before K instead")
    p.add_argument("--drift-threshold", type=float, default=None, metavar="T",
                   help="score below which an object drifts and stops (default 0.5 for SAM2, 0.15 for GrabCut)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu", help="model profile (default cpu)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--weights-dir", type=Path, default=None,
                   help="where model folders live (default: $AGL_WEIGHTS, else <data>/models)")
    p.set_defaults(func=run)


def _summary(res: dict) -> str:
    lines = [f"{res['written']} object(s) written on {res['frames']} frame(s) "
             f"{'before' if res['backward'] else 'after'} frame {res['from_frame']} "
             f"from {len(res['prompts'])} prompt(s) with {res['segmenter']}"
             + (f"; {res['replaced']} earlier propagated object(s) replaced" if res["replaced"] else "")]
    for pid, tid in res["tracks"].items():
        lines.append(f"  {pid} -> track {tid}")
    for d in res["drift"]:
        lines.append(f"  drift: {d['object_id']} at frame {d['frame_idx']} (score {d['score']:.2f}); "
                     "re-prompt from there")
    if res["kept"]:
        lines.append(f"  {len(res['kept'])} frame(s) kept their existing track object instead "
                     f"(e.g. {res['kept'][0]['kept_object']} on frame {res['kept'][0]['frame_idx']})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from app.cli.models import weights_dir_of
    from app.workflows.propagate import propagate
    from pipeline.models.manager import ModelManager
    from registry.facade import Registry

    objects = [o.strip() for o in args.objects.split(",") if o.strip()] if args.objects else None
    device = None if args.device in (None, "auto") else args.device
    manager = ModelManager(profile=args.profile, weights_dir=weights_dir_of(args), device=device)
    data = ensure_data_dir(args.data)
    with Registry(data, sync_on_write=False) as reg:
        res = propagate(manager, reg, args.source, args.from_frame, object_ids=objects, max_frames=args.max_frames,
                        backward=args.backward, drift_threshold=args.drift_threshold, progress=not args.json)
    if res["warning"]:
        print(f"warning: {res['warning']}", file=sys.stderr)
    print(json.dumps(res, indent=2) if args.json else _summary(res))
    return 0
