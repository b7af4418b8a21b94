"""``kbflow nightly``: run the ``kb-nightly`` flow on one export and print its summary."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from kbflow.cli.common import print_json, resolve_home
from kbflow.cli.embed import overrides_from_args
from kbflow.errors import BLOCKED_EXIT, KbflowError
from kbflow.store.home import DataHome


def cmd_nightly(args: argparse.Namespace) -> int:
    from kbflow.settings import load_settings, parse_run_date
    from kbflow.store.home import new_run_id

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    home = resolve_home(args.home)
    overrides = {"embed.dim": args.dim, **overrides_from_args(args)}
    if args.golden:
        overrides["gate.golden"] = str(args.golden.resolve())
    if getattr(args, "full_rebuild", False):
        overrides["index.incremental"] = False
    load_settings(str(home), overrides)  # fail fast on bad settings, before Prefect starts
    run_date = parse_run_date(args.run_date)
    from kbflow.pull.discover import discover_export

    discover_export(args.source)  # a missing or unreadable source is reported before Prefect starts
    run_id = new_run_id()
    from kbflow_flows.nightly import kb_nightly

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
    summary_path = DataHome(home).run_dir(run_id) / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    else:
        summary = {"run_id": run_id, "status": "failed", "message": str(error)}
    summary.pop("calibration", None) if not args.json else None
    if args.json:
        print_json(summary)
    else:
        print_summary(summary)
    if summary["status"] in ("published", "unchanged"):
        return 0
    if summary["status"] == "blocked":
        print(
            f"kbflow: run {run_id} blocked by the quality gate, {summary.get('message')}. The live "
            "version keeps serving; see the report for the failing queries, fix the export, or "
            "rerun with --force to publish anyway.",
            file=sys.stderr,
        )
        return BLOCKED_EXIT
    print(
        f"kbflow: run {run_id} {summary['status']}: {summary.get('message', 'see the report')}",
        file=sys.stderr,
    )
    return error.exit_code if isinstance(error, KbflowError) else 1


def print_summary(s: dict[str, Any]) -> None:
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
    from kbflow.report.nightly import describe_build, describe_model_choice

    if s.get("model_choice"):
        print(f"model: {describe_model_choice(s['model_choice'])}")
    if s.get("index_build"):
        print(f"index: {describe_build(s['index_build'])}")
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
