"""Every SQL file under sql/ runs against DuckDB: a new file needs no new test code."""

from __future__ import annotations

import re
from datetime import date, datetime

import duckdb
import pytest

from kbflow.contracts import (
    DEDUP_MERGE,
    QUARANTINE_ROW,
    REVIEW_CONTRADICTION,
    REVIEW_SEMANTIC_DUPLICATE,
    ROW_OUTCOME,
    STALE_ENTRY,
    table_from_rows,
)
from kbflow.sqlfiles import list_sql, load_sql

_PARAM = re.compile(r"\$([a-z_0-9]+)")


def _value(name: str):
    if name.endswith("_at"):
        return datetime(2026, 11, 24, 2, 0)
    if name in ("run_date",):
        return date(2026, 11, 24)
    if name in ("limit",) or name.startswith(("n_", "min_", "max_")):
        return 10
    if name.endswith("_ms"):
        return 300.0
    if name.endswith(("_rate", "_threshold")):
        return 0.15
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
    # catalog review tables (kbflow.review) and the staged rows their inserts read
    c.execute(load_sql("review/create_review_tables"))
    c.register(
        "staged_semantic_duplicates",
        table_from_rows(
            [{"version": "x", "model_key": "m", "entry_a": "a", "entry_b": "b", "score": 0.9}],
            REVIEW_SEMANTIC_DUPLICATE,
        ),
    )
    c.register(
        "staged_contradictions",
        table_from_rows(
            [
                {
                    "version": "x",
                    "source": "semantic",
                    "entry_a": "a",
                    "entry_b": "b",
                    "fact_kind": "amount",
                }
            ],
            REVIEW_CONTRADICTION,
        ),
    )
    # logs.duckdb: every DDL file under sql/schema/, sample events, and a staged table per
    # statement that reads one (staged_<table> has the columns of <table>).
    catalog_tables = {r[0] for r in c.execute("select table_name from duckdb_tables()").fetchall()}
    for ddl in list_sql("schema"):
        if ddl.split("/")[-1].startswith("create_"):
            c.execute(load_sql(ddl))
    c.execute(
        "insert into search_events values ('q1', '2026-11-24 02:00:00+00', 's1', 'u1', '发票', 'v1',"
        " ['a', 'b', 'c'], [0.9, 0.5, 0.2], 0.9, 12.5, 0, false, 0.35),"
        " ('q2', '2026-11-24 02:01:00+00', 's1', 'u1', '=cmd', 'v1', [], [], null, 30.0, 2, true, null)"
    )
    c.execute(
        "insert into click_events values ('q1', '2026-11-24 02:00:05+00', 's1', 'u1', 'a', 1)"
    )
    tables = {r[0] for r in c.execute("select table_name from duckdb_tables()").fetchall()}
    for table in sorted(tables - catalog_tables):
        c.execute(f"create temp table staged_{table} as select * from {table}")
    c.execute("create temp table staged_gap_assignments as select '发票' as query, 0 as cluster_id")
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
