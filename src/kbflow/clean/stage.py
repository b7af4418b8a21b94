"""Stage ``clean``: valid rows in, canonical entries, merges, stale entries and row outcomes out
(``runs/<run_id>/clean/``)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import cast

from kbflow.clean.dedup import clean_rows
from kbflow.contracts import (
    CLEAN_ENTRY,
    DEDUP_MERGE,
    RAW_ROW,
    ROW_OUTCOME,
    STALE_ENTRY,
    read_table,
    write_table,
)
from kbflow.results import Cleaned
from kbflow.runner import run_stage
from kbflow.settings import Settings
from kbflow.store.home import DataHome


def clean_stage(home: DataHome, run_id: str, run_date: date, settings: Settings) -> Cleaned:
    def run(folder: Path) -> Cleaned:
        valid = read_table(home.stage_dir(run_id, "validate") / "valid.parquet", RAW_ROW)
        res = clean_rows(valid, run_date, settings.clean)
        write_table(res.entries, folder / "entries.parquet", CLEAN_ENTRY)
        write_table(res.merges, folder / "merges.parquet", DEDUP_MERGE)
        write_table(res.stale, folder / "stale.parquet", STALE_ENTRY)
        write_table(res.outcomes, folder / "outcomes.parquet", ROW_OUTCOME)
        until = res.stable_until.isoformat() if res.stable_until else None
        return cast(Cleaned, {**res.counts, "entries": res.entries.num_rows, "stable_until": until})

    return run_stage(home, run_id, "clean", run)
