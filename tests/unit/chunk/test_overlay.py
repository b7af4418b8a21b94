"""The reviewers' overlay on a run's entries: applied, retired, dropped, merged ids."""

from __future__ import annotations

from kbflow.chunk.overlay import apply_overlay, fold
from kbflow.contracts import CLEAN_ENTRY, table_from_rows

from ..helpers import EN_KB


def change(entry_id: str, text: str, sid: str = "s") -> dict:
    return {"suggestion_id": sid, "entry_id": entry_id, "text": text}


def test_fold_ignores_case_spaces_and_punctuation():
    assert fold("  Where's my PACKAGE?? ") == fold("wheres my package") == "wheresmypackage"
    assert fold("发票 抬头，怎么改？") == fold("发票抬头怎么改") == "发票抬头怎么改"


def test_applied_retired_dropped_and_merged():
    rows = [dict(e) for e in EN_KB]
    rows[1] = {**rows[1], "merged_ids": ["old-track"]}
    entries = table_from_rows(rows, CLEAN_ENTRY)
    out, counts, detail = apply_overlay(
        entries,
        [
            change("track-order", "parcel not here yet", "a"),
            change("track-order", "Where's my package?", "b"),  # the export carries it
            change("gone-entry", "anything", "c"),  # deleted from the KB
            change("old-track", "courier lost my box", "d"),  # merged into track-order
            change("coupon", "=cmd|' /C calc'!A0", "e"),  # text, added as it is
        ],
    )
    assert counts == {"applied": 3, "retired": 1, "dropped": 1}
    assert [d["outcome"] for d in detail] == ["applied", "retired", "dropped", "applied", "applied"]
    assert detail[3]["applied_to"] == "track-order"
    similar = dict(zip(out.column("entry_id").to_pylist(), out.column("similar_questions").to_pylist(), strict=True))  # fmt: skip
    assert similar["track-order"][-2:] == ["parcel not here yet", "courier lost my box"]
    assert similar["coupon"][-1] == "=cmd|' /C calc'!A0"
    assert out.num_rows == entries.num_rows and out.schema == entries.schema
    same, none, _ = apply_overlay(entries, [])
    assert none == {"applied": 0, "retired": 0, "dropped": 0} and same.equals(entries)
