"""The reviewers' overlay: accepted similar questions added to the run's entries before they are
chunked, so retrieval improves the next morning, before anyone edits the source system.

Each accepted change (``kbflow.store.decisions``: entry id and question text) is, for this run:

- ``applied``: the entry is in the run (or was merged into an entry that is) and does not carry
  the question yet: it is appended to the entry's similar questions;
- ``retired``: the export already carries it (the title or a similar question folds to the same
  text): the source system has the change, the overlay steps aside;
- ``dropped``: the entry is not in the run (deleted, expired, unpublished): nothing to add to.

A change rejected later is no longer accepted, so it leaves the overlay by itself.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

_ASCII_PUNCT = set(string.punctuation)


def fold(text: str) -> str:
    """Lower case, no spaces or punctuation (ASCII or any Unicode punctuation): the Python twin
    of ``sql/suggest/create_norm_query.sql``."""
    return "".join(
        ch
        for ch in (text or "").strip().lower()
        if not (ch.isspace() or ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P"))
    )


def apply_overlay(
    entries: pa.Table, changes: Iterable[dict[str, Any]]
) -> tuple[pa.Table, dict[str, int], list[dict[str, Any]]]:
    """``entries`` (``CLEAN_ENTRY``) with the accepted questions added; the counts per outcome
    and one row per change (``suggestion_id, entry_id, text, outcome, applied_to``)."""
    changes = list(changes)
    if not changes:  # most nights: nothing to fold, and folding a million entries costs ~30 s
        return entries, {"applied": 0, "retired": 0, "dropped": 0}, []
    ids = entries.column("entry_id").to_pylist()
    pos = {e: i for i, e in enumerate(ids)}
    for i, merged in enumerate(entries.column("merged_ids").to_pylist()):
        for m in merged or []:
            pos.setdefault(m, i)
    titles = entries.column("title").to_pylist()
    similar = [list(q or []) for q in entries.column("similar_questions").to_pylist()]
    folded: dict[int, set[str]] = {}  # only the entries a change touches

    def known(at: int) -> set[str]:
        if at not in folded:
            folded[at] = {fold(titles[at])} | {fold(q) for q in similar[at]}
        return folded[at]

    counts = {"applied": 0, "retired": 0, "dropped": 0}
    rows: list[dict[str, Any]] = []
    for c in changes:
        at = pos.get(c["entry_id"])
        key = fold(c["text"])
        if at is None:
            outcome, target = "dropped", None
        elif key in known(at):
            outcome, target = "retired", ids[at]
        else:
            similar[at].append(c["text"])
            known(at).add(key)
            outcome, target = "applied", ids[at]
        counts[outcome] += 1
        rows.append(
            {
                "suggestion_id": c["suggestion_id"],
                "entry_id": c["entry_id"],
                "text": c["text"],
                "outcome": outcome,
                "applied_to": target,
            }
        )
    if counts["applied"]:
        col = entries.schema.get_field_index("similar_questions")
        entries = entries.set_column(
            col, entries.schema.field(col), pa.array(similar, entries.schema.field(col).type)
        )
    return entries, counts, rows
