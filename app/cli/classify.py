"""``launch.py classify --data DIR --domain NAME [--only-pending] [--apply] [--force] [--json]``:
scores the registry's objects against a domain pack (batched, resumable, progress bar) and
stores ``classification_model``, ``classification_confidence`` and the top-k on each object;
``--apply`` also sets the verdict as category where it is a class and the object is not validated."""
from __future__ import annotations

import argparse
import json

from app.cli.common import add_data_arg, add_json_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="classify registry objects with a few-shot domain")
    add_data_arg(p)
    p.add_argument("--domain", required=True, help="domain name (see `domains list`)")
    p.add_argument("--only-pending", action="store_true", help="only objects not yet reviewed")
    p.add_argument("--apply", action="store_true",
                   help="set the verdict as category (not 'unknown', never on validated objects)")
    p.add_argument("--force", action="store_true", help="re-classify objects this domain version already did")
    p.add_argument("--batch-size", type=int, default=512, help="objects scored per batch (default 512)")
    p.add_argument("--top-k", type=int, default=3, help="classes kept per object (default 3)")
    p.add_argument("--embedding-version", default=None,
                   help="the registry's embedding version (default: the one most stored vectors have)")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from app.cli.domains import open_registry
    from app.workflows import classify as cw

    if args.batch_size < 1:
        raise ValueError(f"--batch-size: expected >= 1, got {args.batch_size}")
    with open_registry(args) as reg:
        summary = cw.classify_registry(reg, args.domain, only_pending=args.only_pending, apply=args.apply,
                                       force=args.force, batch_size=args.batch_size, top_k=args.top_k,
                                       progress=not args.json)
    if args.json:
        print(json.dumps({**summary, "failed": [{"id": i, "reason": r} for i, r in summary["failed"]]},
                         indent=2, ensure_ascii=False))
    else:
        print(cw.format_summary(summary))
    return 1 if summary["failed"] else 0
