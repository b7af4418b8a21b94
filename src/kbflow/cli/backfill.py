"""``kbflow backfill``: replay exports, re-embed the live snapshot, re-mine weeks.

Wired into ``kbflow.cli`` with ``add_commands(sub, COMMANDS)``. Runs the ``kb-backfill`` flow
in this process (reaching ``flows/`` and Prefect only when it runs), or with ``--submit`` sends
it to the ``kb-backfill`` deployment of the Prefect server in ``PREFECT_API_URL``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from kbflow.cli.common import resolve_home

EPILOG = (
    "An export's date is the run date of the first kb-nightly run that pulled it (else the day "
    "it was landed, Asia/Shanghai). Units already done with the same parameters are skipped, so "
    "running the same backfill twice does the work once. Data home: --home DIR, or KBFLOW_HOME "
    "(default ./.kbflow). Docs: README.md, Operations."
)


def add_commands(
    subparsers: Any, command_table: dict[str, Callable[[argparse.Namespace], int]]
) -> None:
    """Add ``backfill`` to ``subparsers`` and its handler to ``command_table``."""
    p = subparsers.add_parser(
        "backfill",
        help="replay landed exports, re-embed with another model/dimension, or re-mine weeks",
        description="Run the kb-backfill Prefect flow: one flow run per unit (a landed export "
        "replayed as the nightly run of its date; a blue/green re-embed of the live snapshot, "
        "gated against the live version and published only if it passes; an ISO week re-mined).",
        epilog=EPILOG,
    )
    p.add_argument(
        "--home",
        default=None,
        metavar="DIR",
        help="data home; default $KBFLOW_HOME or ./.kbflow",
    )
    what = p.add_argument_group("what to backfill (exactly one)")
    what.add_argument("--exports-from", metavar="YYYY-MM-DD", help="first export date to replay")
    what.add_argument(
        "--exports-to", metavar="YYYY-MM-DD", help="last export date (default: --exports-from)"
    )
    what.add_argument(
        "--reembed",
        action="store_true",
        help="build a new version of the live snapshot with --model and/or --dim",
    )
    what.add_argument(
        "--weeks", metavar="W..W", help="ISO weeks to re-mine, e.g. 2026-W40..2026-W47"
    )
    p.add_argument(
        "--model", metavar="NAME", help="--reembed: embedding model (default: the live one's)"
    )
    p.add_argument(
        "--dim", type=int, metavar="N", help="--reembed: Matryoshka dimension (e.g. 256)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for every unit (VALUE is JSON or a plain string), e.g. "
        "--set chunk.max_tokens=512 or, with --weeks, --set min_impressions=50 (repeatable)",
    )
    p.add_argument("--force", action="store_true", help="publish versions the quality gate blocks")
    p.add_argument(
        "--submit",
        action="store_true",
        help="send it to the kb-backfill deployment (PREFECT_API_URL) instead of running here; "
        "the same request submitted twice makes one flow run",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    command_table["backfill"] = cmd_backfill


def _overrides(pairs: list[str]) -> dict[str, Any]:
    from kbflow.errors import ConfigError

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: use KEY=VALUE, e.g. --set embed.batch_size=32")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw  # a bare string
    return out


def cmd_backfill(args: argparse.Namespace) -> int:
    from kbflow.backfill.request import parse_request
    from kbflow.errors import KbflowError

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # a malformed request is refused before Prefect starts
    parse_request(
        args.exports_from, args.exports_to, args.reembed, args.model, args.dim, args.weeks
    )
    params: dict[str, Any] = {
        "home": str(resolve_home(args.home)),
        "exports_from": args.exports_from,
        "exports_to": args.exports_to,
        "reembed": args.reembed,
        "model": args.model,
        "dim": args.dim,
        "weeks": args.weeks,
        "overrides": _overrides(args.set) or None,
        "force": args.force,
    }
    params = {k: v for k, v in params.items() if v not in (None, False)}
    if args.submit:
        from kbflow_deployments.submit import submit_backfill

        submitted = submit_backfill(params)
        if args.json:
            print(json.dumps(submitted, indent=2))
        else:
            print(
                f"submitted kb-backfill flow run {submitted['name']} ({submitted['flow_run_id']}); "
                f"idempotency key {submitted['idempotency_key']}"
            )
        return 0
    from kbflow_flows.backfill import kb_backfill

    state = kb_backfill(**params, return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException) and not isinstance(result, KbflowError):
        raise result  # a bug keeps its traceback
    if isinstance(result, KbflowError):
        print(f"kbflow: {result}", file=sys.stderr)
        return result.exit_code
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2, default=str))
        return 0
    for unit in result["units"]:
        line = f"{unit['kind']} {unit['unit']}: {unit['outcome']}"
        if unit.get("status"):
            line += f", {unit['status']}"
        if unit.get("version"):
            line += f" -> {unit['version']}"
        if unit.get("run_id"):
            line += f" (run {unit['run_id']})"
        print(line)
    print(", ".join(f"{n} {k}" for k, n in sorted(result["counts"].items())) or "nothing to do")
    return 0
