"""Prefect tasks of ``kb-weekly-mining``: thin wrappers, one call into ``kbflow.mining`` each.

The review tables live in ``logs.duckdb``; the events are read from it and from the Parquet log
segments the serving processes write. Tasks return small summaries and paths. Only a locked
``logs.duckdb`` (an import or another mining run writing it) is worth a retry.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from kbflow.mining.export import export_week, render_week_report
from kbflow.mining.kb import live_kb
from kbflow.mining.mine import mine_week
from kbflow.mining.tables import read_week_tables
from kbflow.report.weekly import weekly_markdown
from kbflow.settings import Settings
from kbflow.store.home import DataHome
from kbflow.store.logs import LogLockedError
from kbflow.store.spool import log_places, roll_orphans


def _retry_on_lock(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except LogLockedError:
        return True
    except Exception:  # noqa: BLE001 - anything else is not transient
        return False
    return False


def _week_dir(home: DataHome, week: str) -> Any:
    return home.reports / "weekly" / week


@task(
    name="mine-week",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=30,
    retry_condition_fn=_retry_on_lock,
    timeout_seconds=3600,
)
def mine(home: DataHome, week: str, settings: Settings) -> dict[str, Any]:
    spool, segments = log_places(home.root, settings.logs)
    rolled = roll_orphans(spool, segments)  # this host's spools of dead serving processes
    if rolled:
        get_run_logger().info("mine: rolled %d orphaned spool files into segments", len(rolled))
    kb = live_kb(home.indexes, home.runs, settings.embed, settings.review.expiring_days)
    summary = mine_week(home.logs_path, week, settings.mining, segments=segments, kb=kb)
    get_run_logger().info(
        "mine: %s: %d queries, %d flagged answers, %d gap clusters (by %s), %s suggestions, "
        "alerts: %s",
        week,
        summary["metrics"]["n_queries"],
        summary["flagged_answers"],
        summary["gap_clusters"],
        summary["gap_clustering"],
        summary["suggestions"],
        ", ".join(summary["alerts"]) or "none",
    )
    return summary


@task(name="export-week", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=30,
      retry_condition_fn=_retry_on_lock, timeout_seconds=3600)  # fmt: skip
def export(home: DataHome, week: str) -> dict[str, str]:
    paths = export_week(home.logs_path, week, _week_dir(home, week), home.catalog_path)
    get_run_logger().info("export: %d files under %s", len(paths), _week_dir(home, week))
    return paths


@task(name="report-week", cache_policy=NO_CACHE, timeout_seconds=1800)
def report(home: DataHome, week: str, summary: dict[str, Any]) -> dict[str, Any]:
    path = render_week_report(home.logs_path, week, _week_dir(home, week), home.catalog_path)
    summary = {**summary, "report": str(path)}
    key = f"kb-weekly-{week.lower()}"
    create_markdown_artifact(key="kb-weekly-report", markdown=weekly_markdown(summary),
                             description=f"kb-weekly-mining {week}")  # fmt: skip
    create_link_artifact(key=key, link=path.as_uri(), link_text=f"weekly report {week}",
                         description=f"kb-weekly-mining HTML report for {week}")  # fmt: skip
    tables = read_week_tables(home.logs_path, week)
    flagged = [r for r in tables["low_click_answers"].to_pylist() if r["flagged"]][:20]
    create_table_artifact(
        key="kb-weekly-low-click-answers",
        table=[{k: r[k] for k in ("entry_id", "impressions", "clicks", "ctr")} for r in flagged],
        description=f"answers shown but rarely clicked, {week} (top 20)",
    )
    create_table_artifact(
        key="kb-weekly-kb-gaps",
        table=[
            {k: str(r[k]) for k in ("cluster_id", "label", "size", "n_users", "nearest_entry_id")}
            for r in tables["kb_gaps"].to_pylist()[:20]
        ],
        description=f"largest gap topics, {week} (top 20)",
    )
    get_run_logger().info("report: %s", path)
    return summary
