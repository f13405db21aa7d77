"""Discovers the subcommand modules in ``app/cli`` and dispatches to them.

A command module defines ``register(subparsers) -> None`` that adds one (or a few) parsers and
sets ``func=<callable(args) -> int>`` as their default. Modules are discovered by name so that
adding a command never means editing a shared file.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

import app.cli as cli_pkg

DEFAULT_COMMAND = "serve"
_NOT_COMMANDS = {"main", "common"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="launch.py",
        description="AgenticLabeling: local-first auto-labeling workbench.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda m: m.name):
        if info.name in _NOT_COMMANDS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"app.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    known = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    if not argv or (argv[0] not in known and argv[0] not in {"-h", "--help", "-v", "--verbose"}):
        argv.insert(0, DEFAULT_COMMAND)  # `python launch.py --data d` means `serve --data d`
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        # Known, actionable errors: one line, no trace (domain code names the fix).
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
