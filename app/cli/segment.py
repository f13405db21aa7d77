"""``launch.py segment``: add masks to registered objects (e.g. an imported detection dataset).

    python launch.py segment --data DIR [--segmenter sam2|grabcut] [--only-missing]
        [--profile cpu|gpu] [--weights-dir DIR] [--json]

Objects are grouped by source, so each image is loaded and embedded once and all its boxes
are prompted together. ``--only-missing`` segments objects without a mask; otherwise every
object's mask is recomputed from its box. Images that cannot be read are reported and skipped.
Exit status: 0 when every object got a mask, 1 when some were skipped, 2 on missing weights.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from app.cli.common import add_data_arg, add_json_arg, ensure_data_dir

#: Boxes prompted per call: bounds memory to CHUNK masks of one image.
CHUNK = 16


def register(sub: argparse._SubParsersAction) -> None:
    from pipeline.models.specs import PROFILES

    p = sub.add_parser("segment", help="add masks to registered objects from their boxes")
    add_data_arg(p)
    add_json_arg(p)
    p.add_argument("--segmenter", choices=("sam2", "grabcut"), default="sam2",
                   help="mask model (default sam2; grabcut needs no weights)")
    p.add_argument("--only-missing", action="store_true", help="only objects that have no mask yet")
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu", help="model profile (default cpu)")
    p.add_argument("--weights-dir", type=Path, default=None,
                   help="where model folders live (default: $AGL_WEIGHTS, else <data>/models)")
    p.set_defaults(func=run)


def segment_objects(reg: Any, segmenter: Any, *, only_missing: bool, progress: bool = True) -> dict:
    """Computes masks from the boxes of registered objects and stores them.

    Args:
        reg: a ``registry.facade.Registry``.
        segmenter: a ``pipeline.segment.base.Segmenter`` (boxes xyxy absolute pixels in,
            (N, H, W) bool masks out).
        only_missing: skip objects that already have a mask.
        progress: tqdm bar over objects (stderr).

    Returns:
        {"objects": n to segment, "segmented": n, "sources": n, "failed": [(source or object id, reason)]}.
    """
    from tqdm import tqdm

    from pipeline.image_io import load_image

    # one image per (source, video frame): objects on a frame lie on its PNG, not the video file
    by_source: dict[tuple[str, str | None], list[tuple[str, list[float]]]] = defaultdict(list)
    for obj in reg.iter_objects(order="created_asc"):
        if only_missing and obj.get("has_mask"):
            continue
        by_source[(obj["source_id"], obj.get("frame_id"))].append((obj["object_id"], obj["bbox_xywh"]))
    total = sum(len(v) for v in by_source.values())
    out: dict[str, Any] = {"objects": total, "segmented": 0, "sources": len(by_source), "failed": []}
    bar = tqdm(total=total, unit="obj", desc="segmenting", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    for (source_id, frame_id), items in by_source.items():
        name = source_id
        try:
            src = reg.get_source(source_id)
            name = f"{source_id} ({src['file_name']}{', ' + frame_id if frame_id else ''})"
            image = load_image(reg.image_path({"source_id": source_id, "frame_id": frame_id}))
            if src.get("width") and src.get("height") and image.shape[:2] != (src["height"], src["width"]):
                raise ValueError(f"expected a {src['width']}x{src['height']} image, the file is "
                                 f"{image.shape[1]}x{image.shape[0]}")
            segmenter.set_image(image)  # the image embedding is computed once per source
        except Exception as exc:
            out["failed"].append((name, f"{len(items)} object(s) skipped: {exc}"))
            bar.update(len(items))
            continue
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            xyxy = np.array([[x, y, x + w, y + h] for _, (x, y, w, h) in chunk], np.float32)
            try:
                masks, _ = segmenter.predict_boxes(xyxy)
            except Exception as exc:
                out["failed"].extend((oid, f"{type(exc).__name__}: {exc}") for oid, _ in chunk)
                bar.update(len(chunk))
                continue
            for (oid, _), mask in zip(chunk, masks, strict=True):
                try:
                    if not mask.any():
                        raise ValueError("the segmenter found nothing in the box; mask left unchanged")
                    reg.update_object(oid, mask=np.asarray(mask, bool))
                    out["segmented"] += 1
                except Exception as exc:
                    out["failed"].append((oid, str(exc)))
                bar.update(1)
        segmenter.reset_image()
    bar.close()
    return out


def run(args: argparse.Namespace) -> int:
    from app.cli.models import weights_dir_of
    from pipeline.models.manager import ModelManager
    from registry.facade import Registry

    segmenter = ModelManager(profile=args.profile, weights_dir=weights_dir_of(args)).segmenter(args.segmenter)
    data = ensure_data_dir(args.data)
    with Registry(data, sync_on_write=False) as reg:
        report = segment_objects(reg, segmenter, only_missing=args.only_missing, progress=not args.json)
    if args.json:
        print(json.dumps({**report, "failed": [{"id": i, "reason": r} for i, r in report["failed"]]}, indent=2))
    else:
        print(f"{report['segmented']} of {report['objects']} object(s) in {report['sources']} image(s) segmented")
        if report["failed"]:
            print(f"{len(report['failed'])} of {report['objects']} failed:")
            for ident, reason in report["failed"][:20]:
                print(f"  {ident}: {reason}")
    return 1 if report["failed"] else 0
