"""A run's life: open it (clearing what an interrupted run left), close it, and the checks a
flow makes between stages (is the export unchanged against the live version; which entries
retire). Stages themselves are in their packages; a flow calls these through its tasks."""

from __future__ import annotations

import json
import logging
from datetime import date
from typing import Any

from kbflow.contracts import (
    RAW_ROW,
    read_table,
)
from kbflow.embed.cache import remove_partial_shards
from kbflow.index.build import clean_stale_builds
from kbflow.publish.pointer import repair_history
from kbflow.results import Chunked, RunStarted
from kbflow.settings import Settings, settings_fingerprint
from kbflow.store import catalog
from kbflow.store.home import DataHome, atomic_write_text
from kbflow.store.versions import current_version, live_manifest

log = logging.getLogger(__name__)


def start_run(home: DataHome, run_id: str, run_date: date, flow: str = "kb-nightly") -> RunStarted:
    """Open the run in the catalog after clearing what an interrupted run left behind.

    Call it holding the data home's run lock (every flow that opens runs takes it): half-built
    versions, half-deleted versions and temp files are then ours to remove, runs still
    ``running`` are dead (closed as ``interrupted``), and a move of ``CURRENT`` the catalog
    missed is recorded.
    """
    removed = clean_stale_builds(home.indexes) + remove_partial_shards(home.embeddings)
    if removed:
        log.warning("removed files left by an interrupted run: %s", ", ".join(removed))
    interrupted = catalog.close_interrupted_runs(home.catalog_path)
    if interrupted:
        log.warning("runs %s had stopped without finishing; marked interrupted", interrupted)
    missed = catalog.reconcile_live_version(home.catalog_path, current_version(home.indexes))
    if missed:
        log.warning("CURRENT had moved from %s without a catalog record; recorded it", missed)
    if repair_history(home.indexes):
        log.warning("the live version was missing from indexes/HISTORY; appended it")
    catalog.open_run(home.catalog_path, run_id, flow, run_date)
    return {
        "run_id": run_id,
        "run_date": run_date.isoformat(),
        "live_version": current_version(home.indexes),
    }


def finish_run(
    home: DataHome, run_id: str, status: str, summary: dict[str, Any], message: str | None = None
) -> dict[str, Any]:
    summary = {**summary, "run_id": run_id, "status": status}
    if message:
        summary["message"] = message
    catalog.close_run(
        home.catalog_path,
        run_id,
        status,
        summary,
        snapshot_id=summary.get("snapshot_id"),
        version=summary.get("version"),
        message=message,
    )
    atomic_write_text(
        home.run_dir(run_id) / "summary.json",
        json.dumps(summary, ensure_ascii=False, indent=2, default=str),
    )
    return summary


def is_unchanged(home: DataHome, chunked: Chunked, settings: Settings) -> bool:
    """True when the live version already holds exactly these passages with this model/settings."""
    live = live_manifest(home)
    return bool(
        live
        and live.get("passages_fingerprint") == chunked["fingerprint"]
        and live.get("settings_fingerprint") == settings_fingerprint(settings)
    )


def retired_entries(home: DataHome, run_id: str) -> list[str]:
    """Entries of the live version that the new snapshot no longer contains at all."""
    live = current_version(home.indexes)
    if live is None:
        return []
    import pyarrow.parquet as pq

    old = set(
        pq.read_table(home.indexes / live / "passages.parquet", columns=["entry_id"])
        .column("entry_id")
        .to_pylist()
    )
    rows = read_table(home.stage_dir(run_id, "validate") / "rows.parquet", RAW_ROW)
    now = {i.strip() for i in rows.column("id").to_pylist() if i}
    return sorted(old - now)


def record_retired(home: DataHome, run_id: str) -> int:
    retired = retired_entries(home, run_id)
    atomic_write_text(
        home.run_dir(run_id) / "retired.json", json.dumps(retired, ensure_ascii=False)
    )
    return len(retired)
