"""Load SQL statements by name from the project's ``sql/`` folder.

Every statement lives in ``sql/<domain>/<verb>_<object>.sql``; Python never builds SQL
strings. Values are always bound parameters.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from kbflow.errors import ConfigError

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


@cache
def load_sql(name: str) -> str:
    """Return the text of ``sql/<name>.sql`` (e.g. ``"catalog/insert_run"``)."""
    path = (SQL_DIR / f"{name}.sql").resolve()
    if SQL_DIR.resolve() not in path.parents:
        raise ConfigError(f"SQL name {name!r} points outside {SQL_DIR}")
    if not path.is_file():
        raise ConfigError(f"no SQL file {path}; is kbflow installed from its source tree?")
    return path.read_text(encoding="utf-8")


def list_sql(domain: str | None = None) -> list[str]:
    """Names of every SQL file (optionally under one domain), for tests and tools."""
    root = SQL_DIR / domain if domain else SQL_DIR
    return sorted(str(p.relative_to(SQL_DIR).with_suffix("")) for p in root.rglob("*.sql"))
