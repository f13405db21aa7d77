"""AgenticLabeling: the one entry point.

    python launch.py [serve] [--data DIR] [--host 127.0.0.1] [--port 7860] [--auth USER:PASS]
    python launch.py <command> --help

Each subcommand lives in its own module under ``app/cli/`` and exposes
``register(subparsers)``; this file only discovers and dispatches them.
"""
from __future__ import annotations

import sys

from app.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
