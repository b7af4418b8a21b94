"""The review queue: suggestions mined from the search log each week, and reviewers' decisions.

Kinds (one SQL file each under ``sql/suggest/``):

- ``similar_question``: a query (folded: case, spaces and punctuation ignored) whose users
  clicked entry E in at least ``mining.suggest_min_sessions`` distinct sessions and that is not
  already E's title or one of its similar questions in the live version: "add it as a similar
  question of E";
- ``confusion``: searches where the clicked entry scored within ``mining.confusion_max_gap`` of
  the entry ranked first: add the query to the clicked entry, and tell the two apart.

Each suggestion carries its evidence (sessions, users, searches, clicks, example queries) and an
impact figure (distinct sessions). Decisions are appended to ``review_decisions`` (accept, edit:
another text or entry, reject, defer) with reviewer, time and comment, never updated; the
latest counts. A suggestion accepted, edited or rejected is not suggested again unless its
evidence grows past ``mining.resurface_factor`` times what it was when decided.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from kbflow.errors import ConfigError
from kbflow.settings import MiningSettings
from kbflow.store.db import staged, transaction
from kbflow.store.decisions import accepted_changes
from kbflow.store.logs import connect_logs
from kbflow.store.sql import fetch_table, load_sql
from kbflow.store.versions import live_version_dir

log = logging.getLogger(__name__)

DECISIONS = ("accept", "edit", "reject", "defer")

ENTRY_QUESTIONS = pa.schema([("entry_id", pa.string()), ("question", pa.string())])


def entry_questions(indexes_dir: Path) -> pa.Table:
    """Titles and similar questions of the live version's entries (empty when none is live)."""
    try:
        folder = live_version_dir(indexes_dir)
    except Exception:  # noqa: BLE001 - no live version yet: nothing is known
        return ENTRY_QUESTIONS.empty_table()
    t = pq.read_table(folder / "passages.parquet", columns=["entry_id", "kind", "text"])
    keep = [k in ("title", "question") for k in t.column("kind").to_pylist()]
    t = t.filter(pa.array(keep, pa.bool_()))
    return pa.table(
        {"entry_id": t.column("entry_id"), "question": t.column("text")}, schema=ENTRY_QUESTIONS
    )


def compute_suggestions(
    con: duckdb.DuckDBPyConnection,
    week: str,
    start: datetime,
    end: datetime,
    settings: MiningSettings,
    questions: pa.Table,
    mined_at: datetime,
) -> pa.Table:
    """The week's suggestions from the log views on ``con`` (``attach_log_views``)."""
    con.execute(load_sql("suggest/create_norm_query"))
    params = {
        "start_at": start,
        "end_at": end,
        "week": week,
        "min_sessions": settings.suggest_min_sessions,
        "n_samples": settings.example_queries,
        "mined_at": mined_at,
    }
    with staged(con, "staged_entry_questions", questions):
        similar = fetch_table(con, "suggest/select_similar_question_suggestions", params)
    confusion = fetch_table(
        con,
        "suggest/select_confusion_suggestions",
        {**params, "max_score_gap": settings.confusion_max_gap},
    )
    # a confusion already says "add it to the clicked entry" (and names the pair): one card
    pairs = set(
        zip(
            confusion.column("norm").to_pylist(),
            confusion.column("entry_id").to_pylist(),
            strict=True,
        )
    )
    keep = [
        (n, e) not in pairs
        for n, e in zip(
            similar.column("norm").to_pylist(), similar.column("entry_id").to_pylist(), strict=True
        )
    ]
    similar = similar.filter(pa.array(keep, pa.bool_()))
    return pa.concat_tables([similar, confusion.cast(similar.schema)])


def write_suggestions(
    con: duckdb.DuckDBPyConnection, week: str, table: pa.Table, settings: MiningSettings
) -> int:
    """Replace ``week``'s suggestions (decided ones left out unless their evidence grew);
    returns how many were written."""
    con.execute(load_sql("suggest/create_suggestion_tables"))
    with transaction(con):
        con.execute(load_sql("suggest/delete_week_review_suggestions"), {"week": week})
        with staged(con, "staged_review_suggestions", table):
            con.execute(
                load_sql("suggest/insert_review_suggestions"),
                {"resurface_factor": settings.resurface_factor},
            )
        ((n,),) = con.execute(
            load_sql("suggest/select_week_suggestion_count"), {"week": week}
        ).fetchall()
    return int(n)


