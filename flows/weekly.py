"""Flow ``kb-weekly-mining``: mine a week of search/click logs → review tables → exports → report."""

from __future__ import annotations

from typing import Any

from kbflow_tasks import weekly as t
from prefect import flow

from kbflow.mining.weeks import default_week, parse_week
from kbflow.settings import load_settings
from kbflow.store.home import DataHome


@flow(name="kb-weekly-mining", log_prints=False)
def kb_weekly_mining(
    week: str | None = None,
    home: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Mine one ISO week (``2026-W47``, Asia/Shanghai; default the last complete week) of
    the search log (``logs.duckdb`` and the Parquet segments of ``logs.segments``) into its
    review tables and review queue, CSV/Parquet exports and an HTML report. A rerun replaces
    that week only. Settings are ``Settings.mining`` (``KBFLOW_MINING__*``);
    ``overrides`` are mining settings (``{"min_impressions": 50}``)."""
    mining = {f"mining.{k}": v for k, v in (overrides or {}).items()}
    settings = load_settings(home, mining)
    data = DataHome.at(settings.home)
    week = week or default_week(tz=settings.mining.timezone)
    parse_week(week)
    summary = t.mine(data, week, settings)
    exports = t.export(data, week)
    return t.report(data, week, {**summary, "exports": exports})
