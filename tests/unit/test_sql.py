"""Every SQL file under sql/ runs against DuckDB: a new file needs no new test code."""

from __future__ import annotations

import re
from datetime import date, datetime

import duckdb
import pytest

from kbflow.contracts import DEDUP_MERGE, QUARANTINE_ROW, ROW_OUTCOME, STALE_ENTRY, table_from_rows
from kbflow.sqlfiles import list_sql, load_sql

_PARAM = re.compile(r"\$([a-z_0-9]+)")


def _value(name: str):
    if name.endswith("_at"):
        return datetime(2026, 11, 24, 2, 0)
    if name in ("run_date",):
        return date(2026, 11, 24)
    if name in ("limit",) or name.startswith("n_"):
        return 10
    if name in ("files", "summary", "manifest"):
        return "{}"
    return "x"


@pytest.fixture
def con(tmp_path):
    c = duckdb.connect(str(tmp_path / "c.duckdb"))
    c.execute(load_sql("catalog/create_tables"))
    c.register(
        "staged_outcomes",
        table_from_rows([{"row_id": 1, "entry_id": "a", "outcome": "indexed"}], ROW_OUTCOME),
    )
    c.register(
        "staged_quarantine", table_from_rows([{"row_id": 2, "expectation": "e"}], QUARANTINE_ROW)
    )
    c.register(
        "staged_merges",
        table_from_rows([{"kind": "near", "canonical_id": "a", "merged_id": "b"}], DEDUP_MERGE),
    )
    c.register(
        "staged_stale", table_from_rows([{"entry_id": "c", "reason": "expired"}], STALE_ENTRY)
    )
    yield c
    c.close()


@pytest.mark.parametrize("name", list_sql())
def test_sql_file_runs(con, name):
    text = load_sql(name)
    assert text.lstrip().startswith("--"), (
        f"{name}: needs a header comment (purpose, inputs, grain)"
    )
    assert "{" not in text.replace("{}", ""), (
        f"{name}: looks like a format string; bind parameters instead"
    )
    params = {p: _value(p) for p in set(_PARAM.findall(text))}
    con.execute(text, params) if params else con.execute(text)


def test_catalog_sql_files_exist():
    assert {"catalog/create_tables", "catalog/insert_run", "catalog/insert_row_outcomes"} <= set(
        list_sql("catalog")
    )
