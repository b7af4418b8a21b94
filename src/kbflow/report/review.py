"""The review lists' sections of the nightly and weekly reports: contradicting answers first,
then semantic near-duplicates, with how the semantic threshold was chosen."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from kbflow.report.html import _rows, esc, html_table

_CONTRADICTION_COLUMNS = [
    "source",
    "entry_a",
    "title_a",
    "value_a",
    "entry_b",
    "title_b",
    "value_b",
    "fact_kind",
    "topic",
    "note",
]


_SEMANTIC_COLUMNS = [
    "entry_a",
    "title_a",
    "entry_b",
    "title_b",
    "score",
    "text_a",
    "text_b",
    "newest_updated_at",
    "has_contradiction",
]


def _threshold_line(review: dict[str, Any]) -> str:
    cal = review.get("calibration") or {}
    t = cal.get("threshold")
    shown = "none (pass skipped)" if t is None else f"{float(t):.3f}"
    recall = cal.get("recall_positives")
    kept = (
        ""
        if recall is None
        else f"; keeps {100 * float(recall):.1f}% of the KB's own paraphrase pairs"
    )
    return (
        f'<p class="muted">Semantic threshold for {esc(cal.get("model_key"))}: {esc(shown)} '
        f"({esc(cal.get('method'))}: {esc(cal.get('reason'))}{esc(kept)}).</p>"
    )


def review_markdown_line(review: dict[str, Any]) -> str:
    """One Markdown line for the Prefect artifact: contradictions and semantic pairs."""
    if not review.get("enabled", True):
        return "- review: disabled"
    cal = review.get("calibration") or {}
    t = cal.get("threshold")
    return (
        f"- review: **{review.get('contradictions', 0)} contradicting facts** "
        f"({review.get('merge_contradictions', 0)} hidden by merges), "
        f"{review.get('semantic_pairs', 0)} semantic near-duplicate pairs "
        f"(threshold {'skipped' if t is None else round(float(t), 3)}, {cal.get('method')})"
    )


def review_contradictions_section(
    review: dict[str, Any] | None, contradictions: pa.Table | None
) -> str:
    """Top-of-report section: facts that near-duplicate answers state differently."""
    if review is None and contradictions is None:
        return ""
    rows = _rows(contradictions)
    if review is not None and not review.get("enabled", True):
        return '<h2>Contradicting answers</h2><p class="muted">review stage disabled</p>'
    merged = sum(1 for r in rows if str(r.get("source", "")).startswith("minhash"))
    return (
        f"<h2>Contradicting answers ({len(rows)})</h2>"
        "<p>Near-duplicate entries (merged by MinHash, or semantic pairs below) whose answers "
        "state different values for the same kind of fact: durations, amounts, percentages, "
        f"dates, phone numbers, links. {merged} of them were hidden by a merge: the canonical "
        "entry (a) keeps its answer, b is what the merged entry said.</p>"
        + html_table(rows, _CONTRADICTION_COLUMNS)
    )


def review_semantic_section(review: dict[str, Any] | None, semantic: pa.Table | None) -> str:
    """Semantic near-duplicate pairs (not merged), newest first, with the threshold used."""
    if review is None and semantic is None:
        return ""
    rows = _rows(semantic)
    for r in rows:
        if isinstance(r.get("score"), float):
            r["score"] = round(r["score"], 3)
    parts = [f"<h2>Semantic near-duplicates ({len(rows)} pairs, not merged)</h2>"]
    if review is not None and review.get("enabled", True):
        parts.append(_threshold_line(review))
    parts.append(html_table(rows, _SEMANTIC_COLUMNS))
    return "".join(parts)


def weekly_review_section(
    info: dict[str, Any] | None,
    semantic: list[dict[str, Any]],
    contradictions: list[dict[str, Any]],
    top: int = 50,
) -> str:
    """The weekly report's view of the review tables of the live (or latest reviewed)
    version: contradicting answers first, then semantic near-duplicates."""
    if info is None:
        return '<h2>KB review</h2><p class="muted">no index version has been reviewed yet</p>'
    review = {**(info.get("summary") or {}), "enabled": True}
    for r in semantic:
        if isinstance(r.get("score"), float):
            r["score"] = round(r["score"], 3)
    merged = sum(1 for r in contradictions if str(r.get("source", "")).startswith("minhash"))
    return "".join(
        [
            f"<h2>KB review: version {esc(info.get('version'))}</h2>",
            f'<p class="muted">reviewed {esc(info.get("reviewed_at"))}; exported beside this '
            "report as contradictions and semantic_duplicates (CSV, Parquet)</p>",
            f"<h3>Contradicting answers ({len(contradictions)}, {merged} hidden by merges)</h3>",
            html_table(contradictions, _CONTRADICTION_COLUMNS, limit=top),
            f"<h3>Semantic near-duplicates ({len(semantic)} pairs, not merged)</h3>",
            _threshold_line(review),
            html_table(semantic, _SEMANTIC_COLUMNS, limit=top),
        ]
    )
