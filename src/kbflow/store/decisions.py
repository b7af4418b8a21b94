"""Reviewers' accepted changes, read from the review queue in ``logs.duckdb``
(``sql/suggest/``; the queue itself is ``kbflow.mining.suggest``). The nightly's overlay reads
them from here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kbflow.store.logs import connect_logs
from kbflow.store.sql import fetch_table, load_sql

#: Kinds whose accepted text is a new similar question of an entry: the nightly's overlay.
QUESTION_KINDS = ("similar_question", "confusion")


def accepted_changes(logs_path: Path, kinds: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Accepted and edited suggestions (the latest decision of each; of ``kinds`` only when
    given), oldest decision first: ``suggestion_id, kind, entry_id, text, reviewer,
    decided_at, comment``. Read-only."""
    if not logs_path.exists():
        return []
    with connect_logs(logs_path, read_only=True, retry_s=120.0) as con:
        ((present,),) = con.execute(load_sql("suggest/select_has_decisions")).fetchall()
        if not present:
            return []
        rows = fetch_table(con, "suggest/select_accepted_changes", {}).to_pylist()
    return [r for r in rows if kinds is None or r["kind"] in kinds]
