"""``launch.py doctor --data DIR [--repair] [--json]``: registry integrity report.

Exit code 0 only when everything is consistent (after the repair, with ``--repair``). Checks and
repairs: see :mod:`registry.doctor` (SQLite, outbox, vector index incl. a child-process probe and
a self-query sample, masks, tracks, litter; ``--check-media`` adds each media file's sha256).
A damaged or unreadable index is reported (never a crash); ``--repair`` moves it aside and
rebuilds it from SQLite.
"""
from __future__ import annotations

import argparse
import json

from app.cli.common import add_data_arg, add_json_arg, ensure_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check the registry (SQLite, outbox, vector index, masks); --repair fixes")
    add_data_arg(p)
    add_json_arg(p)
    p.add_argument("--repair", action="store_true", help="relay the outbox and rebuild the vector index from SQLite")
    p.add_argument("--check-media", action="store_true",
                   help="also check every source file exists with its recorded sha256 (reads all media)")
    p.add_argument("--index", default="chroma", choices=("chroma", "exact"), help="vector index kind (default chroma)")
    p.add_argument("--embedding-dim", type=int, default=768, help="embedding length (default 768)")
    p.add_argument("--embedding-version", default="dinov2-base", help="embedding version (default dinov2-base)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from registry.doctor import format_report
    from registry.facade import Registry

    data = ensure_data_dir(args.data)
    # No sync at open: the report must show the backlog as found; --repair relays it.
    with Registry(
        data,
        index=args.index,
        embedding_dim=args.embedding_dim,
        embedding_version=args.embedding_version,
        sync_on_write=False,
    ) as reg:
        report = reg.doctor(repair=args.repair, check_media=args.check_media)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_report(report))
    return 0 if report["ok"] else 1
