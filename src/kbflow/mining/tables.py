"""The week's review tables, in ``logs.duckdb`` beside the events they are computed from
(``sql/schema/create_review_tables.sql``): the mining statements join events and staged rows in
one database, a week is replaced in one transaction, and the catalog stays a small record of
nightly runs. Every table is keyed by ``week``; a rerun replaces that week's rows only."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from kbflow.store.db import staged, transaction
from kbflow.store.logs import connect_logs
from kbflow.store.sql import fetch_table, load_sql

WEEK_TABLES = ("low_click_answers", "kb_gaps", "weekly_metrics")


def write_week_tables(
    con: duckdb.DuckDBPyConnection, week: str, tables: dict[str, pa.Table]
) -> None:
    """Replace ``week``'s rows of the three review tables in one transaction."""
    con.execute(load_sql("schema/create_review_tables"))
    with transaction(con):
        for name in WEEK_TABLES:
            con.execute(load_sql(f"mining/delete_week_{name}"), {"week": week})
            with staged(con, f"staged_review_{name}", tables[name]):
                con.execute(load_sql(f"mining/insert_review_{name}"))


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def read_week_tables(logs_path: Path, week: str) -> dict[str, pa.Table]:
    """The week's rows of the three review tables (empty tables if never mined)."""
    with connect_logs(logs_path, retry_s=60.0) as con:
        con.execute(load_sql("schema/create_review_tables"))
        return {
            name: fetch_table(con, f"mining/select_review_{name}", {"week": week})
            for name in WEEK_TABLES
        }
