"""Validate stage: a Great Expectations suite over the parsed export rows.

Row-level failures go to quarantine with the expectation that failed; batch-level failures
(a required column missing from a file, too large a share of bad rows, an export that shrinks
the KB by more than the allowed fraction) raise ``ValidationFailed`` before anything is built.

Great Expectations is imported lazily: it costs seconds and ~260 MB.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kbflow.clean.expiry import parse_date
from kbflow.clean.normalize import content_hash, normalize_text
from kbflow.contracts import DEDUP_MERGE, QUARANTINE_ROW, RAW_ROW, ROW_OUTCOME, table_from_rows
from kbflow.errors import ValidationFailed
from kbflow.settings import ValidateSettings

log = logging.getLogger(__name__)


REQUIRED_COLUMNS = ("id", "title", "answer")


STATUSES = ("published", "draft", "archived")


DATE_COLUMNS = ("updated_at", "effective_from", "expires_at")


@dataclass
class ValidateResult:
    """Rows that passed, rows quarantined, and id-duplicates folded away."""

    valid: pa.Table  # RAW_ROW
    quarantine: pa.Table  # QUARANTINE_ROW
    outcomes: pa.Table  # ROW_OUTCOME for rows folded as exact id duplicates
    merges: pa.Table  # DEDUP_MERGE kind "id"
    expectations: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


_SLICE_ROWS = 50_000

#: What can turn into markup, before or after NFKC ("&", "<" and their full-width and small forms).
_MARKUP = re.compile("[&<\ufe60\ufe64\uff06\uff1c]")
_WORD = re.compile(r"\w")
#: No character's NFKC form is longer than 18 characters (U+FDFA).
_NFKC_MAX_GROWTH = 18


def _checked_length(text: str | None, max_chars: int) -> int:
    """The length the 1..``max_chars`` check reads: ``normalize_text(text)``'s, or the raw one
    where the verdict cannot differ, which saves normalising most answers (~20 s at a million
    rows; the clean stage normalises them anyway): no markup to strip, a word character (which
    normalisation always keeps, checked over every code point), and short enough that NFKC's
    widest expansion stays within ``max_chars``."""
    if not text:
        return 0
    if (
        _NFKC_MAX_GROWTH * len(text) <= max_chars
        and _WORD.search(text) is not None
        and _MARKUP.search(text) is None
    ):
        return len(text)
    return len(normalize_text(text))


def _date_ok(value: str | None) -> bool:
    if value is None:
        return True
    try:
        parse_date(value)
    except ValueError:
        return False
    return True


def _frame(rows: pa.Table, settings: ValidateSettings) -> Any:
    """The DataFrame the suite runs on: raw columns plus derived check columns."""
    import pandas as pd

    # Text lengths slice by slice: a million rows' titles and answers as Python strings at once
    # would cost ~1 GB for two integers a row.
    title_chars: list[int] = []
    answer_chars: list[int] = []
    for lo in range(0, rows.num_rows, _SLICE_ROWS):
        part = rows.slice(lo, _SLICE_ROWS)
        title_chars.extend(
            _checked_length(t, settings.max_title_chars) for t in part.column("title").to_pylist()
        )
        answer_chars.extend(
            _checked_length(a, settings.max_answer_chars) for a in part.column("answer").to_pylist()
        )
    data: dict[str, Any] = {
        "row_id": rows.column("row_id").to_pylist(),
        "id": [None if (v is None or not v.strip()) else v for v in rows.column("id").to_pylist()],
        "status": [
            None if s is None else s.strip().lower() for s in rows.column("status").to_pylist()
        ],
        "title_chars": title_chars,
        "answer_chars": answer_chars,
    }
    for col in DATE_COLUMNS:
        data[f"{col}_parseable"] = [_date_ok(v) for v in rows.column(col).to_pylist()]
    data["id_is_safe"] = [
        v is None or ("/" not in v and "\\" not in v and "\x00" not in v and len(v) <= 200)
        for v in data["id"]
    ]
    return pd.DataFrame(data)


def _suite(settings: ValidateSettings) -> Any:
    import great_expectations as gx

    e = gx.expectations
    suite = gx.ExpectationSuite(name="kb_export_rows")
    for exp in (
        e.ExpectColumnValuesToNotBeNull(column="id"),
        e.ExpectColumnValuesToBeInSet(column="id_is_safe", value_set=[True]),
        e.ExpectColumnValuesToBeBetween(
            column="title_chars", min_value=1, max_value=settings.max_title_chars
        ),
        e.ExpectColumnValuesToBeBetween(
            column="answer_chars", min_value=1, max_value=settings.max_answer_chars
        ),
        e.ExpectColumnValuesToBeInSet(column="status", value_set=list(STATUSES)),
        *(
            e.ExpectColumnValuesToBeInSet(column=f"{c}_parseable", value_set=[True])
            for c in DATE_COLUMNS
        ),
    ):
        suite.add_expectation(exp)
    return suite


def _describe(exp_type: str, column: str) -> str:
    return {
        ("expect_column_values_to_not_be_null", "id"): "id is missing",
        (
            "expect_column_values_to_be_in_set",
            "id_is_safe",
        ): "id contains a path separator or NUL, or is over 200 characters",
        (
            "expect_column_values_to_be_between",
            "title_chars",
        ): "title is empty (after removing HTML) or too long",
        (
            "expect_column_values_to_be_between",
            "answer_chars",
        ): "answer is empty (after removing HTML) or too long",
        (
            "expect_column_values_to_be_in_set",
            "status",
        ): f"status is not one of {', '.join(STATUSES)}",
    }.get((exp_type, column), f"{column.removesuffix('_parseable')} is not a date (use YYYY-MM-DD)")


def check_columns(
    rows: pa.Table, columns_by_file: dict[str, list[str]] | None = None
) -> list[dict[str, Any]]:
    """Batch-level: every file must carry the required columns (a column that is null on every
    row of a file counts as missing)."""
    failures = []
    files = sorted(set(rows.column("source_file").to_pylist()))
    for name in files:
        part = rows.filter(pc.equal(rows.column("source_file"), name))
        for col in REQUIRED_COLUMNS:
            present = columns_by_file[name] if columns_by_file and name in columns_by_file else None
            missing = (
                (col not in present)
                if present is not None
                else part.column(col).null_count == part.num_rows
            )
            if missing and part.num_rows > 0:
                failures.append({"check": "required_column", "file": name, "column": col})
    return failures


def validate_rows(
    rows: pa.Table,
    settings: ValidateSettings,
    live_entry_count: int | None = None,
    parse_quarantine: pa.Table | None = None,
) -> ValidateResult:
    """Run the suite over RAW_ROW ``rows``.

    Returns the rows that passed (RAW_ROW), the quarantined ones (QUARANTINE_ROW, including
    ``parse_quarantine`` from the reader) and exact id duplicates folded away (same id and same
    content: outcome ``duplicate``). Rows sharing an id with different content: the newest by
    ``updated_at`` (then the later row) is kept, the others are quarantined.

    Raises ``ValidationFailed`` on a batch-level failure; nothing is written by this function.
    """
    parse_q = parse_quarantine if parse_quarantine is not None else QUARANTINE_ROW.empty_table()
    n_input = rows.num_rows + parse_q.num_rows
    failures = check_columns(rows)
    if failures:
        cols = ", ".join(f"{f['file']}: {f['column']}" for f in failures)
        raise ValidationFailed(
            f"export is missing required columns ({cols}); every file needs id, title and answer",
            failures,
        )

    bad: dict[int, tuple[str, str]] = {}
    expectations: list[dict[str, Any]] = []
    if rows.num_rows:
        import great_expectations as gx

        df = _frame(rows, settings)
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        # GX draws tqdm bars on stderr whatever TQDM_DISABLE says; a nightly log needs none.
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = context.data_sources.add_pandas("kb_export").add_dataframe_asset("rows")
        batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
            batch_parameters={"dataframe": df}
        )
        suite = context.suites.add(_suite(settings))
        gx_result = batch.validate(
            suite,
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": ["row_id"],
            },
        )
        for r in gx_result.results:
            cfg = r.expectation_config
            assert cfg is not None
            column = str(cfg.kwargs.get("column"))
            unexpected = r.result.get("unexpected_index_list") or []
            expectations.append(
                {
                    "expectation": cfg.type,
                    "column": column,
                    "success": bool(r.success),
                    "unexpected": len(unexpected),
                }
            )
            for item in unexpected:
                rid = int(item["row_id"])
                bad.setdefault(rid, (f"{cfg.type}({column})", _describe(cfg.type, column)))

    quarantine_rows: list[dict[str, Any]] = []
    keep_ids: list[int] = []
    # Ids and row ids only: whole rows (a million of them as dicts took ~3 GB) are read for the
    # few rows that are quarantined or share an id.
    by_pos: dict[str, list[int]] = {}
    bad_pos: list[int] = []
    row_ids = rows.column("row_id").to_pylist()
    for pos, (rid, entry_id) in enumerate(zip(row_ids, rows.column("id").to_pylist(), strict=True)):
        if rid in bad:
            bad_pos.append(pos)
        else:
            by_pos.setdefault(entry_id.strip(), []).append(pos)
    for row in _rows_at(rows, bad_pos):
        exp, detail = bad[row["row_id"]]
        quarantine_rows.append(_qrow(row, exp, detail))
    shared = [pos for group in by_pos.values() if len(group) > 1 for pos in group]
    row_of = dict(zip(shared, _rows_at(rows, shared), strict=True))

    outcome_rows: list[dict[str, Any]] = []
    merge_rows: list[dict[str, Any]] = []
    for entry_id, positions in by_pos.items():
        if len(positions) == 1:
            keep_ids.append(row_ids[positions[0]])
            continue
        group = [row_of[pos] for pos in positions]
        # newest first; ties broken by the later row (the later export line wins)
        group.sort(
            key=lambda r: ((parse_date(r["updated_at"]) or _MIN_DATE), r["row_id"]), reverse=True
        )
        keeper = group[0]
        keep_ids.append(keeper["row_id"])
        keeper_hash = content_hash(keeper["title"] or "", keeper["answer"] or "")
        for other in group[1:]:
            if content_hash(other["title"] or "", other["answer"] or "") == keeper_hash:
                outcome_rows.append(
                    {
                        "row_id": other["row_id"],
                        "entry_id": entry_id,
                        "outcome": "duplicate",
                        "reason": "same_id_same_content",
                        "detail": f"row {keeper['row_id']}",
                    }
                )
                merge_rows.append(
                    {
                        "kind": "id",
                        "canonical_id": entry_id,
                        "merged_id": entry_id,
                        "row_id": other["row_id"],
                        "similarity": 1.0,
                        "canonical_title": keeper["title"],
                        "merged_title": other["title"],
                    }
                )
            else:
                quarantine_rows.append(
                    _qrow(
                        other,
                        "expect_column_values_to_be_unique(id)",
                        f"id {entry_id!r} appears again with different content; kept the newer row "
                        f"({keeper['source_file']} line {keeper['source_line']})",
                    )
                )
    expectations.append(
        {
            "expectation": "expect_column_values_to_be_unique",
            "column": "id",
            "success": not any(len(g) > 1 for g in by_pos.values()),
            "unexpected": sum(len(g) - 1 for g in by_pos.values()),
        }
    )

    quarantine = pa.concat_tables([parse_q, table_from_rows(quarantine_rows, QUARANTINE_ROW)])
    keep_set = set(keep_ids)
    valid = rows.filter(
        pa.array([rid in keep_set for rid in rows.column("row_id").to_pylist()], pa.bool_())
    )
    counts = {
        "input": n_input,
        "valid": valid.num_rows,
        "quarantined": quarantine.num_rows,
        "duplicate_id": len(outcome_rows),
    }
    result = ValidateResult(
        valid=valid.cast(RAW_ROW),
        quarantine=quarantine,
        outcomes=table_from_rows(outcome_rows, ROW_OUTCOME),
        merges=table_from_rows(merge_rows, DEDUP_MERGE),
        expectations=expectations,
        counts=counts,
    )
    _check_batch(result, n_input, settings, live_entry_count)
    log.info(
        "validate: read %d rows, valid %d, quarantined %d, same-id duplicates %d",
        n_input,
        valid.num_rows,
        quarantine.num_rows,
        len(outcome_rows),
    )
    return result


_MIN_DATE = parse_date("1900-01-01")


def _rows_at(rows: pa.Table, positions: list[int]) -> list[dict[str, Any]]:
    """The rows at ``positions`` as dicts, in that order."""
    if not positions:
        return []
    return rows.take(pa.array(positions, pa.int64())).to_pylist()


def _qrow(row: dict[str, Any], expectation: str, detail: str) -> dict[str, Any]:
    raw = {
        k: row.get(k) for k in RAW_ROW.names if k not in ("row_id", "source_file", "source_line")
    }
    return {
        "row_id": row["row_id"],
        "source_file": row["source_file"],
        "source_line": row["source_line"],
        "entry_id": row.get("id"),
        "expectation": expectation,
        "detail": detail,
        "raw": json.dumps(raw, ensure_ascii=False)[:4000],
    }


def _check_batch(
    result: ValidateResult, n_input: int, settings: ValidateSettings, live_entry_count: int | None
) -> None:
    failures = []
    if n_input == 0:
        failures.append({"check": "non_empty", "detail": "the export has no rows"})
    elif result.quarantine.num_rows / n_input > settings.max_bad_row_fraction:
        failures.append(
            {
                "check": "bad_row_fraction",
                "detail": f"{result.quarantine.num_rows} of {n_input} rows failed checks "
                f"(limit {settings.max_bad_row_fraction:.0%})",
            }
        )
    if (
        live_entry_count
        and result.valid.num_rows < (1 - settings.max_shrink_fraction) * live_entry_count
    ):
        failures.append(
            {
                "check": "shrink",
                "detail": f"export has {result.valid.num_rows} valid entries, the live version {live_entry_count} "
                f"(more than {settings.max_shrink_fraction:.0%} fewer)",
            }
        )
    if failures:
        details = "; ".join(f["detail"] for f in failures)
        raise ValidationFailed(
            f"export rejected: {details}. Nothing was published; fix the export or raise the limit "
            "(KBFLOW_VALIDATE__MAX_BAD_ROW_FRACTION / KBFLOW_VALIDATE__MAX_SHRINK_FRACTION)",
            failures,
        )
