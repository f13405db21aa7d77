"""``launch.py suggest --data DIR --n 100 --strategy least-confident|margin|entropy|diversity|hybrid
[--category C] [--project P] [--json]``: the pending objects to review first.

Strategies (see docs/active_learning.md): least-confident, margin, entropy (per-class scores from
the object's metadata where present, else its confidence), diversity (k-center greedy on the
stored embeddings, seeded with what was already reviewed), hybrid (the 3·N most uncertain, then
diverse among them), random (a baseline). Memory stays bounded: objects and vectors are read
in pages and k-center runs over a pool of at most ``--pool-size`` candidates.
"""
from __future__ import annotations

import argparse
import json

from app.cli.common import add_data_arg, add_json_arg, ensure_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    from pipeline.al.strategies import STRATEGIES

    p = sub.add_parser("suggest", help="which pending objects to review first (active learning)")
    add_data_arg(p)
    add_json_arg(p)
    p.add_argument("--n", type=int, default=100, help="how many objects to suggest (default 100)")
    p.add_argument("--strategy", choices=STRATEGIES, default="least-confident", help="selection strategy")
    p.add_argument("--category", default=None, help="only objects of this class")
    p.add_argument("--project", default=None, help="only objects of this project")
    p.add_argument("--pool-size", type=int, default=20_000,
                   help="most candidates diversity looks at (a uniform sample when there are more)")
    p.add_argument("--embedding-version", default=None,
                   help="stored embedding version to use (default dinov2-base, else the one with most vectors)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from app.workflows.suggest import open_registry, suggest

    data = ensure_data_dir(args.data)
    with open_registry(data, args.embedding_version) as reg:
        result = suggest(reg, n=args.n, strategy=args.strategy, category=args.category, project=args.project,
                         pool_size=args.pool_size)
        objects = {o["object_id"]: o for o in reg.get_objects(result["ids"])}
    rows = [{"object_id": oid, "category": objects[oid]["category"], "confidence": objects[oid]["confidence"],
             "score": round(s, 6), "source_id": objects[oid]["source_id"]}
            for oid, s in zip(result["ids"], result["scores"], strict=True) if oid in objects]
    if args.json:
        print(json.dumps({**{k: v for k, v in result.items() if k not in ("ids", "scores")}, "objects": rows},
                         indent=2, ensure_ascii=False))
        return 0
    print(f"{args.strategy}: {len(rows)} of {result['candidates']} pending object(s) "
          f"(pool {result['pool']}, {result['reviewed_seeds']} reviewed seed(s), "
          f"{result['without_embedding']} without embedding)")
    for i, r in enumerate(rows, 1):
        conf = "-" if r["confidence"] is None else f"{r['confidence']:.3f}"
        print(f"{i:>4}  {r['object_id']}  {r['category']:<20} conf {conf}  uncertainty {r['score']:.3f}")
    return 0
