"""Stage ``chunk``: the run's entries as passages (``runs/<run_id>/chunk/passages.parquet``), and
the fingerprint that tells an unchanged export from a changed one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from kbflow.chunk.overlay import apply_overlay
from kbflow.chunk.passages import chunk_entries
from kbflow.contracts import (
    CLEAN_ENTRY,
    OVERLAY_ROW,
    PASSAGE,
    read_table,
    write_table,
)
from kbflow.results import Chunked
from kbflow.runner import run_stage
from kbflow.settings import Settings
from kbflow.store.decisions import QUESTION_KINDS, accepted_changes
from kbflow.store.home import DataHome


def chunk_stage(home: DataHome, run_id: str, settings: Settings) -> Chunked:
    def run(folder: Path) -> Chunked:
        entries = read_table(home.stage_dir(run_id, "clean") / "entries.parquet", CLEAN_ENTRY)
        overlay = {"applied": 0, "retired": 0, "dropped": 0}
        if settings.review.apply_accepted:
            entries, overlay, rows = apply_overlay(
                entries, accepted_changes(home.logs_path, QUESTION_KINDS)
            )
            if rows:
                write_table(
                    pa.Table.from_pylist(rows, OVERLAY_ROW), folder / "overlay.parquet", OVERLAY_ROW
                )
        passages = chunk_entries(entries, settings.chunk)
        write_table(passages, folder / "passages.parquet", PASSAGE)
        kinds = pc.value_counts(passages.column("kind")).to_pylist() if passages.num_rows else []
        return {
            "entries": entries.num_rows,
            "passages": passages.num_rows,
            "by_kind": {k["values"]: k["counts"] for k in kinds},
            "fingerprint": passages_fingerprint(passages),
            "overlay": overlay,
        }

    return run_stage(home, run_id, "chunk", run)


def passages_fingerprint(passages: pa.Table) -> str:
    pairs = sorted(
        zip(
            passages.column("passage_id").to_pylist(),
            passages.column("text_hash").to_pylist(),
            passages.column("display").to_pylist(),
            strict=True,
        )
    )
    h = hashlib.sha256()
    for pid, th, disp in pairs:
        h.update(
            f"{pid}\x1f{th}\x1f{hashlib.sha256((disp or '').encode()).hexdigest()}\x1e".encode()
        )
    return h.hexdigest()
