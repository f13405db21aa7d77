"""``launch.py video``: add a video's frames to the registry, or look at a video file.

    python launch.py video add --data DIR FILE [--every N | --fps F] [--scene-change]
        [--scene-threshold T] [--max-frames M] [--project NAME] [--no-copy] [--json]
    python launch.py video probe FILE [--json]

``add`` registers FILE as a video source (the same file again finds the same source) and stores
the sampled frames as PNGs under ``<data>/media/frames/<source_id>/`` (see
app/workflows/video.py); a progress bar goes to stderr; ``--json`` prints
``{"source_id": ..., "frames": N, ...}``. A file that is not a usable video (empty, corrupt,
truncated, audio only, unknown codec) is one ``error:`` line naming it, exit status 2, and
nothing registered.
"""
from __future__ import annotations

import argparse
import json

from app.cli.common import add_data_arg, add_json_arg, ensure_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("video", help="add a video's frames to the registry (video add), or probe a file")
    vsub = p.add_subparsers(dest="video_command", metavar="SUBCOMMAND", required=True)

    add = vsub.add_parser("add", help="register a video and store its sampled frames")
    add_data_arg(add)
    add_json_arg(add)
    add.add_argument("file", metavar="FILE", help="the video file (mp4, mkv, avi, mov, webm, ...)")
    rate = add.add_mutually_exclusive_group()
    rate.add_argument("--every", type=int, default=None, metavar="N", help="keep every N-th frame (0, N, 2N, ...)")
    rate.add_argument("--fps", type=float, default=None, metavar="F", help="keep about F frames per second")
    add.add_argument("--scene-change", action="store_true",
                     help="keep only frames whose grey histogram differs from the last kept one")
    add.add_argument("--scene-threshold", type=float, default=None, metavar="T",
                     help="histogram distance in (0, 1) that counts as a new scene (default 0.3)")
    add.add_argument("--max-frames", type=int, default=None, metavar="M", help="keep at most M frames")
    add.add_argument("--project", default=None, help="project name stored with the source")
    add.add_argument("--no-copy", action="store_true",
                     help="do not copy the video into the data folder (its frames are stored either way)")
    add.set_defaults(func=run_add)

    probe = vsub.add_parser("probe", help="print a video file's size, fps, frame count, duration and codec")
    add_json_arg(probe)
    probe.add_argument("file", metavar="FILE")
    probe.set_defaults(func=run_probe)


def run_add(args: argparse.Namespace) -> int:
    from app.workflows.video import add_video
    from pipeline.video import probe_video
    from pipeline.video.sampling import SCENE_THRESHOLD
    from registry.facade import Registry

    probe_video(args.file)  # an unusable file fails before the data folder is touched
    data = ensure_data_dir(args.data)
    with Registry(data, sync_on_write=False) as reg:
        out = add_video(reg, args.file, every=args.every, fps=args.fps, scene_change=args.scene_change,
                        max_frames=args.max_frames,
                        scene_threshold=SCENE_THRESHOLD if args.scene_threshold is None else args.scene_threshold,
                        copy=not args.no_copy, project=args.project, progress=not args.json)
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        again = " (already registered)" if out["existing"] else ""
        print(f"{out['source_id']}{again}: {out['frames']} frame(s) of {args.file} "
              f"({out['new_frames']} new; {out['width']}x{out['height']}, {out['fps']:g} fps, "
              f"{out['frame_count']} frames, {out['codec']})")
    return 0


def run_probe(args: argparse.Namespace) -> int:
    from pipeline.video import probe_video

    info = probe_video(args.file).to_dict()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{args.file}: {info['width']}x{info['height']}, {info['fps']:g} fps, {info['frame_count']} frames, "
              f"{info['duration']:g} s, codec {info['codec']} (read with {info['backend']})")
    return 0
