"""The review queue: suggestions mined from the search log each week, and reviewers' decisions.

Kinds (one SQL file each, ``sql/suggest/select_<kind>_suggestions.sql``):

- ``similar_question``: a query (folded: case, spaces and punctuation ignored) whose users
  clicked entry E in at least ``mining.suggest_min_sessions`` distinct sessions and that is not
  already E's title or one of its similar questions in the live version: "add it as a similar
  question of E";
- ``confusion``: searches where the clicked entry scored within ``mining.confusion_max_gap`` of
  the entry ranked first: add the query to the clicked entry, and tell the two apart;
- ``gap``: a topic of unanswered queries (``kbflow.mining.cluster``: grouped by meaning with the
  live version's encoder) asked in at least ``suggest_min_sessions`` sessions: a new entry is
  needed (examples, the nearest entry);
- ``low_click``: an answer shown in the top 3 often and rarely clicked: rewrite it;
- ``duplicate`` and ``contradiction``: the nightly review stage's near-duplicate entry pairs and
  pairs whose answers state different facts, both sides shown;
- ``expiring``: entries whose ``expires_at`` is within ``review.expiring_days`` after the week;
- ``stale_asked``: entries the live version dropped as stale that were still the top answer of
  searches in at least ``suggest_min_sessions`` sessions.

Each suggestion carries its evidence (sessions, users, searches, clicks, example queries, a
kind-specific ``detail``) and an impact figure (distinct sessions). Decisions are appended to
``review_decisions`` (accept, edit: another text or entry, reject, defer) with reviewer, time
and comment, never updated; the latest counts. A suggestion accepted, edited or rejected is not
suggested again unless its evidence grows past ``mining.resurface_factor`` times what it was
when decided.
"""

from __future__ import annotations

import json
import logging
import secrets
from contextlib import ExitStack
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa

from kbflow.errors import ConfigError, DecisionConflict, UnknownSuggestion
from kbflow.mining.kb import LiveKb
from kbflow.settings import MiningSettings
from kbflow.store.db import staged, transaction
from kbflow.store.decisions import accepted_changes
from kbflow.store.logs import connect_logs
from kbflow.store.sql import fetch_table, load_sql

log = logging.getLogger(__name__)

DECISIONS = ("accept", "edit", "reject", "defer")

#: Decisions that close a suggestion (a deferred one stays open).
FINAL = ("accept", "edit", "reject")

#: The kinds, in the order their statements run (``sql/suggest/select_<kind>_suggestions``).
KINDS = (
    "similar_question",
    "confusion",
    "gap",
    "low_click",
    "duplicate",
    "contradiction",
    "expiring",
    "stale_asked",
)


def compute_suggestions(
    con: duckdb.DuckDBPyConnection,
    week: str,
    start: datetime,
    end: datetime,
    settings: MiningSettings,
    kb: LiveKb,
    mined_at: datetime,
    answers: pa.Table,
    gaps: pa.Table,
) -> pa.Table:
    """The week's suggestions of every kind from the log views on ``con``
    (``attach_log_views``), the week's flagged ``answers`` and ``gaps`` (``compute_week``) and
    the live version ``kb``."""
    con.execute(load_sql("suggest/create_norm_query"))
    params = {
        "start_at": start,
        "end_at": end,
        "week": week,
        "min_sessions": settings.suggest_min_sessions,
        "n_samples": settings.example_queries,
        "mined_at": mined_at,
    }
    end_date = end.astimezone(ZoneInfo(settings.timezone)).date()
    impact_ids = pa.table(
        {
            "entry_id": pa.concat_arrays(
                [
                    answers.filter(answers.column("flagged")).column("entry_id").combine_chunks(),
                    *(kb.duplicates.column(c).combine_chunks() for c in ("entry_a", "entry_b")),
                    *(kb.contradictions.column(c).combine_chunks() for c in ("entry_a", "entry_b")),
                    kb.entries.column("entry_id").combine_chunks().filter(_expiring(kb, end_date)),
                ]
            ).cast(pa.string())
        }
    )
    out = []
    with ExitStack() as stack:
        for name, table in (
            ("staged_entry_questions", kb.questions),
            ("staged_kb_entries", kb.entries),
            ("staged_kb_stale", kb.stale),
            ("staged_kb_duplicates", kb.duplicates),
            ("staged_kb_contradictions", kb.contradictions),
            ("staged_answers", answers),
            ("staged_kb_gaps", gaps),
            ("staged_impact_entries", impact_ids),
        ):
            stack.enter_context(staged(con, name, table))
        con.execute(
            load_sql("suggest/create_week_entry_impact"),
            {"start_at": start, "end_at": end},
        )
        every: dict[str, Any] = {
            **params,
            "max_score_gap": settings.confusion_max_gap,
            "end_date": end_date,
            "expiring_days": kb.expiring_days,
        }
        for kind in KINDS:
            name = f"suggest/select_{kind}_suggestions"
            sql = load_sql(name)  # each statement is bound the parameters it names
            out.append(fetch_table(con, name, {k: v for k, v in every.items() if f"${k}" in sql}))
        similar, confusion = out[0], out[1]
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
                similar.column("norm").to_pylist(),
                similar.column("entry_id").to_pylist(),
                strict=True,
            )
        ]
        out[0] = similar.filter(pa.array(keep, pa.bool_()))
        week_rows = pa.concat_tables([t.cast(out[0].schema) for t in out])
        with staged(con, "staged_week_suggestions", week_rows):
            return fetch_table(con, "suggest/select_suggestion_categories", {})


