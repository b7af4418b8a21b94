"""Run reports: a Markdown summary (for the Prefect artifact) and a self-contained HTML page.

The HTML has its charts inline as SVG, loads nothing from the network and escapes every piece
of user text (KB titles and answers can hold ``<script>``).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from kbflow.home import atomic_write_text
from kbflow.notify import describe_notice

_CSS = """
body{font-family:-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei",sans-serif;margin:2rem;color:#1d2733;max-width:1100px}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #dde3ea;padding-bottom:.3rem}
table{border-collapse:collapse;font-size:.85rem;width:100%}td,th{border:1px solid #dde3ea;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f6f9}.status{display:inline-block;padding:.2rem .6rem;border-radius:4px;color:#fff;font-weight:600}
.published,.unchanged{background:#2e7d32}.blocked{background:#ef6c00}.failed{background:#c62828}.running{background:#546e7a}
.kv td:first-child{width:14rem;color:#546e7a}.muted{color:#78909c}figure{margin:1rem 0}
"""


def esc(value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:.4g}"
    return html.escape("" if value is None else str(value), quote=True)


def bar_chart(title: str, data: dict[str, float], unit: str = "", width: int = 640) -> str:
    """A horizontal SVG bar chart (inline, no scripts)."""
    items = [(k, float(v)) for k, v in data.items()]
    if not items:
        return ""
    bar_h, gap, label_w = 22, 6, 170
    height = len(items) * (bar_h + gap) + 30
    top = max(v for _, v in items) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{esc(title)}" width="{width}" height="{height}" class="chart">',
        f'<text x="0" y="14" font-size="13" font-weight="600">{esc(title)}</text>',
    ]
    for i, (k, v) in enumerate(items):
        y = 24 + i * (bar_h + gap)
        w = max(1.0, (width - label_w - 90) * v / top)
        parts.append(f'<text x="0" y="{y + 15}" font-size="12">{esc(k)}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#1e88e5"><title>{esc(k)}: {v:g}{esc(unit)}</title></rect>'
        )
        parts.append(
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12">{v:g}{esc(unit)}</text>'
        )
    parts.append("</svg>")
    return f"<figure>{''.join(parts)}</figure>"


def html_table(rows: list[dict[str, Any]], columns: list[str], limit: int = 200) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(r.get(c))}</td>" for c in columns) + "</tr>"
        for r in rows[:limit]
    )
    more = (
        f'<p class="muted">{len(rows) - limit} more rows in the catalog</p>'
        if len(rows) > limit
        else ""
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_CSS}</style></head>'
        f"<body>{body}</body></html>\n"
    )


def _rows(table: pa.Table | None) -> list[dict[str, Any]]:
    return table.to_pylist() if table is not None else []


def describe_model_choice(choice: dict[str, Any] | None) -> str | None:
    """One line on how the run's model was chosen (``kbflow.languages.ModelChoice``)."""
    if not choice:
        return None
    how = {"auto": "chosen by language", "kept": "kept", "explicit": "set in embed.model"}
    mode = str(choice.get("mode"))
    line = f"{choice.get('model')}, {how.get(mode, mode)}: {choice.get('reason')}"
    return ("MODEL SWITCH: " + line) if choice.get("switched") else line


def nightly_markdown(summary: dict[str, Any]) -> str:
    rows = summary.get("rows", {})
    lines = [
        f"# kb-nightly {summary.get('run_id')}: **{summary.get('status')}**",
        "",
        f"- version: `{summary.get('version')}` (previous: `{summary.get('previous_version')}`)",
        f"- run date: {summary.get('run_date')}, snapshot: `{summary.get('snapshot_id')}`",
        f"- passages embedded: {summary.get('embedded', 0)}, from cache: {summary.get('cached', 0)}; retired entries: {summary.get('retired', 0)}",
    ]
    if summary.get("model_choice"):
        lines.append(
            f"- embedding model: `{summary.get('model_key')}` "
            f"({describe_model_choice(summary['model_choice'])})"
        )
    if summary.get("message"):
        lines.append(f"- message: {summary['message']}")
    if summary.get("notice"):
        lines.append(f"- failure notice: {describe_notice(summary['notice'])}")
    if summary.get("review"):
        lines.append(review_markdown_line(summary["review"]))
    gate = summary.get("gate")
    if gate and not gate.get("skipped"):
        verdict = (
            "passed"
            if gate.get("passed")
            else ("FAILED (forced)" if gate.get("forced") else "BLOCKED")
        )
        lines += [
            "",
            f"Quality gate: **{verdict}**",
            "",
            "| query set | new hit@3 | live hit@3 (common) |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {name} | {c['new']['hit@3']} | {c.get('live_common', {}).get('hit@3', '')} |"
            for name, c in gate.get("checks", {}).items()
        ]
        lines += [f"- {r}" for r in gate.get("reasons", [])]
    lines += ["", "| outcome | rows |", "|---|---:|"]
    lines += [
        f"| {k} | {rows.get(k, 0)} |"
        for k in ("input", "indexed", "duplicate", "stale", "unpublished", "quarantined")
    ]
    timings = summary.get("timings", {})
    if timings:
        lines += ["", "| stage | seconds |", "|---|---:|"] + [
            f"| {k} | {v} |" for k, v in timings.items()
        ]
    if summary.get("report"):
        lines += ["", f"HTML report: {summary['report']}"]
    return "\n".join(lines)


def write_nightly_report(
    path: Path,
    summary: dict[str, Any],
    quarantine: pa.Table | None = None,
    merges: pa.Table | None = None,
    stale: pa.Table | None = None,
    retired: list[str] | None = None,
    previous_calibration: dict[str, Any] | None = None,
    contradictions: pa.Table | None = None,
    semantic_duplicates: pa.Table | None = None,
) -> Path:
    """Write the nightly HTML report to ``path`` (atomically) and return it. Contradicting
    answers found by the review stage come first, under the heading."""
    rows = summary.get("rows", {})
    status = str(summary.get("status", "running"))
    kv = {
        "run": summary.get("run_id"),
        "run date": summary.get("run_date"),
        "version": summary.get("version"),
        "previous version": summary.get("previous_version"),
        "export snapshot": summary.get("snapshot_id"),
        "embedding model": summary.get("model_key"),
        "model choice": describe_model_choice(summary.get("model_choice")),
        "passages embedded": summary.get("embedded"),
        "passages from cache": summary.get("cached"),
        "embedding throughput (passages/s)": summary.get("embed_per_second"),
        "retired entries": summary.get("retired"),
        "message": summary.get("message"),
        "failure notice": describe_notice(summary.get("notice")),
    }
    body = [
        f'<h1>kbflow nightly run <span class="status {esc(status)}">{esc(status)}</span></h1>',
        review_contradictions_section(summary.get("review"), contradictions),
        '<table class="kv">'
        + "".join(
            f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in kv.items() if v is not None
        )
        + "</table>",
        gate_section(summary.get("gate")),
        "<h2>Row accounting</h2>",
        f"<p>Every input row is exactly one of the outcomes below; they sum to the {esc(rows.get('input', 0))} input rows.</p>",
        bar_chart(
            "rows by outcome",
            {
                k: rows.get(k, 0)
                for k in ("indexed", "duplicate", "stale", "unpublished", "quarantined")
            },
        ),
        "<h2>Stage timings</h2>",
        bar_chart("seconds per stage", summary.get("timings", {}), " s"),
    ]
    cal = summary.get("calibration")
    if cal:
        body.append("<h2>Retrieval calibration (held-out self-check)</h2>")
        body.append(
            html_table(
                [
                    {
                        **{"version": summary.get("version")},
                        **cal.get("self_check", {}),
                        "dense weight": cal.get("dense_weight"),
                        "threshold": cal.get("handoff_threshold"),
                        "method": cal.get("method"),
                    }
                ]
                + (
                    [
                        {
                            **{"version": "previous"},
                            **previous_calibration.get("self_check", {}),
                            "dense weight": previous_calibration.get("dense_weight"),
                            "threshold": previous_calibration.get("handoff_threshold"),
                            "method": previous_calibration.get("method"),
                        }
                    ]
                    if previous_calibration
                    else []
                ),
                ["version", "hit@1", "hit@3", "mrr", "dense weight", "threshold", "method"],
            )
        )
        if cal.get("scores_by_weight"):
            body.append(bar_chart("self-check objective by dense weight", cal["scores_by_weight"]))
    body += [
        "<h2>Quarantined rows</h2>",
        html_table(
            _rows(quarantine), ["source_file", "source_line", "entry_id", "expectation", "detail"]
        ),
        "<h2>Duplicates merged</h2>",
        html_table(
            _rows(merges),
            ["kind", "canonical_id", "merged_id", "similarity", "canonical_title", "merged_title"],
        ),
        review_semantic_section(summary.get("review"), semantic_duplicates),
        "<h2>Stale entries</h2>",
        html_table(_rows(stale), ["entry_id", "title", "reason", "evidence", "stale_since"]),
        "<h2>Retired entries</h2>",
        html_table([{"entry_id": e} for e in retired or []], ["entry_id"]),
        f'<p class="muted">summary: <code>{esc(json.dumps({k: v for k, v in summary.items() if k != "calibration"}, ensure_ascii=False, default=str))}</code></p>',
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, page(f"kbflow nightly {summary.get('run_id')}", "".join(body)))
    return path


def gate_section(gate: dict[str, Any] | None) -> str:
    """The quality gate: verdict, hit@k of the new version against the live one per query set,
    and the queries the live version answered and the new one does not, side by side."""
    if not gate:
        return ""
    if gate.get("skipped"):
        return "<h2>Quality gate</h2><p>skipped (gate.enabled is false)</p>"
    verdict = (
        "passed"
        if gate.get("passed")
        else ("failed, published anyway (--force)" if gate.get("forced") else "blocked")
    )
    out = [
        f'<h2>Quality gate: <span class="status {esc("published" if gate.get("passed") else "blocked")}">{esc(verdict)}</span></h2>'
    ]
    if gate.get("reasons"):
        out.append("<ul>" + "".join(f"<li>{esc(r)}</li>" for r in gate["reasons"]) + "</ul>")
    rows = []
    for name, c in gate.get("checks", {}).items():
        for label, key in (
            ("new", "new"),
            ("live", "live"),
            ("new, common queries", "new_common"),
            ("live, common queries", "live_common"),
        ):
            if key in c:
                rows.append({"query set": name, "version": label, **c[key]})
    out.append(html_table(rows, ["query set", "version", "n", "hit@1", "hit@3", "mrr"]))
    failing = gate.get("failing") or []
    if failing:
        out.append(
            f"<h3>Queries the live version {esc(gate.get('live_version'))} answers in its top 3 and "
            f"the new one does not ({esc(gate.get('failing_total', len(failing)))} in all)</h3>"
        )
        out.append(
            html_table(
                [
                    {
                        **f,
                        "expected": ", ".join(f["expected"]),
                        "live top 3": " | ".join(f["live_top"]),
                        "new top 3": " | ".join(f["new_top"]),
                    }
                    for f in failing
                ],
                ["set", "query", "expected", "live_rank", "live top 3", "new_rank", "new top 3"],
            )
        )
    for note in gate.get("notes") or []:
        out.append(f'<p class="muted">{esc(note)}</p>')
    return "".join(out)


def histogram(
    title: str,
    counts: list[int],
    lo: float = 0.0,
    hi: float = 1.0,
    width: int = 640,
    height: int = 220,
) -> str:
    """A vertical SVG histogram of ``counts`` over equal bins spanning ``[lo, hi]`` (inline)."""
    if not counts:
        return ""
    pad_l, pad_b, pad_t = 40, 30, 24
    n = len(counts)
    top = max(counts) or 1
    plot_w, plot_h = width - pad_l - 10, height - pad_b - pad_t
    bw = plot_w / n
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{esc(title)}" width="{width}" height="{height}" class="chart">',
        f'<text x="0" y="14" font-size="13" font-weight="600">{esc(title)}</text>',
        f'<text x="0" y="{pad_t + 10}" font-size="11">{top}</text>',
    ]
    step = (hi - lo) / n
    for i, c in enumerate(counts):
        h = max(1.0, plot_h * c / top) if c else 0.0
        x = pad_l + i * bw
        y = pad_t + plot_h - h
        a, b = lo + i * step, lo + (i + 1) * step
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(1.0, bw - 2):.1f}" height="{h:.1f}" fill="#1e88e5"><title>{a:.2f}–{b:.2f}: {c}</title></rect>'
        )
    for i in range(0, n + 1, max(1, n // 5)):
        x = pad_l + i * bw
        parts.append(
            f'<text x="{x:.1f}" y="{height - 10}" font-size="11" text-anchor="middle">{lo + i * step:.2f}</text>'
        )
    parts.append("</svg>")
    return f"<figure>{''.join(parts)}</figure>"


def weekly_markdown(summary: dict[str, Any]) -> str:
    """Markdown summary of one mined week (for the Prefect artifact)."""
    m = summary.get("metrics", {})
    lines = [
        f"# kb-weekly-mining {summary.get('week')}",
        "",
        f"- queries: {m.get('n_queries')}, clicks: {m.get('n_clicks')}, CTR: {_pct(m.get('ctr'))}",
        f"- latency P50/P95/P99: {_num(m.get('p50_ms'))} / {_num(m.get('p95_ms'))} / {_num(m.get('p99_ms'))} ms",
        f"- fallback: {_pct(m.get('fallback_rate'))}, hand-off: {_pct(m.get('handoff_rate'))}, top-1 KS vs previous week: {_num(m.get('ks_stat'), 3)}",
        f"- flagged answers: {summary.get('flagged_answers')}, gap clusters: {summary.get('gap_clusters')}",
        f"- alerts: {', '.join(summary.get('alerts') or []) or 'none'}",
    ]
    if summary.get("report"):
        lines += ["", f"HTML report: {summary['report']}"]
    return "\n".join(lines)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.1f}%"


def _num(v: Any, digits: int = 1) -> str:
    return "-" if v is None else f"{float(v):.{digits}f}"


def write_weekly_report(
    path: Path,
    week: str,
    metrics: list[dict[str, Any]],
    answers: list[dict[str, Any]],
    gaps: list[dict[str, Any]],
    top: int = 50,
    review: dict[str, Any] | None = None,
) -> Path:
    """Write the weekly mining HTML report (self-contained, every text escaped); returns it.

    ``review``: ``{"info", "semantic_duplicates", "contradictions"}`` from
    ``kbflow.review`` (the live version's review tables), shown at the end when given."""
    m = metrics[0] if metrics else {}
    alerts = {
        "P95 latency": m.get("alert_p95"),
        "fallback rate": m.get("alert_fallback"),
        "hand-off rate": m.get("alert_handoff"),
        "top-1 score shift": m.get("alert_score_shift"),
    }
    badges = "".join(
        f'<span class="status {"failed" if on else "published"}">{esc(name)}: {"ALERT" if on else "ok"}</span> '
        for name, on in alerts.items()
    )
    kv = {
        "week": week,
        "from / to (UTC)": f"{m.get('start_at')} / {m.get('end_at')}",
        "queries": m.get("n_queries"),
        "sessions / users": f"{m.get('n_sessions')} / {m.get('n_users')}",
        "clicks": m.get("n_clicks"),
        "queries with a click (CTR)": _pct(m.get("ctr")),
        "latency P50 / P95 / P99": f"{_num(m.get('p50_ms'))} / {_num(m.get('p95_ms'))} / {_num(m.get('p99_ms'))} ms",
        "fallback rate (level 1 / 2)": f"{_pct(m.get('fallback_rate'))} ({_pct(m.get('fallback_l1_rate'))} / {_pct(m.get('fallback_l2_rate'))})",
        "hand-off rate": _pct(m.get("handoff_rate")),
        "top-1 KS statistic vs previous week": f"{_num(m.get('ks_stat'), 3)} (previous week {m.get('prev_n_queries')} scored queries)",
    }
    deciles = m.get("top1_deciles") or []
    flagged = [a for a in answers if a.get("flagged")]
    for rows in (flagged, gaps):
        for r in rows:
            for key in ("sample_queries", "example_queries"):
                if isinstance(r.get(key), list):
                    r[key] = " | ".join(str(q) for q in r[key])
            for key in ("ctr", "nearest_score"):
                if isinstance(r.get(key), float):
                    r[key] = round(r[key], 3)
    body = [
        f"<h1>kbflow weekly mining: {esc(week)}</h1>",
        f"<p>{badges}</p>",
        '<table class="kv">'
        + "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in kv.items())
        + "</table>",
        "<h2>Latency</h2>",
        bar_chart(
            "latency percentiles",
            {
                k: round(float(m[c]), 1)
                for k, c in (("P50", "p50_ms"), ("P95", "p95_ms"), ("P99", "p99_ms"))
                if m.get(c) is not None
            },
            " ms",
        ),
        "<h2>Top-1 score distribution</h2>",
        histogram("top-1 score histogram", [int(c) for c in m.get("top1_histogram") or []]),
        html_table(
            [{f"p{10 * (i + 1)}": f"{d:.3f}" for i, d in enumerate(deciles) if d is not None}],
            [f"p{10 * (i + 1)}" for i in range(len(deciles))],
        )
        if deciles
        else "",
        "<h2>Fallback and hand-off</h2>",
        bar_chart(
            "share of queries",
            {
                "fallback level 1 (keyword only)": round(
                    100 * float(m.get("fallback_l1_rate") or 0), 2
                ),
                "fallback level 2 (canned)": round(100 * float(m.get("fallback_l2_rate") or 0), 2),
                "hand-off to a human": round(100 * float(m.get("handoff_rate") or 0), 2),
            },
            " %",
        ),
        f"<h2>Answers shown but rarely clicked ({len(flagged)} flagged)</h2>",
        html_table(
            flagged,
            ["entry_id", "impressions", "top1_impressions", "clicks", "ctr", "sample_queries"],
            limit=top,
        ),
        f"<h2>Questions the KB may not answer ({len(gaps)} topics)</h2>",
        bar_chart(
            "largest gap topics (queries)",
            {f"#{g['cluster_id']} {str(g.get('label'))[:18]}": g["size"] for g in gaps[:10]},
        ),
        html_table(
            gaps,
            [
                "cluster_id",
                "label",
                "size",
                "n_users",
                "n_sessions",
                "n_low_score",
                "n_handoff",
                "n_no_click",
                "example_queries",
                "nearest_entry_id",
                "nearest_score",
            ],
            limit=top,
        ),
    ]
    if review is not None:
        body.append(
            weekly_review_section(
                review.get("info"),
                review.get("semantic_duplicates") or [],
                review.get("contradictions") or [],
                top,
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, page(f"kbflow weekly mining {week}", "".join(body)))
    return path


# --- review stage (semantic near-duplicates, contradicting answers) ---------------------------

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
