"""``launch.py bench NAME``: runs a benchmark module ``tests/bench/bench_<NAME>.py``.

A benchmark module exposes ``add_args(parser)`` and ``run(args) -> dict``; the returned dict
holds figures and ratios against a reference measured in the same run. It is printed as a
table, or as JSON with ``--json``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench_modules() -> dict[str, str]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    bench_dir = ROOT / "tests" / "bench"
    names = {}
    for info in pkgutil.iter_modules([str(bench_dir)]):
        if info.name.startswith("bench_"):
            names[info.name.removeprefix("bench_")] = f"tests.bench.{info.name}"
    return names


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="run a benchmark (figures and ratios, not pass/fail)")
    bench_sub = parser.add_subparsers(dest="bench_name", metavar="NAME", required=True)
    for name, module_name in sorted(_bench_modules().items()):
        module = importlib.import_module(module_name)
        p = bench_sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else None)
        p.add_argument("--json", action="store_true", help="print JSON")
        module.add_args(p)
        p.set_defaults(func=_runner(module))


def _runner(module):
    def run(args: argparse.Namespace) -> int:
        result = module.run(args)
        if args.json:
            print(json.dumps(result, indent=2, default=str))
        else:
            _print_table(result)
        return 0

    return run


def _print_table(result: dict, prefix: str = "") -> None:
    for key, value in result.items():
        if isinstance(value, dict):
            _print_table(value, prefix=f"{prefix}{key}.")
        else:
            if isinstance(value, float):
                value = f"{value:.4g}"
            print(f"{prefix}{key:<40} {value}")
