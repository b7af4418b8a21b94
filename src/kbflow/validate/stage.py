"""Stage ``validate``: read the landed export, check it, split valid rows from quarantined ones
(``runs/<run_id>/validate/``). A batch-level failure stops the run before anything is built."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kbflow.contracts import (
    DEDUP_MERGE,
    QUARANTINE_ROW,
    RAW_ROW,
    ROW_OUTCOME,
    STALE_ENTRY,
    read_table,
    write_table,
)
from kbflow.pull.readers import read_export
from kbflow.results import Pulled, Validated
from kbflow.runner import run_stage
from kbflow.settings import Settings
from kbflow.store import catalog
from kbflow.store.home import DataHome
from kbflow.store.versions import live_manifest
from kbflow.validate.expectations import validate_rows


def validate_stage(home: DataHome, run_id: str, pulled: Pulled, settings: Settings) -> Validated:
    def run(folder: Path) -> Validated:
        from kbflow.pull.discover import ExportFile

        files = [ExportFile.from_landed(f) for f in pulled["files"]]
        read = read_export(Path(pulled["root"]), files)
        live = live_manifest(home)
        live_entries = live["counts"]["entries"] if live else None
        # rows.parquet is written on a second thread (Arrow releases the GIL) while the
        # expectations run: ~4 s of a million rows' validate.
        with ThreadPoolExecutor(max_workers=1) as pool:
            written = pool.submit(write_table, read.rows, folder / "rows.parquet", RAW_ROW)
            result = validate_rows(
                read.rows, settings.validation, live_entries, parse_quarantine=read.quarantine
            )
            written.result()
        write_table(result.valid, folder / "valid.parquet", RAW_ROW)
        write_table(result.quarantine, folder / "quarantine.parquet", QUARANTINE_ROW)
        write_table(result.outcomes, folder / "outcomes.parquet", ROW_OUTCOME)
        write_table(result.merges, folder / "merges.parquet", DEDUP_MERGE)
        (folder / "expectations.json").write_text(
            json.dumps(result.expectations, indent=2), encoding="utf-8"
        )
        return {
            "input": result.counts["input"],
            "valid": result.counts["valid"],
            "quarantined": result.counts["quarantined"],
            # Blank lines and all-empty records are not rows (no row_id); counted so they show.
            "blank_lines": read.counts["blank_lines"],
            "encodings": read.encodings,
            "expectations": result.expectations,
        }

    return run_stage(home, run_id, "validate", run)


def record_failed_validation(home: DataHome, run_id: str, pulled: Pulled) -> None:
    """After a batch-level failure, keep the parsed rows' quarantine visible in the catalog."""
    folder = home.stage_dir(run_id, "validate")
    q = (
        read_table(folder / "quarantine.parquet", QUARANTINE_ROW)
        if (folder / "quarantine.parquet").is_file()
        else QUARANTINE_ROW.empty_table()
    )
    catalog.record_row_facts(
        home.catalog_path,
        run_id,
        ROW_OUTCOME.empty_table(),
        q,
        DEDUP_MERGE.empty_table(),
        STALE_ENTRY.empty_table(),
    )
