"""``launch.py track``: link a video source's per-frame objects into tracks.

    python launch.py track --data DIR --source SRC_ID [--iou-weight 0.5] [--max-gap FRAMES]
        [--min-length N] [--min-iou X] [--min-cosine X] [--embedding-version V]
        [--interpolate] [--json]

Association is a Hungarian assignment on ``w·(1 − IoU) + (1 − w)·(1 − cosine)`` of the
objects' stored embeddings (IoU only where an object has none), gated by category, IoU with
the predicted box and cosine; a track may miss ``--max-gap`` frames in a row (occlusion).
Re-running replaces the tracks the tracker made, never one a person edited (see
app/workflows/tracking.py). ``--interpolate`` fills gaps inside each track with interpolated
boxes. ``--json`` prints the counts (tracks, objects linked, interpolated).
"""
from __future__ import annotations

import argparse
import json

from app.cli.common import add_data_arg, add_json_arg, ensure_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("track", help="link a video source's objects across frames into tracks")
    add_data_arg(p)
    add_json_arg(p)
    p.add_argument("--source", required=True, metavar="SRC_ID", help="the video source (src_...)")
    p.add_argument("--iou-weight", type=float, default=0.5, metavar="W",
                   help="weight of box overlap against appearance in the cost, 0..1 (default 0.5; 1 = boxes only)")
    p.add_argument("--max-gap", type=int, default=10, metavar="FRAMES",
                   help="frames in a row a track may go undetected and continue (default 10)")
    p.add_argument("--min-length", type=int, default=2, metavar="N",
                   help="drop tracks with fewer than N objects (default 2)")
    p.add_argument("--min-iou", type=float, default=0.1, metavar="X",
                   help="gate: least IoU with the track's predicted box (default 0.1)")
    p.add_argument("--min-cosine", type=float, default=0.5, metavar="X",
                   help="gate: least embedding cosine where both have one (default 0.5)")
    p.add_argument("--embedding-version", default=None, metavar="V",
                   help="stored embedding version to compare (default: the one most objects have)")
    p.add_argument("--interpolate", action="store_true",
                   help="fill gaps inside each track with interpolated boxes (detection_model 'interpolated')")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from app.workflows.tracking import track_source
    from registry.facade import Registry

    data = ensure_data_dir(args.data)
    with Registry(data, sync_on_write=False) as reg:
        out = track_source(reg, args.source, iou_weight=args.iou_weight, max_gap=args.max_gap,
                           min_length=args.min_length, min_iou=args.min_iou, min_cosine=args.min_cosine,
                           interpolate=args.interpolate, embedding_version=args.embedding_version)
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    print(f"{out['source_id']}: {out['tracks']} track(s) linking {out['objects_linked']} of "
          f"{out['objects_considered']} object(s)"
          + (f", {out['interpolated']} interpolated" if args.interpolate else "")
          + f"; replaced {out['replaced_tracks']} earlier tracker track(s), kept {out['kept_tracks']} edited/manual"
          + f" ({'embeddings ' + out['embedding_version'] if out['embedding_version'] else 'IoU only: no embeddings'})")
    if not out["objects_considered"]:
        print(f"  nothing to link: no untracked objects on its frames; label them first with "
              f"`launch.py label --data {args.data} --classes ... --source {args.source}`")
    return 0
