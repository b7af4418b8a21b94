"""The ``kbflow`` command line.

The one outer door of the core: only commands that run a flow (``nightly``) import ``flows/``,
lazily; ``search``, ``eval``, ``versions`` and ``rollback`` never start Prefect. Heavy
libraries are imported inside the commands so ``kbflow --help`` stays instant. Every
``KbflowError`` becomes one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kbflow.cli_backfill import add_commands as add_backfill_commands
from kbflow.cli_embed import add_nightly_options, add_serve_embeddings_command, overrides_from_args
from kbflow.cli_mine import add_commands as add_mining_commands
from kbflow.errors import KbflowError

EPILOG = "Data home: --home DIR, or KBFLOW_HOME (default ./.kbflow). Docs: README.md."


def _home_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--home",
        default=None,
        metavar="DIR",
        help="data home (catalog, raw exports, runs, indexes); default $KBFLOW_HOME or ./.kbflow",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kbflow",
        description="kbflow: nightly knowledge-base pipeline for semantic customer-service search.",
        epilog=EPILOG,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "nightly",
        help="run kb-nightly on one export: validate, clean, embed, index, publish",
        description="Run the kb-nightly Prefect flow on one KB export (a file, or a folder whose "
        "files together are one full snapshot). Publishes a new index version when the "
        "content changed; prints the run summary.",
        epilog=EPILOG,
    )
    _home_arg(p)
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
        "--json", action="store_true", help="print one JSON object instead of the text summary"
    )
    add_nightly_options(p)

    p = sub.add_parser(
        "search",
        help="search the live index version",
        epilog=EPILOG,
        description="Search the live index version (hybrid dense + BM25). Never starts Prefect.",
    )
    _home_arg(p)
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
    _home_arg(p)
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
    _home_arg(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "rollback", help="make the previous (or a named) version live again", epilog=EPILOG
    )
    _home_arg(p)
    p.add_argument(
        "version",
        nargs="?",
        help="version to go back to (default: the one published before the live one)",
    )

    p = sub.add_parser(
        "serve",
        help="run the HTTP search service (POST /search, POST /click, GET /health)",
        epilog=EPILOG,
        description="Serve the live index version over HTTP. Every search and click is logged to "
        "logs.duckdb in the data home for the weekly mining; a newly published version is picked "
        "up without a restart. Binds 127.0.0.1 unless --host says otherwise. Never starts Prefect.",
    )
    _home_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument(
        "--rerank-url",
        metavar="URL",
        help="enable reranking with an SGLang Qwen3-Reranker server at URL (http://host:port)",
    )

    p = sub.add_parser("runs", help="list recent runs from the catalog", epilog=EPILOG)
    _home_arg(p)
    p.add_argument("-n", type=int, default=10, help="how many (default 10)")
    add_mining_commands(sub, COMMANDS)
    add_backfill_commands(sub, COMMANDS)
    add_serve_embeddings_command(sub, COMMANDS)
    return parser


def _resolve_home(arg: str | None) -> Path:
    return Path(arg or os.environ.get("KBFLOW_HOME") or ".kbflow").expanduser().resolve()


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


def cmd_nightly(args: argparse.Namespace) -> int:
    from kbflow.home import new_run_id
    from kbflow.runconfig import load_settings, parse_run_date

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    home = _resolve_home(args.home)
    overrides = {"embed.dim": args.dim, **overrides_from_args(args)}
    if args.golden:
        overrides["gate.golden"] = str(args.golden.resolve())
    load_settings(str(home), overrides)  # fail fast on bad settings, before Prefect starts
    run_date = parse_run_date(args.run_date)
    from kbflow.sources import discover_export

    discover_export(args.source)  # a missing or unreadable source is reported before Prefect starts
    run_id = new_run_id()
    from flows.nightly import kb_nightly

    state = kb_nightly(
        source=args.source,
        run_date=run_date.isoformat(),
        home=str(home),
        run_id=run_id,
        overrides=overrides,
        force=args.force,
        return_state=True,
    )
    error = state.result(raise_on_failure=False) if not state.is_completed() else None
    if isinstance(error, BaseException) and not isinstance(error, KbflowError):
        raise error  # a bug, not the user's mistake: it keeps its traceback
    summary_path = home / "runs" / run_id / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    else:
        summary = {"run_id": run_id, "status": "failed", "message": str(error)}
    summary.pop("calibration", None) if not args.json else None
    if args.json:
        _print_json(summary)
    else:
        _print_summary(summary)
    if summary["status"] in ("published", "unchanged"):
        return 0
    if summary["status"] == "blocked":
        print(
            f"kbflow: run {run_id} blocked by the quality gate, {summary.get('message')}. The live "
            "version keeps serving; see the report for the failing queries, fix the export, or "
            "rerun with --force to publish anyway.",
            file=sys.stderr,
        )
        return 3
    print(
        f"kbflow: run {run_id} {summary['status']}: {summary.get('message', 'see the report')}",
        file=sys.stderr,
    )
    return error.exit_code if isinstance(error, KbflowError) else 1


def _print_summary(s: dict[str, Any]) -> None:
    rows = s.get("rows", {})
    print(
        f"run {s['run_id']}: {s['status']}"
        + (f" -> version {s['version']}" if s.get("version") else "")
    )
    if rows:
        print(
            "rows: "
            + ", ".join(
                f"{k} {rows.get(k, 0)}"
                for k in ("input", "indexed", "duplicate", "stale", "unpublished", "quarantined")
            )
        )
        print(
            f"passages: embedded {s.get('embedded', 0)}, from cache {s.get('cached', 0)}; retired entries {s.get('retired', 0)}"
        )
    if s.get("model_choice"):
        from kbflow.report import describe_model_choice

        print(f"model: {describe_model_choice(s['model_choice'])}")
    if s.get("timings"):
        print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in s["timings"].items()))
    gate = s.get("gate")
    if gate and not gate.get("skipped"):
        parts = []
        for name, c in gate.get("checks", {}).items():
            line = f"{name} hit@3 {c['new']['hit@3']}"
            if "live_common" in c:
                line += f" (live {c['live_common']['hit@3']})"
            parts.append(line)
        verdict = (
            "passed"
            if gate.get("passed")
            else ("FAILED, forced" if gate.get("forced") else "BLOCKED")
        )
        print(f"quality gate: {verdict}; " + ", ".join(parts))
        for r in gate.get("reasons", []):
            print(f"  - {r}")
    if s.get("notice"):
        from kbflow.notify import describe_notice

        print(f"failure notice: {describe_notice(s['notice'])}")
    if s.get("report"):
        print(f"report: {s['report']}")


def _searcher(home: Path) -> Any:
    from kbflow.runconfig import load_settings
    from kbflow.search import make_searcher

    return make_searcher(home, load_settings(str(home)))


def cmd_search(args: argparse.Namespace) -> int:
    searcher = _searcher(_resolve_home(args.home))
    searcher.version(wait=True)  # no published version: one clear line, not a hand-off
    try:
        searcher.warm_up()  # load the model before the clock starts: latency_ms is the query's own
    except Exception as exc:  # noqa: BLE001 - the search itself reports the fallback level
        logging.getLogger(__name__).warning("embedder not available: %s", exc)
    res = searcher.search(args.query, k=args.k)
    if args.json:
        _print_json(res.as_dict())
        return 0
    print(
        f"[{res.version}] {res.latency_ms:.0f} ms"
        + ("  -> hand-off to a human" if res.handoff else "")
        + (f"  (fallback level {res.fallback_level})" if res.fallback_level else "")
    )
    for i, h in enumerate(res.results, 1):
        print(f"  {i}. {h.score:.3f}  {h.entry_id}  {h.title}")
        print(f"     {h.passage[:120].replace(chr(10), ' ')}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from kbflow.evaluate import evaluate, load_golden

    home = _resolve_home(args.home)
    searcher = _searcher(home)
    version = searcher.version()
    queries = load_golden(args.golden, args.split)
    weight = {"fused": None, "dense": 1.0, "bm25": 0.0}[args.mode]
    vectors = (
        None
        if args.mode == "bm25"
        else searcher.embedder(version.manifest["embedding"]).embed_queries(
            [q.query for q in queries]
        )
    )
    res = evaluate(version, queries, vectors, weight=weight)
    res["mode"] = args.mode
    failures = res.pop("failures")
    if args.failures:
        res["failures"] = failures[: args.failures]
    if args.json:
        _print_json(res)
        return 0
    print(
        f"version {res['version']} ({args.mode}): {res['n']} in-scope queries, {res['n_out_of_scope']} out of scope"
    )
    print(f"  hit@1 {res['hit@1']}  hit@3 {res['hit@3']}  hit@10 {res['hit@10']}  MRR {res['mrr']}")
    if "handoff" in res:
        h = res["handoff"]
        print(
            f"  hand-off: threshold {h['threshold']}  precision {h['precision']}  recall {h['recall']}  AUROC {h['auroc']}"
        )
    for f in res.get("failures", []):
        print(f"  miss: {f['query']!r} expected {f['expected']} got {f['got']}")
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    from kbflow.publish import list_versions

    infos = list_versions(_resolve_home(args.home) / "indexes")
    if args.json:
        _print_json([i.__dict__ for i in infos])
        return 0
    if not infos:
        print("no index versions yet; run `kbflow nightly --source ...`")
    for i in infos:
        print(
            f"{'*' if i.live else ' '} {i.version}  {i.created_at}  {i.model_key}  entries {i.entries}  passages {i.passages}  {i.status}"
        )
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from kbflow import catalog
    from kbflow.publish import rollback

    home = _resolve_home(args.home)
    new, old = rollback(home / "indexes", args.version)
    catalog.record_publish_event(home / "catalog.duckdb", "rollback", new, old, None)
    print(f"rolled back: {new} is live (was {old})")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from kbflow import catalog

    for r in catalog.recent_runs(_resolve_home(args.home) / "catalog.duckdb", args.n):
        print(
            f"{r['run_id']}  {r['run_date']}  {r['status']:<10} {r['version'] or '-':<28} {r['message'] or ''}"
        )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from kbflow.runconfig import load_settings
    from kbflow.service import serve

    home = _resolve_home(args.home)
    overrides: dict[str, Any] = {}
    if args.rerank_url:
        overrides = {"search.rerank.enabled": True, "search.rerank.url": args.rerank_url}
    settings = load_settings(str(home), overrides)
    if not (home / "indexes").is_dir():
        print(
            f"kbflow: no index in {home} yet; the service answers with hand-offs until "
            "`kbflow nightly` publishes one",
            file=sys.stderr,
        )
    print(f"kbflow: serving {home} on http://{args.host}:{args.port} (Ctrl-C to stop)")
    serve(home, settings, args.host, args.port)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "nightly": cmd_nightly,
    "search": cmd_search,
    "eval": cmd_eval,
    "versions": cmd_versions,
    "rollback": cmd_rollback,
    "runs": cmd_runs,
    "serve": cmd_serve,
}


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
    try:
        return COMMANDS[args.command](args)
    except KbflowError as exc:
        print(f"kbflow: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("kbflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
