"""``launch.py quality train|score --data DIR [--json]``: a learned quality score.

``train`` fits the pairwise-ranking model (projector on the frozen stored embeddings, see
docs/active_learning.md) to the review outcomes and prints its held-out pairwise accuracy next to
the baselines "1 - confidence" and "label differs from the majority of its 10 nearest
neighbours". ``score`` fills ``objects.quality_score`` in [0, 1] (higher = better) for every
object with an embedding, in batches; Review orders by it ("lowest quality first").
"""
from __future__ import annotations

import argparse
import json

from app.cli.common import add_data_arg, add_json_arg, ensure_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quality", help="learned quality score: train on review outcomes, score objects")
    p.add_argument("action", choices=("train", "score"), help="train the model, or score every object")
    add_data_arg(p)
    add_json_arg(p)
    p.add_argument("--epochs", type=int, default=40, help="most training epochs (early stopping; default 40)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image-wise split and the pairs")
    p.add_argument("--embedding-version", default=None,
                   help="stored embedding version to use (default dinov2-base, else the one with most vectors)")
    p.set_defaults(func=run)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def run(args: argparse.Namespace) -> int:
    from app.workflows import quality
    from app.workflows.suggest import open_registry

    if args.epochs < 1:
        raise ValueError(f"--epochs: expected at least 1, got {args.epochs}")
    data = ensure_data_dir(args.data)
    with open_registry(data, args.embedding_version) as reg:
        if args.action == "train":
            result = quality.train(reg, data, epochs=args.epochs, seed=args.seed, progress=not args.json)
        else:
            result = quality.score(reg, data, progress=not args.json)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    elif args.action == "train":
        acc, base = result["accuracy"], result["baselines"]
        print(f"quality model on {result['examples']} reviewed objects ({result['good']} good, {result['bad']} bad) "
              f"from {result['images']} images, {result['embedding_version']} ({result['embedding_dim']}-d)")
        print(f"held-out pairwise accuracy ({result['pairs']['test']} pairs, images never seen in training): "
              f"learned {_fmt(acc['test'])} · 1 - confidence {_fmt(base['1 - confidence'])} · "
              f"kNN-10 label disagreement {_fmt(base['kNN-10 label disagreement'])}")
        print(f"epochs {result['epochs_run']} (best {result['best_epoch']}) · saved {result['checkpoint']}")
    else:
        print(f"quality_score set on {result['scored']} object(s) (mean {_fmt(result['mean'])}, "
              f"range {_fmt(result['min'])}..{_fmt(result['max'])}); {result['without_embedding']} without embedding")
    return 0
