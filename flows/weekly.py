"""Flow ``kb-weekly-mining``: mine a week of search/click logs → review tables → exports → report."""

from __future__ import annotations

from typing import Any

from prefect import flow

from kbflow.home import DataHome
from kbflow.mining import MiningSettings, default_week, parse_week
from kbflow.runconfig import load_settings
from tasks import weekly as t


@flow(name="kb-weekly-mining", log_prints=False)
def kb_weekly_mining(
    week: str | None = None,
    home: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Mine one ISO week (``2026-W47``, Asia/Shanghai; default the last complete week) of
    ``logs.duckdb`` into its review tables, CSV/Parquet exports and an HTML report.
    A rerun replaces that week only."""
    data = DataHome.at(load_settings(home).home)
    settings = MiningSettings(**(overrides or {}))
    week = week or default_week(tz=settings.timezone)
    parse_week(week)
    summary = t.mine(data, week, settings)
    exports = t.export(data, week)
    return t.report(data, week, {**summary, "exports": exports})
