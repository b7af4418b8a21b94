"""``kbflow review list`` / ``decide`` / ``export`` / ``serve``: the review queue the weekly
mining fills (``kbflow.mining.suggest``), reviewers' decisions, the accepted changes as a patch
for the system where the KB is edited, and the reviewers' workbench web page
(``kbflow.workbench``). Never starts Prefect."""

from __future__ import annotations

import argparse
import getpass
import os
from pathlib import Path
from typing import Any

from kbflow.cli.common import EPILOG, home_arg, print_json, resolve_home

#: The review queue's kinds (``kbflow.mining.suggest.KINDS``, not imported here: ``--help``
#: stays free of DuckDB and Arrow).
SUGGESTION_KINDS = (
    "similar_question",
    "confusion",
    "gap",
    "low_click",
    "duplicate",
    "contradiction",
    "expiring",
    "stale_asked",
)


def add_review_commands(subparsers: Any, command_table: dict[str, Any]) -> None:
    p = subparsers.add_parser(
        "review",
        help="the review queue of mined suggestions (list, decide, export)",
        description="The weekly mining suggests changes from the search log (a query users "
        "keep clicking entry E for becomes a similar question of E; close calls where users "
        "clicked the lower entry). Reviewers accept, edit, reject or defer each; decisions are "
        "appended with who, when and why; accepted ones are exported as a patch.",
        epilog=EPILOG,
    )
    rsub = p.add_subparsers(
        dest="review_command", required=True, metavar="{list,decide,export,serve}"
    )
    q = rsub.add_parser("list", help="the queue, highest impact first", epilog=EPILOG)
    home_arg(q)
    q.add_argument("--kind", choices=SUGGESTION_KINDS, help="one kind only")
    q.add_argument("--open", action="store_true", help="undecided and deferred ones only")
    q.add_argument("-n", type=int, default=50, help="at most this many (default 50)")
    q.add_argument("--json", action="store_true", help="print JSON")
    q = rsub.add_parser(
        "decide", help="accept, edit, reject or defer one suggestion", epilog=EPILOG
    )
    home_arg(q)
    q.add_argument(
        "suggestion_id", metavar="ID", help="from `kbflow review list` (a unique prefix will do)"
    )
    q.add_argument("decision", choices=["accept", "edit", "reject", "defer"])
    q.add_argument("--by", metavar="NAME", help="reviewer (default: the login name)")
    q.add_argument("--text", help="edit: the question to add instead of the suggested one")
    q.add_argument("--entry", metavar="ENTRY_ID", help="edit: add it to this entry instead")
    q.add_argument("--comment", help="why (kept with the decision)")
    q.add_argument(
        "--change",
        action="store_true",
        help="replace a decision already taken (accept, edit, reject); without it that is refused",
    )
    q = rsub.add_parser(
        "export",
        help="write the accepted changes as a patch (JSONL, CSV for Excel, XLSX)",
        description="One row per accepted change: entry_id, field, old_value, new_value, "
        "reviewer, decided_at, suggestion_id, comment. CSV is UTF-8 with a BOM (Excel opens it "
        "right) and never starts a cell with a formula.",
        epilog=EPILOG,
    )
    home_arg(q)
    q.add_argument("--format", choices=["jsonl", "csv", "xlsx"], default="csv")
    q.add_argument("--out", type=Path, required=True, metavar="FILE")
    q = rsub.add_parser(
        "serve",
        help="the reviewers' workbench: the queue as a web page (decide, export)",
        description="Serve the review queue as a web page: filters, each suggestion's evidence, "
        "accept / edit / reject / defer forms, the patch download. No script, no CDN: works "
        "offline. Binds 127.0.0.1; on any other address it requires a token (--token or "
        "KBFLOW_REVIEW_TOKEN), which every request then carries: open /?token=... once (a "
        "cookie keeps it) or send Authorization: Bearer.",
        epilog=EPILOG,
    )
    home_arg(q)
    q.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    q.add_argument("--port", type=int, default=8700, help="port (default 8700)")
    q.add_argument(
        "--token",
        default=None,
        help="access token (default $KBFLOW_REVIEW_TOKEN); required off loopback, 16+ "
        "characters. Prefer the variable: a command line is visible to other users",
    )
    command_table["review"] = cmd_review


def cmd_review(args: argparse.Namespace) -> int:
    from kbflow.mining.suggest import decide, export_patch, review_queue
    from kbflow.store.home import DataHome

    if args.review_command == "serve":
        return cmd_review_serve(args)
    logs = DataHome(resolve_home(args.home)).logs_path
    if args.review_command == "list":
        rows = review_queue(logs, args.kind, args.open)[: args.n]
        if args.json:
            print_json(rows)
            return 0
        if not rows:
            print("the review queue is empty (`kbflow mine` fills it from the search log)")
        for r in rows:
            other = f" vs {r['other_entry_id']}" if r["other_entry_id"] else ""
            print(
                f"{r['suggestion_id'][:12]}  {r['kind']:<16} {r['entry_id']}{other}  "
                f"{r['n_sessions']} sessions  {r['decision'] or 'open'}  {r['text']}"
            )
        return 0
    if args.review_command == "decide":
        row = decide(logs, args.suggestion_id, args.decision, args.by or getpass.getuser(), args.comment,
                     args.text, args.entry, change=args.change)  # fmt: skip
        print(
            f"{row['decision']}: {row['kind']} {row['entry_id']} {row['text']!r} by {row['reviewer']}"
        )
        return 0
    n = export_patch(logs, args.out, args.format)
    print(f"{n} accepted changes -> {args.out}")
    return 0


def cmd_review_serve(args: argparse.Namespace) -> int:
    from kbflow.settings import load_settings
    from kbflow.workbench.app import serve
    from kbflow.workbench.security import check_bind

    home = resolve_home(args.home)
    token = args.token or os.environ.get("KBFLOW_REVIEW_TOKEN") or None
    check_bind(args.host, token)  # before anything is loaded: one line, exit 2
    settings = load_settings(str(home))
    how = " (token required: open /?token=... once)" if token else ""
    where = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"kbflow: review workbench for {home} on http://{where}:{args.port}/{how} (Ctrl-C to stop)"
    )
    serve(home, args.host, args.port, token, settings.mining.timezone)
    return 0
