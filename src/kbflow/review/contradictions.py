"""Contradicting answers: for every near-duplicate pair, semantic or merged by MinHash in the
clean stage, the facts whose values differ (``kbflow.review.facts``), both values side by side.
For a MinHash merge the canonical entry keeps its answer and the merged row's answer is what the
merge hid: such rows say so in ``note``."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from kbflow.clean.normalize import normalize_text
from kbflow.review.facts import Fact, compare_facts, extract_facts

MERGE_NOTE = (
    "merge hid a contradiction: the canonical entry {a} keeps its answer ({va}); "
    "the merged entry {b} said {vb}"
)


def _joined(values: tuple[str, ...]) -> str:
    return " / ".join(values)


def find_contradictions(
    pairs: list[dict[str, Any]], answers: dict[str, str]
) -> list[dict[str, Any]]:
    """Contradiction rows for near-duplicate ``pairs``.

    Each pair is a dict with ``entry_a``, ``entry_b``, ``title_a``, ``title_b``,
    ``similarity``, ``source`` and, for merges, ``answer_b`` (the merged row's answer; the
    canonical ``entry_a``'s answer comes from ``answers``). Returns rows of
    ``REVIEW_CONTRADICTION`` without ``version``/``run_id``."""
    cache: dict[str, list[Fact]] = {}

    def facts_of(key: str, text: str) -> list[Fact]:
        if key not in cache:
            cache[key] = extract_facts(text)
        return cache[key]

    rows: list[dict[str, Any]] = []
    for p in pairs:
        a, b = p["entry_a"], p["entry_b"]
        text_a = answers.get(a, "")
        text_b = p["answer_b"] if "answer_b" in p else answers.get(b, "")
        if not text_a or not text_b or text_a == text_b:
            continue
        key_b = f"merged:{b}:{p.get('row_id')}" if "answer_b" in p else b
        for c in compare_facts(facts_of(a, text_a), facts_of(key_b, text_b)):
            note = ""
            if p["source"].startswith("minhash"):
                note = MERGE_NOTE.format(a=a, b=b, va=_joined(c.values_a), vb=_joined(c.values_b))
            rows.append(
                {
                    "source": p["source"],
                    "entry_a": a,
                    "entry_b": b,
                    "title_a": p.get("title_a"),
                    "title_b": p.get("title_b"),
                    "similarity": p.get("similarity"),
                    "fact_kind": c.kind,
                    "unit": c.unit,
                    "topic": c.topic,
                    "value_a": _joined(c.values_a),
                    "value_b": _joined(c.values_b),
                    "normalized_a": _joined(c.normalized_a),
                    "normalized_b": _joined(c.normalized_b),
                    "evidence_a": c.evidence_a,
                    "evidence_b": c.evidence_b,
                    "note": note,
                }
            )
    return rows


def _merge_pairs(merges: pa.Table, rows: pa.Table, titles: dict[str, str]) -> list[dict[str, Any]]:
    """Clean-stage merges (exact and near) with the merged row's normalised answer."""
    if merges.num_rows == 0:
        return []
    answer_of = dict(
        zip(rows.column("row_id").to_pylist(), rows.column("answer").to_pylist(), strict=True)
    )
    out = []
    for m in merges.to_pylist():
        if m["kind"] not in ("exact", "near"):
            continue  # "id": an older row of the same entry, an update, not a second answer
        out.append(
            {
                "source": f"minhash_{m['kind']}",
                "entry_a": m["canonical_id"],
                "entry_b": m["merged_id"],
                "title_a": titles.get(m["canonical_id"], m["canonical_title"]),
                "title_b": m["merged_title"],
                "similarity": m["similarity"],
                "row_id": m["row_id"],
                "answer_b": normalize_text(answer_of.get(m["row_id"])),
            }
        )
    return out
