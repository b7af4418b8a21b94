"""DuckDB helpers shared by the stores: one transaction helper, one way to stage an Arrow table.

Every write of several statements (a run's row facts, a version's review rows, a week's review
tables, a batch of search events) goes through :func:`transaction`, so a failure anywhere
leaves the tables as they were and a rerun replaces what a finished one wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import pyarrow as pa


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """``begin`` ... ``commit``; ``rollback`` (and re-raise) on any exception, interrupts too."""
    con.execute("begin transaction")
    try:
        yield con
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


@contextmanager
def staged(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> Iterator[None]:
    """``table`` registered as the view ``name`` (what the named statements read staged rows
    from) for the length of the block, and unregistered after it, whatever happened."""
    con.register(name, table)
    try:
        yield
    finally:
        con.unregister(name)
