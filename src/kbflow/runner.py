"""The stage runner: every stage of a run goes through :func:`run_stage`.

A stage reads its inputs from files under ``runs/<run_id>/``, writes its outputs into its own
folder there (Parquet with explicit schemas, ``kbflow.contracts``) and its completion marker
``_SUCCESS.json`` last, written here, never by the stage itself (datatrove's executors keep
completions the same way). Called again for the same run, a completed stage returns the
recorded summary instead of redoing the work: that is what makes a retried task or a resumed
run skip finished stages. Summaries are small typed dicts (``kbflow.results``), never tables or
vectors.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import duckdb
import pyarrow as pa

from kbflow.contracts import read_table
from kbflow.store.home import DataHome, atomic_write_text, storage_error

log = logging.getLogger(__name__)

MARKER = "_SUCCESS.json"

S = TypeVar("S", bound=Mapping[str, Any])


def run_stage(home: DataHome, run_id: str, stage: str, fn: Callable[[Path], S]) -> S:
    """``fn(stage_dir)``'s summary, timed (``seconds``) and recorded as the stage's marker;
    the recorded summary when the stage already completed for this run. A full disk or a
    read-only folder becomes ``StorageError`` (one clear line, not a traceback)."""
    folder = home.stage_dir(run_id, stage)
    marker = folder / MARKER
    if marker.is_file():
        log.info("%s: already complete for run %s, skipped", stage, run_id)
        return cast(S, json.loads(marker.read_text(encoding="utf-8")))
    start = time.perf_counter()
    try:
        summary = dict(fn(folder))
        summary["seconds"] = round(time.perf_counter() - start, 3)
        atomic_write_text(marker, json.dumps(summary, ensure_ascii=False, default=str))
    except (OSError, duckdb.IOException) as exc:
        raise storage_error(f"{stage} stage", home.root, exc) from exc
    return cast(S, summary)


def read_marker(home: DataHome, run_id: str, stage: str) -> dict[str, Any] | None:
    """A stage's recorded summary, or None when it did not complete in this run."""
    path = home.run_dir(run_id) / stage / MARKER
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_optional(path: Path, schema: pa.Schema) -> pa.Table | None:
    """A stage's output table, or None when the stage did not write it."""
    return read_table(path, schema) if path.is_file() else None
