"""Arguments shared by several subcommands."""
from __future__ import annotations

import argparse
import os
from pathlib import Path


def default_data_dir() -> Path:
    """``$AGL_DATA`` if set, else ``./data``."""
    return Path(os.environ.get("AGL_DATA", "data"))


def add_data_arg(parser: argparse.ArgumentParser) -> None:
    """Adds ``--data DIR`` (the folder holding registry.db, the vector index and files)."""
    parser.add_argument(
        "--data",
        type=Path,
        default=default_data_dir(),
        help="data folder (default: $AGL_DATA or ./data; created when missing)",
    )


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def ensure_data_dir(path: Path) -> Path:
    path = Path(path).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
