"""Stage ``chunk``: the run's entries as passages (``runs/<run_id>/chunk/passages.parquet``), and
the fingerprint that tells an unchanged export from a changed one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from kbflow.chunk.overlay import apply_overlay
from kbflow.chunk.passages import fingerprint_keys, passage_slices
from kbflow.contracts import (
    CLEAN_ENTRY,
    OVERLAY_ROW,
    PASSAGE,
    TableWriter,
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
        # Written a slice at a time: four million passages held whole took ~5 GB.
        kinds: dict[str, int] = {}
        keys: list[pa.Table] = []
        with TableWriter(folder / "passages.parquet", PASSAGE) as out:
            for piece, piece_keys in passage_slices(entries, settings.chunk, kinds):
                out.write(piece)
                keys.append(piece_keys)
        return {
            "entries": entries.num_rows,
            "passages": out.rows,
            "by_kind": kinds,
            "fingerprint": fingerprint(keys),
            "overlay": overlay,
        }

    return run_stage(home, run_id, "chunk", run)


def passages_fingerprint(passages: pa.Table) -> str:
    """sha256 over the passages in passage-id order: id, text hash and display's sha256 each."""
    return fingerprint([fingerprint_keys(passages)])


def fingerprint(keys: list[pa.Table]) -> str:
    """``passages_fingerprint`` of the passages whose ``fingerprint_keys`` are ``keys``: sorted
    by id in Arrow (UTF-8 byte order is code-point order, as Python sorts strings), hashed a
    slice at a time."""
    keyed = pa.concat_tables(keys) if keys else pa.table({"id": [], "th": [], "d": []})
    keyed = keyed.take(pc.sort_indices(keyed.column("id")))
    h = hashlib.sha256()
    step = 65_536
    for lo in range(0, keyed.num_rows, step):
        part = keyed.slice(lo, step)
        for pid, th, digest in zip(
            part.column("id").to_pylist(),
            part.column("th").to_pylist(),
            part.column("d").to_pylist(),
            strict=True,
        ):
            h.update(f"{pid}\x1f{th}\x1f{digest}\x1e".encode())
    return h.hexdigest()
