"""``kbflow mine``, ``kbflow logs import`` and ``kbflow simulate-logs``.

Wired into ``kbflow.cli`` with ``add_commands(sub, COMMANDS)``. Nothing heavy is imported at
module top: ``mine`` reaches ``flows/`` (and Prefect) only when it runs; ``logs import`` and
``simulate-logs`` never start Prefect.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kbflow.cli.common import EPILOG, home_arg, print_json, resolve_home
from kbflow.store.home import DataHome

#: The bundled Chinese sample's golden file, in a checkout (src/kbflow/cli/ -> the repository).
_SAMPLE_GOLDEN = Path(__file__).resolve().parents[3] / "examples" / "kb_zh" / "golden.jsonl"


def _week_arg(p: argparse.ArgumentParser, default_help: str) -> None:
    p.add_argument("--week", metavar="YYYY-Www", help=f"ISO week in Asia/Shanghai; {default_help}")


def add_commands(
    subparsers: Any, command_table: dict[str, Callable[[argparse.Namespace], int]]
) -> None:
    """Add ``mine``, ``logs`` and ``simulate-logs`` to ``subparsers`` and their handlers to
    ``command_table`` (keyed by command name, as ``kbflow.cli.COMMANDS``)."""
    p = subparsers.add_parser(
        "mine",
        help="run kb-weekly-mining on one week of search/click logs",
        description="Run the kb-weekly-mining Prefect flow: per-answer CTR, KB gap topics and "
        "search health for one ISO week of logs.duckdb, written to review tables (a rerun "
        "replaces the week), exported as CSV/Parquet and an HTML report under "
        "reports/weekly/<week>/.",
        epilog=EPILOG,
    )
    home_arg(p)
    _week_arg(p, "default the last complete week")
    p.add_argument("--json", action="store_true", help="print the week's summary as JSON")
    command_table["mine"] = cmd_mine

    p = subparsers.add_parser(
        "logs",
        help="manage the search/click log (logs.duckdb and the Parquet log segments)",
        epilog=EPILOG,
    )
    logs_sub = p.add_subparsers(dest="logs_command", required=True, metavar="ACTION")
    q = logs_sub.add_parser(
        "import",
        help="append events exported by another serving system (JSONL)",
        description='One JSON object per line: {"type": "search", "query_id", "ts", "query", '
        '"version", "result_ids", "result_scores", "latency_ms", "fallback_level", "handoff", '
        '"threshold", "session_id", "user_id"} or {"type": "click", "query_id", "ts", '
        '"entry_id", "position", ...}. ts is ISO 8601 (no zone = UTC). The file is validated '
        "first; events already stored are skipped, so importing twice adds nothing.",
        epilog=EPILOG,
    )
    home_arg(q)
    q.add_argument("file", type=Path, metavar="FILE", help="JSONL file of events")
    q = logs_sub.add_parser(
        "roll",
        help="roll spool files of dead serving processes on this host into segments",
        description="A serving process writes its events to a spool file and rolls it into "
        "Parquet segments every logs.roll_interval_s; the spool of a process that died is "
        "rolled by the next `kbflow serve` on this host, by the weekly mining, or by this. "
        "Spools of live processes are left alone.",
        epilog=EPILOG,
    )
    home_arg(q)
    q = logs_sub.add_parser(
        "status",
        help="events stored, segment files and spool files waiting to be rolled",
        epilog=EPILOG,
    )
    home_arg(q)
    q.add_argument("--json", action="store_true", help="print as JSON")
    command_table["logs"] = cmd_logs

    p = subparsers.add_parser(
        "simulate-logs",
        help="write a week of SIMULATED searches and clicks (real searches on the live index)",
        description="SIMULATED logs for demos: runs the golden queries and paraphrases of them "
        "through the live index, with a click model (relevance, position bias, abandoned "
        "sessions), and logs them with timestamps inside the week. With --split, every query "
        "of that split of --golden is instead asked as written, as one week of real traffic: "
        "each in 1 to 5 sessions (a seeded draw, P(k) proportional to 1/k^1.5), each session "
        "its own user, and users click the right entry only when it is in their top 3 "
        "(probability 1.0, 0.6, 0.35 by rank), never another one. Session and user ids "
        "start with sim-.",
        epilog=EPILOG,
    )
    home_arg(p)
    _week_arg(p, "default the last complete week")
    p.add_argument(
        "--sessions",
        type=int,
        metavar="N",
        help="sessions of random golden queries (default 200; not with --split)",
    )
    p.add_argument(
        "--split",
        metavar="NAME",
        help="ask each query of this split of --golden (e.g. valid) in 1-5 sessions instead",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--golden",
        type=Path,
        default=_SAMPLE_GOLDEN,
        metavar="FILE",
        help="golden JSONL to draw queries from (default: the bundled Chinese sample's)",
    )
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    command_table["simulate-logs"] = cmd_simulate_logs


def cmd_mine(args: argparse.Namespace) -> int:
    from kbflow.errors import KbflowError
    from kbflow.mining.weeks import default_week, parse_week
    from kbflow.settings import MiningSettings

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    home = resolve_home(args.home)
    week = args.week or default_week(tz=MiningSettings().timezone)
    parse_week(week)  # a malformed week is reported before Prefect starts
    from kbflow_flows.weekly import kb_weekly_mining

    state = kb_weekly_mining(week=week, home=str(home), return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, KbflowError):
        raise result
    if isinstance(result, BaseException) or not isinstance(result, dict):
        raise RuntimeError(f"kb-weekly-mining failed: {result}")
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2, default=str))
        return 0
    m = result["metrics"]
    print(
        f"week {week}: {m['n_queries']} queries, {m['n_clicks']} clicks; "
        f"P95 {m['p95_ms'] or 0:.0f} ms; fallback {100 * (m['fallback_rate'] or 0):.1f}%, "
        f"hand-off {100 * (m['handoff_rate'] or 0):.1f}%"
    )
    print(
        f"flagged answers: {result['flagged_answers']}; gap topics: {result['gap_clusters']}; "
        f"alerts: {', '.join(result['alerts']) or 'none'}"
    )
    if result.get("suggestions") is not None:
        print(f"review queue: {result['suggestions']} suggestions this week (`kbflow review list`)")
    print(f"report: {result['report']}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from kbflow.settings import load_settings
    from kbflow.store.logs import event_counts, import_events
    from kbflow.store.segments import count_segment_events
    from kbflow.store.spool import log_places, roll_orphans

    home = resolve_home(args.home)
    home.mkdir(parents=True, exist_ok=True)
    logs = DataHome(home).logs_path
    spool, segments = log_places(home, load_settings(str(home)).logs)
    if args.logs_command == "roll":
        done = roll_orphans(spool, segments)
        print(
            f"rolled {len(done)} spool files: {sum(r.searches for r in done)} searches, "
            f"{sum(r.clicks for r in done)} clicks -> {segments}"
        )
        return 0
    if args.logs_command == "status":
        stored = event_counts(logs)
        seg = count_segment_events(segments)
        every = event_counts(logs, segments)
        status: dict[str, Any] = {
            "logs_db": str(logs),
            "stored": stored,
            "segments": segments,
            "segment_files": {k: v["files"] for k, v in seg.items()},
            "segment_events": {k: v["events"] for k, v in seg.items()},
            "all_events": every,
            "spool_dir": str(spool),
            "spool_files": len(list(spool.glob("*.jsonl"))) if spool.is_dir() else 0,
        }
        if args.json:
            print_json(status)
        else:
            print(f"log: {every['searches']} searches, {every['clicks']} clicks (each event once)")
            print(f"  {logs}: {stored['searches']} searches, {stored['clicks']} clicks")
            print(
                f"  {segments}: {seg['search']['files'] + seg['click']['files']} segment files, "
                f"{seg['search']['events']} searches, {seg['click']['events']} clicks"
            )
            print(f"  {spool}: {status['spool_files']} spool files not rolled yet")
        return 0
    got = import_events(args.file, logs)
    print(
        f"read {got['lines']} lines: {got['searches']} searches, {got['clicks']} clicks "
        f"(events already stored were skipped) -> {logs}"
    )
    return 0


def cmd_simulate_logs(args: argparse.Namespace) -> int:
    from kbflow.cli.search import searcher_for
    from kbflow.errors import ConfigError
    from kbflow.mining.simulate import simulate_split_traffic, simulate_week
    from kbflow.mining.weeks import default_week, parse_week
    from kbflow.store.golden import load_golden
    from kbflow.store.logs import LogWriter

    home = resolve_home(args.home)
    week = args.week or default_week()
    parse_week(week)
    if args.split is not None and args.sessions is not None:
        raise ConfigError("--sessions and --split do not go together: --split asks every query")
    if not args.golden.is_file():
        hint = (
            " (the bundled sample is only in a checkout of kbflow: give --golden FILE)"
            if args.golden == _SAMPLE_GOLDEN
            else ""
        )
        raise ConfigError(f"no golden file {args.golden}{hint}")
    golden = load_golden(args.golden, args.split)
    searcher = searcher_for(home)
    logs = DataHome(home).logs_path
    got: dict[str, Any]
    with LogWriter(logs, batch_size=1000, flush_s=5.0) as writer:
        if args.split is not None:
            got = dict(simulate_split_traffic(searcher, writer, golden, week, seed=args.seed))
        else:
            sessions = 200 if args.sessions is None else args.sessions
            got = simulate_week(searcher, writer, golden, week, sessions, args.seed)
    got = {"week": week, "logs": str(logs), **got}
    if args.json:
        print_json(got)
    elif args.split is not None:
        print(
            f"SIMULATED week {week}: the {got['queries']} {args.split} queries in "
            f"{got['sessions']} sessions, {got['clicks']} clicks; {got['repeated']} asked in 2+ "
            f"sessions, {got['clicked_in_2_sessions']} clicked in 2+ -> {logs}"
        )
    else:
        print(
            f"SIMULATED week {week}: {got['sessions']} sessions, {got['searches']} searches, "
            f"{got['clicks']} clicks -> {logs}"
        )
    return 0
