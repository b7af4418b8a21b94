"""HTML building blocks of every report: the page, tables, bar charts and histograms as inline
SVG. Loads nothing from the network and escapes every piece of user text (KB titles and answers
can hold ``<script>``)."""

from __future__ import annotations

import html
from typing import Any

import pyarrow as pa

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


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.1f}%"


def _num(v: Any, digits: int = 1) -> str:
    return "-" if v is None else f"{float(v):.{digits}f}"
