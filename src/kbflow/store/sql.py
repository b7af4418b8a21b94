"""Load SQL statements by name from the project's ``sql/`` folder.

Every statement lives in ``sql/<domain>/<verb>_<object>.sql``; Python never builds SQL
strings. Values are always bound parameters. The files are package data of ``kbflow``
(``kbflow/sql/``: in the source tree a link to the top-level ``sql/`` folder, in a wheel a
copy), found with ``importlib.resources``, so an installed kbflow needs no source tree.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from kbflow.errors import ConfigError

SQL_DIR = Path(str(files("kbflow") / "sql"))


@cache
def load_sql(name: str) -> str:
    """Return the text of ``sql/<name>.sql`` (e.g. ``"catalog/insert_run"``)."""
    path = (SQL_DIR / f"{name}.sql").resolve()
    if SQL_DIR.resolve() not in path.parents:
        raise ConfigError(f"SQL name {name!r} points outside {SQL_DIR}")
    if not path.is_file():
        raise ConfigError(
            f"no SQL file {path}; reinstall kbflow (its sql/ package data is missing)"
        )
    return path.read_text(encoding="utf-8")


def list_sql(domain: str | None = None) -> list[str]:
    """Names of every SQL file (optionally under one domain), for tests and tools."""
    root = SQL_DIR / domain if domain else SQL_DIR
    return sorted(str(p.relative_to(SQL_DIR).with_suffix("")) for p in root.rglob("*.sql"))


def fetch_table(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any]) -> pa.Table:
    """The result of the named statement as an Arrow table (fully read: DuckDB's ``.arrow()``
    is a lazy reader that would block the connection)."""
    return con.sql(load_sql(name), params=params).to_arrow_table()
