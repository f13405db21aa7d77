"""``launch.py export``: build a dataset (filter + leak-free split) and export it as YOLO or COCO.

    python launch.py export --data DIR --format yolo|coco --task detect|segment --out DIR
        [--dataset NAME] [--split 0.8,0.1,0.1] [--seed N] [--min-confidence X]
        [--validated-only] [--categories a,b] [--project NAME] [--zip] [--overwrite]
        [--no-background] [--json]

With ``--dataset NAME`` naming an existing dataset and no filter/split option, its latest
version (or ``--version N``) is exported as built, so an export can be reproduced exactly.
Otherwise a new version of the dataset (default name ``export``) is built first.

Images without objects (background images) are exported by default (an empty YOLO label file,
a COCO image entry without annotations); ``--no-background`` leaves them out. The export is
written under a temporary name beside OUT and renamed when complete (OUT.zip too), so a killed
export never leaves a half-written file at a final name.
"""
from __future__ import annotations

import argparse
import json

from app.cli.common import add_data_arg, add_json_arg, ensure_data_dir

_BUILD_FLAGS = ("split", "seed", "min_confidence", "validated_only", "categories", "project")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="build a dataset and export it as YOLO or COCO")
    add_data_arg(p)
    add_json_arg(p)
    p.add_argument("--format", dest="fmt", choices=("yolo", "coco", "mot"), required=True,
                   help="yolo | coco (a dataset) | mot (a video source's tracks as MOTChallenge gt; needs --source)")
    p.add_argument("--source", default=None, metavar="SRC_ID", help="the video source (with --format mot)")
    p.add_argument("--task", choices=("detect", "segment"), default="detect")
    p.add_argument("--out", required=True, help="output folder (new or empty)")
    p.add_argument("--dataset", default=None, help="dataset name (default: 'export'; an existing name is re-exported)")
    p.add_argument("--version", type=int, default=None, help="dataset version to export (with --dataset)")
    p.add_argument("--split", default=None, help="train,val,test ratios (default 0.8,0.1,0.1)")
    p.add_argument("--seed", type=int, default=None, help="split seed (default 0)")
    p.add_argument("--min-confidence", type=float, default=None)
    p.add_argument("--validated-only", action="store_true", default=None, help="approved objects only")
    p.add_argument("--categories", default=None, help="comma-separated category names")
    p.add_argument("--project", default=None)
    p.add_argument("--rebuild", action="store_true", help="build a new version even for an existing --dataset")
    p.add_argument("--zip", action="store_true", help="also write OUT.zip")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    p.add_argument("--no-background", dest="background", action="store_false",
                   help="leave out images that have no objects (exported by default)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from registry.datasets import DatasetFilter, build_dataset, get_dataset
    from registry.export import export_dataset
    from registry.facade import Registry

    data = ensure_data_dir(args.data)
    if args.fmt == "mot":
        return _run_mot(args, data)
    with Registry(data, sync_on_write=False) as reg:
        build_requested = args.rebuild or any(getattr(args, f) not in (None, False) for f in _BUILD_FLAGS)
        built = None
        dataset_id = None
        if args.dataset and not build_requested:
            try:
                dataset_id = get_dataset(reg, args.dataset, args.version)["dataset_id"]
            except ValueError:
                dataset_id = None  # a new name: build it
        if dataset_id is None:
            flt = DatasetFilter(
                categories=[c.strip() for c in args.categories.split(",") if c.strip()] if args.categories else None,
                min_confidence=args.min_confidence,
                validated_only=bool(args.validated_only),
                project=args.project,
            )
            built = build_dataset(reg, args.dataset or "export", flt, args.split, args.seed or 0, fmt=args.fmt)
            dataset_id = built["dataset_id"]
        result = export_dataset(reg, dataset_id, args.out, args.fmt, args.task, zip=args.zip,
                                overwrite=args.overwrite, background=args.background)
    if args.json:
        print(json.dumps({"build": built, "export": result}, indent=2, ensure_ascii=False, default=str))
        return 0
    if built:
        r = built["ratios"]
        print(f"built {built['name']} v{built['version']} ({built['dataset_id']}): {built['object_count']} objects "
              f"in {built['image_count']} images; achieved image ratios train {r['train']:.3f} / "
              f"val {r['val']:.3f} / test {r['test']:.3f}")
    for split, c in result["counts"].items():
        if c["images"]:
            print(f"  {split:5s} {c['images']:6d} images {c['objects']:7d} objects"
                  + (f" ({c['background']} background images)" if c.get("background") else ""))
    if result["skipped"]:
        print(f"  skipped {len(result['skipped'])} images: " + "; ".join(s["reason"] for s in result["skipped"][:5]))
    print(f"exported {args.fmt} {args.task} to {result['out_dir']}" + (f" and {result['zip']}" if result["zip"] else ""))
    return 0


def _run_mot(args: argparse.Namespace, data) -> int:
    """``--format mot --source SRC_ID``: the source's tracks as ``<out>/<seq>/gt/gt.txt`` + ``seqinfo.ini``."""
    from app.workflows.tracking import export_mot
    from registry.facade import Registry

    if not args.source:
        raise ValueError("--format mot: expected --source SRC_ID (the video source whose tracks to export), got none")
    with Registry(data, sync_on_write=False) as reg:
        result = export_mot(reg, args.source, args.out, overwrite=args.overwrite)
    if args.json:
        print(json.dumps({"export": result}, indent=2, ensure_ascii=False))
    else:
        print(f"exported {result['tracks']} track(s), {result['boxes']} box(es) of {args.source} as MOT to "
              f"{result['out_dir']}/{result['sequence']}/gt/gt.txt")
    return 0
