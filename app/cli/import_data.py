"""``launch.py import``: import a COCO or YOLO dataset into the registry.

    python launch.py import --data DIR --format coco|yolo PATH [--images DIR] [--validated]
        [--project NAME] [--batch-size N] [--allow-outside-images] [--json]

PATH is the COCO JSON file, or the YOLO ``data.yaml`` (or its folder). Bad items are reported
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
    p = sub.add_parser("import", help="import a COCO or YOLO dataset into the registry")
    add_data_arg(p)
    add_json_arg(p)
    p.add_argument("--format", dest="fmt", choices=("coco", "yolo"), required=True)
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

    data = ensure_data_dir(args.data)
    with Registry(data, sync_on_write=False) as reg:
        if args.fmt == "coco":
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
