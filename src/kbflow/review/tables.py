"""The catalog's review tables of a version (``review_versions``, ``review_semantic_duplicates``,
``review_contradictions``): replaced per version in one transaction, read back for reports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from kbflow.contracts import (
    REVIEW_CONTRADICTION,
    REVIEW_SEMANTIC_DUPLICATE,
)
from kbflow.store import catalog
from kbflow.store.db import staged, transaction
from kbflow.store.sql import load_sql

#: Review tables in the catalog, by short name (the weekly bundle exports them under it).
VERSION_REVIEW_TABLES = {
    "semantic_duplicates": REVIEW_SEMANTIC_DUPLICATE,
    "contradictions": REVIEW_CONTRADICTION,
}


def write_version_review(
    catalog_path: Path,
    version: str,
    semantic: pa.Table,
    contradictions: pa.Table,
    summary: dict[str, Any],
) -> None:
    """Replace ``version``'s rows of the review tables (``review_versions``,
    ``review_semantic_duplicates``, ``review_contradictions``) in one transaction."""
    reviewed_at = datetime.now(UTC).replace(tzinfo=None)
    cal = summary.get("calibration") or {}
    with catalog.connect(catalog_path) as con:
        con.execute(load_sql("review/create_review_tables"))
        with transaction(con):
            con.execute(load_sql("review/delete_version_review_versions"), {"version": version})
            con.execute(
                load_sql("review/insert_review_version"),
                {
                    "version": version,
                    "run_id": summary.get("run_id"),
                    "reviewed_at": reviewed_at,
                    "model_key": summary.get("model_key"),
                    "method": cal.get("method"),
                    "semantic_threshold": cal.get("threshold"),
                    "n_semantic_pairs": semantic.num_rows,
                    "n_contradictions": contradictions.num_rows,
                    "summary": json.dumps(summary, ensure_ascii=False, default=str),
                },
            )
            for name, table in (
                ("semantic_duplicates", semantic),
                ("contradictions", contradictions),
            ):
                con.execute(load_sql(f"review/delete_version_{name}"), {"version": version})
                with staged(con, f"staged_{name}", table):
                    con.execute(load_sql(f"review/insert_{name}"), {"reviewed_at": reviewed_at})


@contextmanager
def _reader(catalog_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The catalog, or an empty in-memory one when it does not exist yet (nothing created)."""
    if catalog_path.is_file():
        with catalog.connect(catalog_path) as con:
            con.execute(load_sql("review/create_review_tables"))
            yield con
        return
    con = duckdb.connect(":memory:")
    try:
        con.execute(load_sql("catalog/create_tables"))
        con.execute(load_sql("review/create_review_tables"))
        yield con
    finally:
        con.close()


def _latest(con: duckdb.DuckDBPyConnection) -> str | None:
    rows = con.execute(load_sql("review/select_latest_version")).fetchall()  # consume it all
    return str(rows[0][0]) if rows else None


def latest_review(catalog_path: Path) -> dict[str, Any] | None:
    """The ``review_versions`` row of the version the weekly bundle shows: the live version
    when it was reviewed, else the most recently reviewed one; None when none was."""
    with _reader(catalog_path) as con:
        version = _latest(con)
        if version is None:
            return None
        cur = con.execute(load_sql("review/select_review_versions"), {"limit": 1_000})
        cols = [d[0] for d in cur.description]
        for row in cur.fetchall():
            rec = dict(zip(cols, row, strict=True))
            if rec["version"] == version:
                rec["summary"] = json.loads(rec["summary"]) if rec.get("summary") else {}
                return rec
    return None


def read_version_review(catalog_path: Path, version: str | None = None) -> dict[str, pa.Table]:
    """``semantic_duplicates`` and ``contradictions`` rows of ``version`` as stored in the
    catalog (with ``reviewed_at``); default: the version ``latest_review`` picks. Empty
    tables with the same columns when nothing was reviewed."""
    with _reader(catalog_path) as con:
        version = version or _latest(con) or ""
        return {
            name: con.sql(
                load_sql(f"review/select_{name}"), params={"version": version}
            ).to_arrow_table()
            for name in VERSION_REVIEW_TABLES
        }
