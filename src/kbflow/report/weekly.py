"""The weekly mining report: its Markdown summary (the Prefect artifact) and its HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kbflow.report.html import _num, _pct, bar_chart, esc, histogram, html_table, page
from kbflow.report.review import weekly_review_section
from kbflow.store.home import atomic_write_text


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
