"""The catalog (``catalog.duckdb``): exports seen, runs, row accounting, quarantine, merges,
stale entries, index versions and publish events.

Connections are short-lived (one per call) so that readers in other processes are blocked only
briefly; all writes of one run's row facts happen in one transaction and replace that run's
previous rows, so a rerun is safe.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from kbflow.errors import ConfigError
from kbflow.store.db import staged, transaction
from kbflow.store.sql import load_sql


@contextmanager
def connect(path: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the catalog, creating its tables on first use."""
    if read_only and not path.exists():
        read_only = False
    con = duckdb.connect(str(path), read_only=read_only)
    try:
        if not read_only:
            con.execute(load_sql("catalog/create_tables"))
        yield con
    finally:
        con.close()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def record_export(
    path: Path,
    snapshot_id: str,
    snapshot_sha256: str,
    source: str,
    files: Sequence[Mapping[str, Any]],
) -> None:
    with connect(path) as con:
        con.execute(
            load_sql("catalog/insert_export"),
            {
                "snapshot_id": snapshot_id,
                "snapshot_sha256": snapshot_sha256,
                "source": source,
                "n_files": len(files),
                "files": json.dumps(files, ensure_ascii=False),
                "seen_at": _now(),
            },
        )


def open_run(path: Path, run_id: str, flow: str, run_date: date) -> None:
    """Record a new run; ``ConfigError`` when ``run_id`` was used before (a run id names one
    run for good: its folder, stage markers and catalog rows)."""
    with connect(path) as con:
        if con.execute(load_sql("catalog/select_run_exists"), {"run_id": run_id}).fetchone():
            raise ConfigError(
                f"run {run_id} already exists in {path}; a run id is used once: start a new "
                "run without one (kbflow makes a fresh id)"
            )
        con.execute(
            load_sql("catalog/insert_run"),
            {"run_id": run_id, "flow": flow, "run_date": run_date, "started_at": _now()},
        )


def close_interrupted_runs(path: Path) -> list[str]:
    """Mark every run still ``running`` as ``interrupted``; returns their ids.

    Runs are opened only under the data home's run lock (``pipeline.start_run``), so while
    holding it no other run can be alive: a ``running`` row is a run whose process was killed.
    """
    with connect(path) as con:
        rows = con.execute(
            load_sql("catalog/update_interrupted_runs"),
            {
                "finished_at": _now(),
                "message": "the run's process stopped before it finished (killed or crashed); "
                "a later run took over",
            },
        ).fetchall()
    return [r[0] for r in rows]


def close_run(
    path: Path,
    run_id: str,
    status: str,
    summary: dict[str, Any],
    snapshot_id: str | None = None,
    version: str | None = None,
    message: str | None = None,
) -> None:
    with connect(path) as con:
        con.execute(
            load_sql("catalog/update_run"),
            {
                "run_id": run_id,
                "finished_at": _now(),
                "status": status,
                "snapshot_id": snapshot_id,
                "version": version,
                "summary": json.dumps(summary, ensure_ascii=False, default=str),
                "message": message,
            },
        )


def record_row_facts(
    path: Path,
    run_id: str,
    outcomes: pa.Table,
    quarantine: pa.Table,
    merges: pa.Table,
    stale: pa.Table,
) -> None:
    """Replace the run's row outcomes, quarantine, merges and stale entries in one transaction."""
    with connect(path) as con, transaction(con):
        for table in ("row_outcomes", "quarantine", "dedup_merges", "stale_entries"):
            con.execute(load_sql(f"catalog/delete_run_{table}"), {"run_id": run_id})
        for name, table, sql in (
            ("staged_outcomes", outcomes, "catalog/insert_row_outcomes"),
            ("staged_quarantine", quarantine, "catalog/insert_quarantine"),
            ("staged_merges", merges, "catalog/insert_dedup_merges"),
            ("staged_stale", stale, "catalog/insert_stale_entries"),
        ):
            with staged(con, name, table):
                con.execute(load_sql(sql), {"run_id": run_id})


def record_version(path: Path, manifest: dict[str, Any]) -> None:
    with connect(path) as con:
        con.execute(
            load_sql("catalog/insert_version"),
            {
                "version": manifest["version"],
                "run_id": manifest["run_id"],
                "created_at": _now(),
                "snapshot_id": manifest.get("snapshot_id"),
                "model_key": manifest["embedding"]["model_key"],
                "n_entries": manifest["counts"]["entries"],
                "n_passages": manifest["counts"]["passages"],
                "manifest": json.dumps(manifest, ensure_ascii=False, default=str),
            },
        )


def record_publish_event(
    path: Path, action: str, version: str, previous: str | None, run_id: str | None
) -> None:
    with connect(path) as con:
        con.execute(
            load_sql("catalog/insert_publish_event"),
            {
                "event_at": _now(),
                "action": action,
                "version": version,
                "previous_version": previous,
                "run_id": run_id,
            },
        )


def reconcile_live_version(path: Path, live: str | None) -> str | None:
    """Make the publish events agree with ``CURRENT`` (``live``).

    A run killed between moving ``CURRENT`` and recording the event (or a rollback killed
    the same way) leaves the catalog one move behind; the next run records the move it missed
    as a ``recovered`` event. Returns the version the catalog wrongly had as live, or None
    when it agreed. Call it while holding the run lock.
    """
    if live is None:
        return None
    with connect(path) as con:
        last = con.execute(load_sql("catalog/select_last_publish_event")).fetchone()
        recorded = last[0] if last else None
        if recorded == live:
            return None
        con.execute(
            load_sql("catalog/insert_publish_event"),
            {
                "event_at": _now(),
                "action": "recovered",
                "version": live,
                "previous_version": recorded,
                "run_id": None,
            },
        )
    return recorded or "(none)"


def run_accounting(path: Path, run_id: str) -> dict[str, int]:
    with connect(path, read_only=True) as con:
        rows = con.execute(load_sql("catalog/select_run_accounting"), {"run_id": run_id}).fetchall()
    return {outcome: int(n) for outcome, n in rows}


def recent_runs(path: Path, limit: int = 20) -> list[dict[str, Any]]:
    with connect(path, read_only=True) as con:
        cur = con.execute(load_sql("catalog/select_runs"), {"limit": limit})
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def quarantined_rows(path: Path, run_id: str) -> list[dict[str, Any]]:
    with connect(path, read_only=True) as con:
        cur = con.execute(load_sql("catalog/select_quarantine"), {"run_id": run_id})
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
