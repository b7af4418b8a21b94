"""Every SQL file under sql/ runs against DuckDB: a new file needs no new test code."""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path

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
from kbflow.store.segments import attach_log_views
from kbflow.store.sql import list_sql, load_sql

_PARAM = re.compile(r"\$([a-z_0-9]+)")


def _value(name: str):
    if name.endswith("_at"):
        return datetime(2026, 11, 24, 2, 0)
    if name in ("run_date", "end_date"):
        return date(2026, 11, 24)
    if name.endswith("_days"):
        return 14
    if name in ("limit",) or name.startswith(("n_", "min_", "max_")) or name.endswith("_sessions"):
        return 10
    if name.endswith("_ms"):
        return 300.0
    if name.endswith(("_rate", "_threshold", "_factor")):
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
    for ddl in [*list_sql("schema"), "suggest/create_suggestion_tables"]:
        if ddl.split("/")[-1].startswith("create_"):
            c.execute(load_sql(ddl))
    # the same entries shown to several sessions and the same gap query asked twice, so that a
    # statement that groups at the wrong grain returns duplicate keys
    c.execute(
        "insert into search_events values ('q1', '2026-11-24 02:00:00+00', 's1', 'u1', '发票', 'v1',"
        " ['a', 'b', 'c'], [0.9, 0.5, 0.2], 0.9, 12.5, 0, false, 0.35),"
        " ('q2', '2026-11-24 02:01:00+00', 's1', 'u1', '=cmd', 'v1', [], [], null, 30.0, 2, true, null),"
        " ('q3', '2026-11-24 03:00:00+00', 's2', 'u2', '发票', 'v1',"
        " ['a', 'c', 'b'], [0.3, 0.2, 0.1], 0.3, 14.0, 0, true, 0.35),"
        " ('q4', '2026-11-24 04:00:00+00', 's3', 'u3', '开发票', 'v1',"
        " ['b', 'a', 'c'], [0.2, 0.1, 0.1], 0.2, 9.0, 1, true, 0.35)"
    )
    c.execute(
        "insert into click_events values ('q1', '2026-11-24 02:00:05+00', 's1', 'u1', 'a', 1),"
        " ('q4', '2026-11-24 04:00:09+00', 's3', 'u3', 'b', 1)"
    )
    tables = {r[0] for r in c.execute("select table_name from duckdb_tables()").fetchall()}
    for table in sorted(tables - catalog_tables):
        c.execute(f"create temp table staged_{table} as select * from {table}")
    attach_log_views(c, None)  # search_log / click_log, what the mining statements read
    c.execute(load_sql("suggest/create_norm_query"))
    c.execute(
        "create temp table staged_entry_questions as select * from (values"
        " ('a', '发票'), ('b', '怎么开发票')) t(entry_id, question)"
    )
    # the review queue's statements: the live version's tables and the week's mined rows
    c.execute(
        "create temp table staged_kb_entries as select * from (values"
        " ('a', '发票', '开票后7天内可重开', 'billing', null),"
        " ('b', '怎么开发票', '开票后15天内可重开', 'billing', '2026-12-05')"
        ") t(entry_id, title, answer, category, expires_at)"
    )
    c.execute(
        "create temp table staged_kb_stale as select * from (values"
        " ('c', '旧活动', 'expired', '2026-11-01')) t(entry_id, title, reason, stale_since)"
    )
    c.execute(
        "create temp table staged_kb_duplicates as select * from (values"
        " ('a', 'b', 0.97, '发票', '怎么开发票')) t(entry_a, entry_b, score, matched_a, matched_b)"
    )
    c.execute(
        "create temp table staged_kb_contradictions as select entry_a, entry_b, similarity,"
        " fact_kind, topic, value_a, value_b, evidence_a, evidence_b from staged_contradictions"
    )
    c.execute("create temp table staged_answers as select * from review_low_click_answers")
    c.execute("create temp table staged_kb_gaps as select * from review_kb_gaps")
    c.execute("create temp table staged_impact_entries as select 'a' as entry_id")
    c.execute("create temp table staged_week_suggestions as select * from review_suggestions")
    c.execute(
        load_sql("suggest/create_week_entry_impact"),
        {"start_at": datetime(2026, 11, 23), "end_at": datetime(2026, 11, 30)},
    )
    c.execute(load_sql("mining/create_gap_events"))  # the gap_events macro of two statements
    c.execute(
        "create temp table staged_gap_assignments as select * from (values"
        " ('发票', 0), ('开发票', 0), ('=cmd', 1)) t(query, cluster_id)"
    )
    yield c
    c.close()


def _log_segments(con, name: str, tmp_path: Path) -> dict[str, list[str]]:
    """For ``sql/logs/`` statements: the log views dropped, a Parquet segment of each kind
    (copies of the sample events), and the temp table a dedupe or repeat count reads."""
    con.execute(load_sql("logs/drop_log_views"))
    files = {}
    for kind in ("search", "click"):
        path = tmp_path / f"{kind}.parquet"
        con.execute(f"copy (select * from {kind}_events) to '{path}' (format parquet)")
        files[kind] = [str(path)]
    kind = "search" if "search" in name else "click"
    if name.startswith(("logs/dedupe_", "logs/select_")):
        con.execute(
            load_sql(f"logs/create_{kind}_log"),
            {
                "files": files[kind],
                "start_at": datetime(1970, 1, 1),
                "end_at": datetime(9999, 1, 1),
            },
        )
    return {"files": files[kind]}


@pytest.mark.parametrize("name", list_sql())
def test_sql_file_runs(con, name, tmp_path):
    text = load_sql(name)
    assert text.lstrip().startswith("--"), (
        f"{name}: needs a header comment (purpose, inputs, grain)"
    )
    assert "{" not in text.replace("{}", ""), (
        f"{name}: looks like a format string; bind parameters instead"
    )
    params = {p: _value(p) for p in set(_PARAM.findall(text))}
    if name.startswith("logs/") and name != "logs/drop_log_views":
        files = _log_segments(con, name, tmp_path)
        if "files" in params:
            params.update(files)
    con.execute(text, params) if params else con.execute(text)
    if name.split("/")[-1].startswith("select_"):
        _check_grain(name, text, con)


def _header(text: str, field: str) -> str | None:
    m = re.search(rf"^-- {field}:\s*(.+)$", text, re.M)
    return m.group(1).strip() if m else None


def _check_grain(name: str, text: str, con: duckdb.DuckDBPyConnection) -> None:
    """A select statement declares its grain, and its ``key:`` (the columns one row per which
    it returns, ``-`` for at most one row), which the result must keep."""
    assert _header(text, "grain"), f"{name}: the header must say its grain"
    key = _header(text, "key")
    assert key, f"{name}: the header must name its key (columns unique per row, or -)"
    rows = con.fetchall()
    columns = [d[0] for d in con.description or []]
    if key == "-":
        assert len(rows) <= 1, f"{name}: declares at most one row, returned {len(rows)}"
        return
    cols = [c.strip() for c in key.split(",")]
    assert set(cols) <= set(columns), f"{name}: key {cols} not among the output {columns}"
    keys = [tuple(r[columns.index(c)] for c in cols) for r in rows]
    assert len(keys) == len(set(keys)), f"{name}: duplicate {cols} in {keys}"


def test_catalog_sql_files_exist():
    assert {"catalog/create_tables", "catalog/insert_run", "catalog/insert_row_outcomes"} <= set(
        list_sql("catalog")
    )