def review_queue(
    logs_path: Path, kind: str | None = None, open_only: bool = False
) -> list[dict[str, Any]]:
    """Every suggestion (its newest week) with its latest decision, highest impact first."""
    with connect_logs(logs_path, retry_s=30.0) as con:
        con.execute(load_sql("suggest/create_suggestion_tables"))
        rows = fetch_table(con, "suggest/select_review_queue", {}).to_pylist()
    if kind:
        rows = [r for r in rows if r["kind"] == kind]
    if open_only:
        rows = [r for r in rows if r["decision"] in (None, "defer")]
    return rows


def decide(
    logs_path: Path,
    suggestion_id: str,
    decision: str,
    reviewer: str,
    comment: str | None = None,
    text: str | None = None,
    entry_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Append a decision on ``suggestion_id`` (or a unique prefix of it, as ``kbflow review
    list`` prints): accept, edit (``text`` and/or ``entry_id`` replace the suggestion's),
    reject or defer. Returns the decision row. ``ConfigError`` for an unknown or ambiguous
    suggestion, an unknown decision, or an edit that changes nothing."""
    if decision not in DECISIONS:
        raise ConfigError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    if not reviewer.strip():
        raise ConfigError("a decision needs the reviewer's name (--by NAME)")
    with connect_logs(logs_path, retry_s=30.0) as con:
        con.execute(load_sql("suggest/create_suggestion_tables"))
        found = [
            r
            for r in fetch_table(con, "suggest/select_review_queue", {}).to_pylist()
            if r["suggestion_id"].startswith(suggestion_id)
        ]
        if len(found) != 1:
            raise ConfigError(
                f"{'no' if not found else 'more than one'} suggestion {suggestion_id!r}; "
                "`kbflow review list` shows the ids"
            )
        s = found[0]
        suggestion_id = s["suggestion_id"]
        new_text = (text or "").strip() or s["text"]
        new_entry = (entry_id or "").strip() or s["entry_id"]
        if decision == "edit" and (new_text, new_entry) == (s["text"], s["entry_id"]):
            raise ConfigError("an edit must change the text (--text) or the entry (--entry)")
        row = {
            "decision_id": secrets.token_hex(8),
            "suggestion_id": suggestion_id,
            "week": s["week"],
            "kind": s["kind"],
            "entry_id": new_entry,
            "text": new_text,
            "decision": decision,
            "reviewer": reviewer.strip(),
            "decided_at": now or datetime.now(UTC),
            "comment": comment,
            "evidence_sessions": int(s["n_sessions"]),
        }
        con.execute(load_sql("suggest/insert_review_decision"), row)
    log.info("review: %s %s (%s) by %s", decision, suggestion_id, s["kind"], reviewer)
    return row


PATCH_COLUMNS = [
    "entry_id",
    "field",
    "old_value",
    "new_value",
    "reviewer",
    "decided_at",
    "suggestion_id",
    "comment",
]


def patch_rows(logs_path: Path) -> list[dict[str, Any]]:
    """The accepted changes as patch rows the source system can import: one new similar
    question per row (``old_value`` empty: it is added, nothing is replaced)."""
    return [
        {
            "entry_id": c["entry_id"],
            "field": "similar_questions",
            "old_value": "",
            "new_value": c["text"],
            "reviewer": c["reviewer"],
            "decided_at": c["decided_at"].isoformat(),
            "suggestion_id": c["suggestion_id"],
            "comment": c["comment"] or "",
        }
        for c in accepted_changes(logs_path)
    ]


def export_patch(logs_path: Path, out: Path, fmt: str) -> int:
    """Write the patch as JSONL, CSV (UTF-8 with BOM, so Excel opens it right; cells that
    would be formulas are prefixed with ') or XLSX. Returns the rows written."""
    from kbflow.mining.export import excel_safe

    rows = patch_rows(logs_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        out.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
    elif fmt == "csv":
        import csv

        with open(out, "w", encoding="utf-8-sig", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=PATCH_COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({k: excel_safe(v) for k, v in r.items()})
    elif fmt == "xlsx":
        _write_xlsx(out, rows)
    else:
        raise ConfigError(f"--format must be jsonl, csv or xlsx, not {fmt!r}")
    return len(rows)


def _write_xlsx(out: Path, rows: list[dict[str, Any]]) -> None:
    try:
        from openpyxl import Workbook
    except ImportError as exc:
        raise ConfigError(
            "XLSX needs openpyxl (pip install openpyxl); or use --format csv"
        ) from exc
    wb = Workbook()
    ws = wb.active
    ws.title = "kbflow patch"
    for i, values in enumerate([PATCH_COLUMNS, *([r[k] for k in PATCH_COLUMNS] for r in rows)], 1):
        for j, value in enumerate(values, 1):
            cell = ws.cell(row=i, column=j, value=str(value))
            cell.data_type = "s"  # text, never a formula, whatever it starts with
    wb.save(out)
