"""``kbflow fleet``: many KBs from one registry (``kbflow.fleet``).

``kbflow fleet status`` reads every KB's data home (never starts Prefect); ``kbflow fleet run``
runs the ``kb-fleet`` flow in this process: the due KBs (or those named) one after another here,
or with ``--on-pool`` as flow runs of the ``kb-nightly/fleet-kb`` deployment on its work pool.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from kbflow.cli.common import print_json

EPILOG = (
    "The registry is a YAML file listing each KB's name, source, data home, schedule and "
    "settings; its limits size the Prefect global concurrency limits kbflow-embed and "
    "kbflow-cpu. Default registry: $KBFLOW_FLEET or ./fleet.yaml. Docs: README.md, Many KBs."
)


def _registry_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--registry",
        default=None,
        metavar="FILE",
        help="the KB registry (YAML); default $KBFLOW_FLEET or ./fleet.yaml",
    )


def _registry_path(arg: str | None) -> str:
    return arg or os.environ.get("KBFLOW_FLEET") or "fleet.yaml"


def add_fleet_commands(
    subparsers: Any, command_table: dict[str, Callable[[argparse.Namespace], int]]
) -> None:
    p = subparsers.add_parser(
        "fleet",
        help="many KBs from one registry: status of every KB, or run the due ones",
        description="Many KBs (one per brand, product line or customer) from one registry file, "
        "each with its own data home, schedule and settings.",
        epilog=EPILOG,
    )
    sub = p.add_subparsers(dest="fleet_command", required=True, metavar="ACTION")
    s = sub.add_parser(
        "status",
        help="every KB's state, live version, quality and last run (reads the data homes only)",
        epilog=EPILOG,
    )
    _registry_arg(s)
    s.add_argument("--json", action="store_true", help="print the rows as JSON")
    r = sub.add_parser(
        "run",
        help="run kb-fleet: the nightly of every due KB (or those named), then the fleet report",
        description="Run the kb-fleet Prefect flow: each KB's nightly as its own flow run; one "
        "KB failing or blocked never stops the others. Exit 0 when none failed, 12 when some did "
        "(the others ran; the fleet report lists them).",
        epilog=EPILOG,
    )
    _registry_arg(r)
    r.add_argument(
        "--kb",
        action="append",
        default=[],
        metavar="NAME",
        help="run this KB whether due or not (repeatable); default: the KBs that are due",
    )
    r.add_argument("--all", action="store_true", help="run every enabled KB, due or not")
    r.add_argument(
        "--on-pool",
        action="store_true",
        help="send each KB's run to the kb-nightly/fleet-kb deployment's work pool "
        "(PREFECT_API_URL, workers running) instead of running them here one after another",
    )
    r.add_argument("--json", action="store_true", help="print the result as JSON")
    command_table["fleet"] = cmd_fleet


def cmd_fleet(args: argparse.Namespace) -> int:
    from kbflow.errors import KbflowError
    from kbflow.fleet.registry import load_registry
    from kbflow.fleet.status import fleet_status, status_table

    registry = load_registry(_registry_path(args.registry))
    if args.fleet_command == "status":
        rows = fleet_status(registry)
        if args.json:
            print_json(rows)
        else:
            print(status_table(rows))
        return 0
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from kbflow_flows.fleet import FLEET_KB, kb_fleet

    state = kb_fleet(
        registry=str(registry.path),
        kbs=args.kb or None,
        every=args.all,
        deployment=FLEET_KB if args.on_pool else None,
        return_state=True,
    )
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException) and not isinstance(result, KbflowError):
        raise result  # a bug keeps its traceback
    if isinstance(result, KbflowError):
        # a failed fleet run still ran every KB: show the rows it leaves, then the error
        rows = fleet_status(registry)
        if args.json:
            print_json({"error": str(result), "kbs": rows})
        else:
            print(status_table(rows))
        print(f"kbflow: {result}", file=sys.stderr)
        return result.exit_code
    if args.json:
        print_json(result)
    else:
        print(status_table(result["kbs"]))
        print(f"fleet report: {result['report']}")
    return 0
