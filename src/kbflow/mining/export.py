"""The week's review tables as files: CSV (spreadsheet-safe) and Parquet, and the HTML report."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from kbflow.mining.tables import _plain, read_week_tables
from kbflow.store.home import DataHome

_FORMULA_START = ("=", "+", "-", "@")


def excel_safe(value: Any) -> str:
    """A CSV cell that Excel will not run as a formula: text starting with ``= + - @`` (or a
    tab/CR, which Excel strips before them) gets a leading apostrophe. Lists become JSON."""
    import json

    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | dict):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    if text.startswith(_FORMULA_START + ("\t", "\r")):
        return "'" + text
    return text


def write_csv(table: pa.Table, path: Path) -> Path:
    """Write ``table`` as an Excel-safe UTF-8 CSV (with BOM, so Excel reads Chinese)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(table.column_names)
        for row in table.to_pylist():
            writer.writerow([excel_safe(v) for v in row.values()])
    tmp.replace(path)
    return path


def export_week(
    logs_path: Path, week: str, out_dir: Path, catalog_path: Path | None = None
) -> dict[str, str]:
    """Export the week's review tables as ``<name>.csv`` and ``<name>.parquet`` under
    ``out_dir`` (``reports/weekly/<week>/``); returns ``{"<name>.csv": path, ...}``.

    With them go the KB review tables of the live index version (``semantic_duplicates``,
    ``contradictions``; ``kbflow.review``) from the catalog (default: ``catalog.duckdb``
    beside ``logs.duckdb``, as in the data home)."""
    from kbflow.review.tables import read_version_review as read_kb_review

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    catalog_path = catalog_path or DataHome(logs_path.parent).catalog_path
    tables = {**read_week_tables(logs_path, week), **read_kb_review(catalog_path)}
    for name, table in tables.items():
        pq.write_table(table, out_dir / f"{name}.parquet")
        paths[f"{name}.parquet"] = str(out_dir / f"{name}.parquet")
        paths[f"{name}.csv"] = str(write_csv(table, out_dir / f"{name}.csv"))
    return paths


def render_week_report(
    logs_path: Path, week: str, out_dir: Path, catalog_path: Path | None = None
) -> Path:
    """Write ``out_dir/report.html`` for the week from its review tables (and the live
    version's KB review tables, see ``export_week``); returns the path."""
    from kbflow.report.weekly import write_weekly_report
    from kbflow.review.tables import latest_review
    from kbflow.review.tables import read_version_review as read_kb_review

    tables = read_week_tables(logs_path, week)
    catalog_path = catalog_path or DataHome(logs_path.parent).catalog_path
    info = latest_review(catalog_path)
    kb = read_kb_review(catalog_path, info["version"]) if info else {}
    return write_weekly_report(
        out_dir / "report.html",
        week,
        [_plain(r) for r in tables["weekly_metrics"].to_pylist()],
        tables["low_click_answers"].to_pylist(),
        tables["kb_gaps"].to_pylist(),
        review={"info": info, **{name: t.to_pylist() for name, t in kb.items()}},
    )
