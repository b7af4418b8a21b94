"""What every ``kbflow`` command shares: the ``--home`` option and JSON output."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

#: The foot of every command's --help.
EPILOG = "Data home: --home DIR, or KBFLOW_HOME (default ./.kbflow). Docs: README.md."


def home_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--home",
        default=None,
        metavar="DIR",
        help="data home (catalog, raw exports, runs, indexes); default $KBFLOW_HOME or ./.kbflow",
    )


def resolve_home(arg: str | None) -> Path:
    return Path(arg or os.environ.get("KBFLOW_HOME") or ".kbflow").expanduser().resolve()


def print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2, default=str))
