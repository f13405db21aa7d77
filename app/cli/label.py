"""``launch.py label``: batch auto-labeling of files and folders into the registry.

    python launch.py label --data DIR --classes "person,car" [PATHS...] [--source SRC_ID] [--profile cpu|gpu]
        [--confidence 0.3] [--project NAME] [--segmenter sam2|grabcut] [--no-embed]
        [--relabel] [--weights-dir DIR] [--detector run:RUN_ID] [--json]

Folders are searched recursively for images; images are labeled one at a time (memory stays
that of one image), failures are skipped and listed at the end ("3 of 120 failed: …"), and a
second run skips files already labeled with the same settings (see app/workflows/labeling.py).
``--source SRC_ID`` labels the frames of a video source (``launch.py video add``) instead of
PATHS, resumable the same way (app/workflows/video.py). ``--detector run:RUN_ID`` labels with a
trained run's weights instead of Florence-2 (``launch.py train``; docs/training.md).
Exit status: 0 when every file was labeled (or already was), 1 when some failed, 2 on a usage
error or missing model weights (the message says how to get them).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from app.cli.common import add_data_arg, add_json_arg, ensure_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    from pipeline.autolabel import GPU_BATCH_IMAGES
    from pipeline.models.specs import PROFILES

    p = sub.add_parser("label", help="auto-label images and folders into the registry")
    add_data_arg(p)
    add_json_arg(p)
    p.add_argument("paths", nargs="*", metavar="PATH", help="image files and/or folders (searched recursively)")
    p.add_argument("--source", default=None, metavar="SRC_ID",
                   help="label the frames of this video source (from launch.py video add) instead of PATHS")
    p.add_argument("--classes", required=True, help='comma-separated class names, e.g. "person, car"')
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu", help="model profile (default cpu)")
    p.add_argument("--confidence", type=float, default=0.3, help="detection threshold in [0, 1] (default 0.3)")
    p.add_argument("--project", default=None, help="project name stored with sources and objects")
    p.add_argument("--segmenter", choices=("sam2", "grabcut"), default="sam2",
                   help="mask model (default sam2; grabcut needs no weights)")
    p.add_argument("--detector", default=None, metavar="run:RUN_ID",
                   help="a trained run as the detector (launch.py train) instead of Florence-2")
    p.add_argument("--no-embed", action="store_true", help="do not compute DINOv2 embeddings")
    p.add_argument("--relabel", action="store_true", help="label files again even when labeled with these settings")
    p.add_argument("--weights-dir", type=Path, default=None,
                   help="where model folders live (default: $AGL_WEIGHTS, else <data>/models)")
    p.add_argument("--batch-images", type=int, default=None, metavar="N",
                   help=f"images through the models together (default {GPU_BATCH_IMAGES} on a GPU, 1 on a CPU, "
                        "where batching gains nothing)")
    p.set_defaults(func=run)


def batch_images_for(args: argparse.Namespace, labeler: Any) -> int:
    """``--batch-images``, else ``app.workflows.batch_label.default_batch_images`` (8 on a GPU, 1
    on a CPU)."""
    from app.workflows.batch_label import default_batch_images

    return int(args.batch_images) if args.batch_images is not None else default_batch_images(labeler)


def parse_class_list(text: str) -> list[str]:
    """'person, car ,,dog' -> ['person', 'car', 'dog'] (order kept, case-insensitive duplicates dropped)."""
    out: list[str] = []
    for c in (text or "").split(","):
        c = c.strip()
        if c and c.lower() not in {o.lower() for o in out}:
            out.append(c)
    if not out:
        raise ValueError(f'--classes: expected comma-separated class names (e.g. "person,car"), got {text!r}')
    return out


def build_labeler(args: argparse.Namespace) -> Any:
    """The labeler the arguments ask for (raises WeightsMissingError, a RuntimeError, when absent)."""
    from app.cli.models import weights_dir_of
    from pipeline.models.manager import ModelManager

    manager = ModelManager(profile=args.profile, weights_dir=weights_dir_of(args))
    if getattr(args, "detector", None):
        from app.workflows.train import build_run_labeler
        from registry.facade import Registry

        with Registry(ensure_data_dir(args.data), sync_on_write=False) as reg:
            return build_run_labeler(reg, args.detector, segmenter=lambda: manager.segmenter(args.segmenter),
                                     embedder=None if args.no_embed else manager.embedder())
    return manager.labeler(args.segmenter, embed=not args.no_embed)


def open_registry(data: Path, labeler: Any):
    """The registry, with the embedding size/version of the labeler's embedder when it has one."""
    from registry.facade import Registry

    embedder = getattr(labeler, "embedder", None)
    kwargs: dict[str, Any] = {"sync_on_write": False}
    if embedder is not None and getattr(embedder, "dim", None):
        kwargs.update(embedding_dim=int(embedder.dim), embedding_version=str(getattr(embedder, "version", "unknown")))
    return Registry(data, **kwargs)


def run(args: argparse.Namespace) -> int:
    from app.workflows.labeling import label_paths

    classes = parse_class_list(args.classes)
    if not 0.0 <= args.confidence <= 1.0:
        raise ValueError(f"--confidence: expected a value in [0, 1], got {args.confidence}")
    if args.batch_images is not None and args.batch_images < 1:
        raise ValueError(f"--batch-images: expected >= 1, got {args.batch_images}")
    if bool(args.paths) == bool(args.source):
        raise ValueError("expected image files or folders (PATH...) or a video source (--source SRC_ID), got "
                         + ("both; label them in two runs" if args.paths else "neither"))
    missing = [p for p in args.paths if not Path(p).exists()]
    if args.paths and len(missing) == len(args.paths):
        raise FileNotFoundError(f"expected image files or folders, got none that exist: {', '.join(missing)}")
    labeler = build_labeler(args)  # before touching the data folder: missing weights fail fast
    data = ensure_data_dir(args.data)
    with open_registry(data, labeler) as reg:
        if args.source:
            from app.workflows.video import label_video_frames

            report = label_video_frames(reg, labeler, args.source, classes, confidence=args.confidence,
                                        project=args.project, progress=not args.json, relabel=args.relabel)
        else:
            report = label_paths(reg, labeler, args.paths, classes, confidence=args.confidence,
                                 project=args.project, progress=not args.json, relabel=args.relabel,
                                 batch_images=batch_images_for(args, labeler))
        if getattr(reg, "sync_outbox", None) is not None:
            reg.sync_outbox()  # embeddings into the vector index now, not at the next start
    print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if args.json else report.summary())
    return 1 if report.failed else 0
