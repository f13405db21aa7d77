"""``launch.py stats --data DIR [--json]``: counts per category and split, validation rate,
confidence histogram."""
from __future__ import annotations

import argparse
import json

from app.cli.common import add_data_arg, add_json_arg, ensure_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="registry statistics (categories, splits, validation, confidence)")
    add_data_arg(p)
    add_json_arg(p)
    p.add_argument("--embedding-version", default="dinov2-base", help="embedding version counted (default dinov2-base)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from registry.facade import Registry
    from registry.stats import format_stats

    data = ensure_data_dir(args.data)
    with Registry(data, embedding_version=args.embedding_version, sync_on_write=False) as reg:
        stats = reg.stats()
    print(json.dumps(stats, indent=2, ensure_ascii=False) if args.json else format_stats(stats))
    return 0