def _expiring(kb: LiveKb, end_date: date) -> pa.Array:
    """Which of ``kb.entries`` expire on or after ``end_date`` (a cheap pre-filter for the
    impact table; the expiring statement applies the window)."""
    days = [str(d or "") for d in kb.entries.column("expires_at").to_pylist()]
    floor = end_date.isoformat()
    return pa.array([d >= floor for d in days], pa.bool_())


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
    decision_id: str | None = None,
    exact: bool = False,
    change: bool = False,
) -> dict[str, Any]:
    """Append a decision on ``suggestion_id`` (or, unless ``exact``, a unique prefix of it, as
    ``kbflow review list`` prints): accept, edit (``text`` and/or ``entry_id`` replace the
    suggestion's), reject or defer. Returns the decision row.

    ``decision_id`` is the caller's idempotency key (the workbench puts one in each form): a
    second decision with the same id is a double submit. A suggestion already accepted, edited
    or rejected takes no further decision unless ``change`` (a reviewer changing their mind).

    Raises ``UnknownSuggestion`` (no such id, or an ambiguous prefix), ``DecisionConflict``
    (already decided; the same decision id twice) and ``ConfigError`` (an unknown decision, no
    reviewer, an edit that changes nothing); nothing is written then."""
    if decision not in DECISIONS:
        raise ConfigError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    if not reviewer.strip():
        raise ConfigError("a decision needs the reviewer's name (--by NAME)")
    with connect_logs(logs_path, retry_s=30.0) as con:
        con.execute(load_sql("suggest/create_suggestion_tables"))
        queue = fetch_table(con, "suggest/select_review_queue", {}).to_pylist()
        found = [r for r in queue if r["suggestion_id"] == suggestion_id]
        if not found and not exact:
            found = [r for r in queue if r["suggestion_id"].startswith(suggestion_id)]
        if len(found) != 1:
            raise UnknownSuggestion(
                f"{'no' if not found else 'more than one'} suggestion {suggestion_id!r}; "
                "`kbflow review list` shows the ids"
            )
        s = found[0]
        suggestion_id = s["suggestion_id"]
        if s["decision"] in FINAL and not change:
            raise DecisionConflict(
                f"suggestion {suggestion_id[:12]} was already decided ({s['decision']} by "
                f"{s['reviewer']} at {s['decided_at']:%Y-%m-%d %H:%M}); nothing was written"
            )
        decision_id = decision_id or secrets.token_hex(8)
        ((seen,),) = con.execute(
            load_sql("suggest/select_decision_exists"), {"decision_id": decision_id}
        ).fetchall()
        if seen:
            raise DecisionConflict(
                f"decision {decision_id} was already recorded (submitted twice?); nothing was "
                "written"
            )
        new_text = (text or "").strip() or s["text"]
        new_entry = (entry_id or "").strip() or s["entry_id"]
        if decision == "edit" and (new_text, new_entry) == (s["text"], s["entry_id"]):
            raise ConfigError("an edit must change the text (--text) or the entry (--entry)")
        row = {
            "decision_id": decision_id,
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
    """The accepted changes as patch rows the source system can import, one per decision:

    - similar_question, confusion: ``similar_questions`` of the entry, ``new_value`` the
      question to add (``old_value`` empty: nothing is replaced);
    - gap: ``new_entry`` (``entry_id`` empty unless the reviewer picked one), ``new_value`` the
      question the new entry must answer;
    - low_click, contradiction: ``answer``, ``old_value`` the current answer, ``new_value`` the
      reviewer's rewrite (empty when accepted without one: rewrite requested);
    - duplicate: ``duplicate_of``, ``new_value`` the entry to merge into;
    - expiring: ``expires_at``, ``old_value`` the date, ``new_value`` the reviewer's new date;
    - stale_asked: ``status``, ``old_value`` why it went stale, ``new_value`` the reviewer's
      note (republish, redirect)."""
    queue = {r["suggestion_id"]: r for r in review_queue(logs_path)}
    rows = []
    for c in accepted_changes(logs_path):
        s = queue.get(c["suggestion_id"], {})
        detail = json.loads(s.get("detail") or "{}")
        edited = c["text"] if c["text"] != s.get("text") else ""
        field, old, new = "similar_questions", "", c["text"]
        match c["kind"]:
            case "gap" if not c["entry_id"]:
                field = "new_entry"  # (a gap the reviewer gave to an entry: a similar question)
            case "low_click" | "contradiction":
                side = detail.get("a") or {}
                field, old, new = "answer", detail.get("answer") or side.get("answer") or "", edited
            case "duplicate":
                field, new = "duplicate_of", s.get("other_entry_id") or ""
            case "expiring":
                field, old, new = "expires_at", detail.get("expires_at") or "", edited
            case "stale_asked":
                field, old, new = "status", detail.get("reason") or "", edited
        rows.append(
            {
                "entry_id": c["entry_id"],
                "field": field,
                "old_value": old,
                "new_value": new,
                "reviewer": c["reviewer"],
                "decided_at": c["decided_at"].isoformat(),
                "suggestion_id": c["suggestion_id"],
                "comment": c["comment"] or "",
            }
        )
    return rows


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
