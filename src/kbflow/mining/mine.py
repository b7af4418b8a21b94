"""Mine one ISO week: compute the review rows from the logs (SQL, plus the clustering) and write
them; the alerts of the week's health metrics."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from kbflow.mining.cluster import assign_gap_clusters
from kbflow.mining.kb import LiveKb
from kbflow.mining.suggest import compute_suggestions, write_suggestions
from kbflow.mining.tables import _plain, write_week_tables
from kbflow.mining.weeks import parse_week, previous_week, week_bounds
from kbflow.settings import MiningSettings
from kbflow.store.db import staged
from kbflow.store.logs import connect_logs
from kbflow.store.segments import attach_log_views
from kbflow.store.sql import fetch_table, load_sql

log = logging.getLogger(__name__)


def compute_week(
    con: duckdb.DuckDBPyConnection,
    week: str,
    settings: MiningSettings,
    mined_at: datetime | None = None,
    segments: str | None = None,
    kb: LiveKb | None = None,
) -> dict[str, Any]:
    """Compute one week's review rows from the log on ``con`` (``logs.duckdb``) and the Parquet
    segments at ``segments`` (None: ``logs.duckdb`` alone); with ``kb`` (the live version,
    ``kbflow.mining.kb.live_kb``) gap queries are grouped by meaning with its encoder, and the
    week's suggestions for the review queue are computed.

    Returns ``{"low_click_answers": Table, "kb_gaps": Table, "weekly_metrics": Table,
    "unclustered": int, "gap_clustering": str, "suggestions": Table | None}``; writes
    nothing."""
    start, end = week_bounds(week, settings.timezone)
    prev_start, prev_end = week_bounds(previous_week(week), settings.timezone)
    mined_at = mined_at or datetime.now(UTC)
    window = {"start_at": start, "end_at": end}
    files = attach_log_views(con, segments, prev_start, end)
    if segments:
        log.info(
            "mine: %s: %d search and %d click segment files", week, files["search"], files["click"]
        )
    answers = fetch_table(
        con,
        "mining/select_answer_stats",
        {
            **window,
            "week": week,
            "min_impressions": settings.min_impressions,
            "ctr_threshold": settings.ctr_threshold,
            "n_samples": settings.sample_queries,
            "mined_at": mined_at,
        },
    )
    con.execute(load_sql("mining/create_gap_events"))  # the gap_events macro both read
    gap_queries = fetch_table(con, "mining/select_gap_queries", window)
    assignments, unclustered, method = assign_gap_clusters(
        gap_queries,
        settings,
        kb.encode if kb is not None else None,
        kb.query_threshold if kb is not None else None,
    )
    with staged(con, "staged_gap_assignments", assignments):
        gaps = fetch_table(
            con,
            "mining/select_gap_clusters",
            {**window, "week": week, "n_samples": settings.example_queries, "mined_at": mined_at},
        )
    metrics = fetch_table(
        con,
        "mining/select_weekly_metrics",
        {
            **window,
            "week": week,
            "prev_start_at": prev_start,
            "prev_end_at": prev_end,
            "n_bins": settings.histogram_bins,
            "p95_alert_ms": settings.p95_alert_ms,
            "fallback_alert_rate": settings.fallback_alert_rate,
            "handoff_alert_rate": settings.handoff_alert_rate,
            "ks_alert_threshold": settings.ks_alert_threshold,
            "min_ks_samples": settings.min_ks_samples,
            "mined_at": mined_at,
        },
    )
    suggestions = None
    if kb is not None:
        suggestions = compute_suggestions(
            con, week, start, end, settings, kb, mined_at, answers, gaps
        )
    return {
        "low_click_answers": answers,
        "kb_gaps": gaps,
        "weekly_metrics": metrics,
        "unclustered": unclustered,
        "gap_clustering": method,
        "suggestions": suggestions,
    }


def _config(settings: MiningSettings) -> dict[str, Any]:
    cfg: dict[str, Any] = {"memory_limit": settings.duckdb_memory_limit}
    if settings.duckdb_threads:
        cfg["threads"] = settings.duckdb_threads
    return cfg


def mine_week(
    logs_path: Path,
    week: str,
    settings: MiningSettings | None = None,
    mined_at: datetime | None = None,
    segments: str | None = None,
    kb: LiveKb | None = None,
) -> dict[str, Any]:
    """Mine ``week`` of the log (``logs.duckdb`` and the segments at ``segments``) into its
    review tables in ``logs.duckdb`` (rerun-safe: replaces the week). With ``kb`` (the live
    version, ``kbflow.mining.kb.live_kb``), gap topics by meaning and the week's suggestions
    for the review queue (``kbflow.mining.suggest``).

    Returns a small summary: week, row counts, flagged answers, clusters, the metrics row and
    the alert names raised. Raises ``ConfigError`` for a malformed week."""
    settings = settings or MiningSettings()
    parse_week(week)
    with connect_logs(logs_path, retry_s=60.0, config=_config(settings)) as con:
        tables = compute_week(con, week, settings, mined_at, segments, kb)
        write_week_tables(con, week, tables)
        suggested = None
        if tables["suggestions"] is not None:
            suggested = write_suggestions(con, week, tables["suggestions"], settings)
    metrics = _plain(tables["weekly_metrics"].to_pylist()[0])
    answers = tables["low_click_answers"]
    summary = {
        "week": week,
        "answers": answers.num_rows,
        "flagged_answers": sum(1 for f in answers.column("flagged").to_pylist() if f),
        "gap_clusters": tables["kb_gaps"].num_rows,
        "unclustered_queries": tables["unclustered"],
        "gap_clustering": tables["gap_clustering"],
        "metrics": metrics,
        "alerts": alerts_of(metrics),
        "suggestions": suggested,
    }
    log.info(
        "mine: %s: %d queries, %d answers (%d flagged), %d gap clusters, alerts %s",
        week,
        metrics["n_queries"],
        summary["answers"],
        summary["flagged_answers"],
        summary["gap_clusters"],
        summary["alerts"] or "none",
    )
    return summary


def alerts_of(metrics: dict[str, Any]) -> list[str]:
    names = {
        "alert_p95": "p95_latency",
        "alert_fallback": "fallback_rate",
        "alert_handoff": "handoff_rate",
        "alert_score_shift": "top1_score_shift",
    }
    return [name for col, name in names.items() if metrics.get(col)]
