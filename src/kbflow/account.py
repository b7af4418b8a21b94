"""Stage ``account``: every input row of the run gets exactly one outcome.

The validate stage's quarantined rows and outcomes, and the clean stage's outcomes (indexed,
duplicate, stale, unpublished), are combined, checked (each row once, the counts summing to the
input rows, ``AccountingError`` otherwise) and stored in the catalog with the run's merges and
stale entries, in one transaction."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from kbflow.contracts import (
    DEDUP_MERGE,
    OUTCOMES,
    QUARANTINE_ROW,
    RAW_ROW,
    ROW_OUTCOME,
    STALE_ENTRY,
    read_table,
    table_from_rows,
    write_table,
)
from kbflow.errors import AccountingError
from kbflow.results import Accounted, Pulled
from kbflow.runner import run_stage
from kbflow.store import catalog
from kbflow.store.home import DataHome


def account_stage(
    home: DataHome, run_id: str, pulled: Pulled, indexed_status: str = "indexed"
) -> Accounted:
    """Combine every stage's row outcomes, check each input row has exactly one, store them.

    ``indexed_status`` is what canonical published rows count as ("indexed"). Raises
    ``AccountingError`` when the outcomes do not sum to the input rows.
    """

    def run(folder: Path) -> Accounted:
        vdir = home.stage_dir(run_id, "validate")
        cdir = home.stage_dir(run_id, "clean")
        rows = read_table(vdir / "rows.parquet", RAW_ROW)
        quarantine = read_table(vdir / "quarantine.parquet", QUARANTINE_ROW)
        v_out = read_table(vdir / "outcomes.parquet", ROW_OUTCOME)
        c_out = read_table(cdir / "outcomes.parquet", ROW_OUTCOME)
        q_out = table_from_rows(
            [
                {
                    "row_id": r["row_id"],
                    "entry_id": r["entry_id"],
                    "outcome": "quarantined",
                    "reason": r["expectation"],
                    "detail": r["detail"],
                }
                for r in quarantine.to_pylist()
            ],
            ROW_OUTCOME,
        )
        outcomes = pa.concat_tables([q_out, v_out, c_out])
        ids = outcomes.column("row_id").to_pylist()
        n_input = rows.num_rows + _parse_only(rows, quarantine)
        if len(ids) != len(set(ids)):
            dup = [i for i in set(ids) if ids.count(i) > 1][:5]
            raise AccountingError(f"rows with two outcomes: {dup}")
        if len(ids) != n_input:
            seen = set(ids)
            missing = [r for r in rows.column("row_id").to_pylist() if r not in seen][:5]
            raise AccountingError(
                f"{n_input} input rows but {len(ids)} outcomes (e.g. no outcome for rows {missing})"
            )
        counts = {o: 0 for o in OUTCOMES}
        for o in outcomes.column("outcome").to_pylist():
            counts[o] += 1
        if sum(counts.values()) != n_input:
            raise AccountingError(f"outcomes {counts} do not sum to {n_input} input rows")
        merges = pa.concat_tables(
            [
                read_table(vdir / "merges.parquet", DEDUP_MERGE),
                read_table(cdir / "merges.parquet", DEDUP_MERGE),
            ]
        )
        stale = read_table(cdir / "stale.parquet", STALE_ENTRY)
        write_table(outcomes, folder / "outcomes.parquet", ROW_OUTCOME)
        catalog.record_row_facts(home.catalog_path, run_id, outcomes, quarantine, merges, stale)
        return {
            "input": n_input,
            "indexed": counts["indexed"],
            "duplicate": counts["duplicate"],
            "stale": counts["stale"],
            "unpublished": counts["unpublished"],
            "quarantined": counts["quarantined"],
        }

    return run_stage(home, run_id, "account", run)


def _parse_only(rows: pa.Table, quarantine: pa.Table) -> int:
    """Quarantined rows the reader could not parse (they have no line in rows.parquet)."""
    parsed = set(rows.column("row_id").to_pylist())
    return sum(1 for r in quarantine.column("row_id").to_pylist() if r not in parsed)
