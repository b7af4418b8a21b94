"""The ``kbflow`` command line: the parser, the command table, and ``main``.

The one outer door of the core: only commands that run a flow (``nightly``, ``mine``, ``fleet run``,
``backfill``) reach ``kbflow_flows`` and Prefect, lazily; ``search``, ``eval``, ``versions``,
``rollback`` and ``serve`` never start Prefect. A ``KbflowError`` becomes one line on stderr and
its exit code; nothing heavy is imported at start-up (``kbflow --help`` stays instant)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from kbflow.cli.backfill import add_commands as add_backfill_commands
from kbflow.cli.common import EPILOG, home_arg
from kbflow.cli.embed import add_nightly_options, add_serve_embeddings_command
from kbflow.cli.fleet import add_fleet_commands
from kbflow.cli.golden import add_golden_commands
from kbflow.cli.mine import add_commands as add_mining_commands
from kbflow.cli.nightly import cmd_nightly
from kbflow.cli.rerank import add_serve_reranker_command
from kbflow.cli.review import add_review_commands
from kbflow.cli.search import cmd_eval, cmd_rollback, cmd_runs, cmd_search, cmd_serve, cmd_versions
from kbflow.errors import PREFECT_EXIT, KbflowError, exit_codes_help


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kbflow",
        description="kbflow: nightly knowledge-base pipeline for semantic customer-service search.",
        epilog=exit_codes_help() + "\n\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "nightly",
        help="run kb-nightly on one export: validate, clean, embed, index, publish",
        description="Run the kb-nightly Prefect flow on one KB export (a file, or a folder whose "
        "files together are one full snapshot). Publishes a new index version when the "
        "content changed; prints the run summary.",
        epilog=exit_codes_help() + "\n\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    home_arg(p)
    p.add_argument(
        "--source",
        required=True,
        metavar="PATH_OR_URL",
        help="export file or snapshot folder (local path or fsspec URL); formats: JSONL, CSV, Parquet, XLSX",
    )
    p.add_argument(
        "--run-date",
        metavar="YYYY-MM-DD",
        help="date the run acts as of (expiry is judged against it); default today in Asia/Shanghai",
    )
    p.add_argument(
        "--dim",
        type=int,
        metavar="N",
        help="Matryoshka dimension (truncate + re-normalise); default the model's full size",
    )
    p.add_argument(
        "--golden",
        type=Path,
        metavar="FILE",
        help="the KB's golden queries for calibration and the quality gate "
        "(default: golden.jsonl beside the export folder, when there is one)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="publish even if the quality gate blocks the new version (recorded in its manifest)",
    )
    p.add_argument(
        "--full-rebuild",
        action="store_true",
        help="build the new version from scratch instead of from the live one's index segments, "
        "tokens and calibration (index.incremental off for this run)",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON object instead of the text summary"
    )
    add_nightly_options(p)

    p = sub.add_parser(
        "search",
        help="search the live index version",
        epilog=EPILOG,
        description="Search the live index version (hybrid dense + BM25). Never starts Prefect.",
    )
    home_arg(p)
    p.add_argument("query", help="the user's question, as typed")
    p.add_argument("-k", type=int, default=3, help="number of results (default 3)")
    p.add_argument(
        "--json", action="store_true", help="print JSON: version, handoff, results, latency_ms"
    )

    p = sub.add_parser(
        "eval",
        help="evaluate the live version on golden queries",
        epilog=EPILOG,
        description='Run every golden query ({"query", "expected": [ids]} per line; [] = should hand off) '
        "against the live version and report hit@1/3/10, MRR and hand-off quality.",
    )
    home_arg(p)
    p.add_argument("--golden", required=True, type=Path, metavar="FILE", help="golden JSONL file")
    p.add_argument(
        "--split", metavar="NAME", help="only queries whose split field equals NAME (e.g. test)"
    )
    p.add_argument(
        "--mode",
        choices=["fused", "dense", "bm25"],
        default="fused",
        help="fused (default, the version's calibrated weight), dense only, or BM25 only",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--failures",
        type=int,
        default=0,
        metavar="N",
        help="also show the first N queries not answered at rank 1",
    )

    p = sub.add_parser("versions", help="list index versions (* = live)", epilog=EPILOG)
    home_arg(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "rollback", help="make the previous (or a named) version live again", epilog=EPILOG
    )
    home_arg(p)
    p.add_argument(
        "version",
        nargs="?",
        help="version to go back to (default: the one published before the live one)",
    )

    p = sub.add_parser(
        "serve",
        help="run the HTTP search service (POST /search, POST /click, GET /health)",
        epilog=EPILOG,
        description="Serve the live index version over HTTP. Every search and click is written "
        "to the process's spool file before it is answered and rolled into Parquet log segments "
        "(logs/segments in the data home, or KBFLOW_LOGS__SEGMENTS) for the weekly mining; a "
        "newly published version is picked up without a restart. Binds 127.0.0.1 unless --host "
        "says otherwise. Never starts Prefect.",
    )
    home_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serving processes on the one port (default 1); each loads the index and the "
        "model, so memory grows with N; a worker that dies is restarted",
    )
    p.add_argument(
        "--rerank-url",
        metavar="URL",
        help="enable reranking with an SGLang Qwen3-Reranker server at URL (http://host:port)",
    )

    p = sub.add_parser("runs", help="list recent runs from the catalog", epilog=EPILOG)
    home_arg(p)
    p.add_argument("-n", type=int, default=10, help="how many (default 10)")
    add_mining_commands(sub, COMMANDS)
    add_backfill_commands(sub, COMMANDS)
    add_serve_embeddings_command(sub, COMMANDS)
    add_serve_reranker_command(sub, COMMANDS)
    add_golden_commands(sub, COMMANDS)
    add_review_commands(sub, COMMANDS)
    add_fleet_commands(sub, COMMANDS)
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "nightly": cmd_nightly,
    "search": cmd_search,
    "eval": cmd_eval,
    "versions": cmd_versions,
    "rollback": cmd_rollback,
    "runs": cmd_runs,
    "serve": cmd_serve,
}


#: Seconds Prefect's ephemeral API server may take to start (Prefect's default: 20).
PREFECT_STARTUP_TIMEOUT_S = 180


def prefect_failure(exc: BaseException) -> str | None:
    """One line for a failure of Prefect's own machinery (nothing of kbflow's ran, a retry
    may pass); None for anything else."""
    text = str(exc)
    kind = f"{type(exc).__module__}.{type(exc).__name__}"
    if isinstance(exc, RuntimeError) and "ephemeral Prefect API server" in text:
        timeout = os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]
        return (
            f"Prefect's local API server did not start within {timeout} s (a busy machine?); "
            "nothing was run. Retry, raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or "
            "point PREFECT_API_URL at a running Prefect server"
        )
    if "OperationalError" in kind and "database is locked" in text:
        home = os.environ.get("PREFECT_HOME", "~/.prefect")
        return (
            f"Prefect's database in {home} is locked by another process; nothing was run. "
            "Retry when it is done, or give this run its own PREFECT_HOME"
        )
    if kind.startswith("httpx.") and "Connect" in type(exc).__name__:
        url = os.environ.get("PREFECT_API_URL", "Prefect's API")
        return f"cannot reach {url} ({text}); nothing was run. Start the server or fix the URL"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        # Libraries that set their own logger to INFO (Great Expectations, bm25s) stay quiet.
        handler.setLevel(level)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Prefect logs every failed task with its traceback at ERROR; for a user's mistake (a
    # KbflowError) the CLI prints one line instead, and re-raises anything else. -v shows all.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if args.verbose else "CRITICAL")
    os.environ.setdefault("TQDM_DISABLE", "1")
    # Prefect's local (ephemeral) API server gets 20 s to start by default; on a busy laptop it
    # can take longer, and the run would die before its first stage.
    os.environ.setdefault(
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(PREFECT_STARTUP_TIMEOUT_S)
    )
    try:
        return COMMANDS[args.command](args)
    except KbflowError as exc:
        print(f"kbflow: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        message = prefect_failure(exc)
        if message is None or args.verbose:
            raise
        print(f"kbflow: {message}", file=sys.stderr)
        return PREFECT_EXIT
    except KeyboardInterrupt:
        print("kbflow: interrupted", file=sys.stderr)
        return 130
