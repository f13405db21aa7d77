"""``launch.py import``: import a COCO or YOLO dataset into the registry.

    python launch.py import --data DIR --format coco|yolo PATH [--images DIR] [--validated]
        [--project NAME] [--batch-size N] [--allow-outside-images] [--json]
    python launch.py import --data DIR --format mot --source SRC_ID FILE [--category NAME]
        [--class-names "a,b"] [--validated] [--batch-size FRAMES] [--json]

PATH is the COCO JSON file, or the YOLO ``data.yaml`` (or its folder), or a MOTChallenge
``gt.txt``/``det.txt`` (or its sequence folder) for the frames of video source ``--source``
(registry/importers/mot_import.py). Bad items are reported
and skipped; a malformed file imports nothing. COCO ``file_name`` values that lead outside the
images folder (``../``, absolute paths, symlinks to elsewhere) are refused one by one unless
``--allow-outside-images`` is given. Exit status 0 when every item was imported, 1
when some were skipped, 2 on a malformed file.
"""
from __future__ import annotations

import argparse
import json

from app.cli.common import add_data_arg, add_json_arg, ensure_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import a COCO, YOLO or MOT dataset into the registry")
    add_data_arg(p)
    add_json_arg(p)
    p.add_argument("--format", dest="fmt", choices=("coco", "yolo", "mot"), required=True)
    p.add_argument("--source", default=None, metavar="SRC_ID", help="MOT: the video source whose frames the file labels")
    p.add_argument("--category", default=None, help='MOT: one category for every line (default: the class column, else "object")')
    p.add_argument("--class-names", default=None, metavar='"a,b"', help="MOT: names of class numbers 1, 2, ... in order")
    p.add_argument("path", help="COCO json file, or YOLO data.yaml (or its folder)")
    p.add_argument("--images", default=None, help="COCO: folder of the images (default: next to the json)")
    p.add_argument("--validated", action="store_true", help="mark imported objects approved")
    p.add_argument("--project", default=None)
    p.add_argument("--batch-size", type=int, default=100, help="images per transaction (default 100)")
    p.add_argument("--allow-outside-images", action="store_true",
                   help="COCO: accept file_name paths that lead outside the images folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from registry.facade import Registry
    from registry.importers.coco_import import import_coco
    from registry.importers.yolo_import import import_yolo

    if args.fmt == "mot" and not args.source:
        raise ValueError("--format mot: expected --source SRC_ID (the video source, from launch.py video add), got none")
    data = ensure_data_dir(args.data)
    with Registry(data, sync_on_write=False) as reg:
        if args.fmt == "mot":
            from registry.importers.mot_import import import_mot

            names = None
            if args.class_names:
                names = {k: n.strip() for k, n in enumerate(args.class_names.split(","), 1) if n.strip()}
            report = import_mot(reg, args.source, args.path, category=args.category, class_names=names,
                                validated=args.validated, project=args.project, batch_size=args.batch_size)
        elif args.fmt == "coco":
            report = import_coco(reg, args.path, images_dir=args.images, validated=args.validated,
                                 project=args.project, batch_size=args.batch_size,
                                 allow_outside_images=args.allow_outside_images)
        else:
            if args.images:
                print("note: --images is ignored for YOLO (image folders come from data.yaml)")
            report = import_yolo(reg, args.path, validated=args.validated, project=args.project,
                                 batch_size=args.batch_size)
    print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if args.json else report.summary())
    return 1 if report.errors else 0
