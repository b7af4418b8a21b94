"""``kbflow golden import FILE`` / ``kbflow golden show``: the KB's golden set in the data home,
the one every quality gate uses (``kbflow.store.golden``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kbflow.cli.common import EPILOG, home_arg, print_json, resolve_home


def add_golden_commands(subparsers: Any, command_table: dict[str, Any]) -> None:
    p = subparsers.add_parser(
        "golden",
        help="the KB's golden queries the quality gate uses (import, show)",
        description="The golden set belongs to the KB: it is stored in the data home, versioned "
        "with who and when, and every run's quality gate uses the latest one (a run that "
        "brings a newer file, --golden or golden.jsonl beside its export, stores it first).",
        epilog=EPILOG,
    )
    gsub = p.add_subparsers(dest="golden_command", required=True, metavar="{import,show}")
    q = gsub.add_parser("import", help="store FILE as the KB's golden set", epilog=EPILOG)
    home_arg(q)
    q.add_argument("file", type=Path, metavar="FILE", help='JSONL: {"query", "expected": [ids]}')
    q.add_argument("--by", metavar="NAME", help="who brings it (default: the login name)")
    q.add_argument("--json", action="store_true", help="print JSON")
    s = gsub.add_parser("show", help="print the golden set the gate will use", epilog=EPILOG)
    home_arg(s)
    s.add_argument("--history", action="store_true", help="every stored version, oldest first")
    s.add_argument("--json", action="store_true", help="print JSON")
    command_table["golden"] = cmd_golden


def cmd_golden(args: argparse.Namespace) -> int:
    from kbflow.store.golden import NO_GOLDEN, GoldenStore
    from kbflow.store.home import DataHome

    home = DataHome.at(resolve_home(args.home))
    store = GoldenStore(home)
    if args.golden_command == "import":
        before = store.latest()
        got = store.import_file(args.file.expanduser().resolve(), by=args.by)
        if args.json:
            print_json({**got.as_dict(), "new": before is None or got.version != before.version})
        elif before is not None and got.version == before.version:
            print(f"golden set v{got.version} already holds this file; nothing stored")
        else:
            print(f"golden set v{got.version} stored: {got.queries} queries ({got.answerable} "
                  f"answerable), by {got.by}; the next run's gate uses it")  # fmt: skip
        return 0
    sets = store.history() if args.history else [s for s in [store.latest()] if s]
    if args.json:
        print_json(
            [s.as_dict() for s in sets] if args.history else (sets[0].as_dict() if sets else None)
        )
        return 0
    if not sets:
        print(NO_GOLDEN)
        return 0
    for s in sets:
        print(f"v{s.version}  {s.imported_at}  by {s.by}  {s.queries} queries "
              f"({s.answerable} answerable)  from {s.source}")  # fmt: skip
    return 0
