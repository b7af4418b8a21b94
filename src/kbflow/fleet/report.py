"""The fleet report: one page (and its JSON) listing every KB's state, version, quality and
time after a ``kb-fleet`` run, written beside the registry (``fleet-reports/``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kbflow.fleet.registry import Registry
from kbflow.report.html import esc, page
from kbflow.store.home import atomic_write_text

REPORTS_DIR = "fleet-reports"


def reports_dir(registry: Registry) -> Path:
    return registry.path.parent / REPORTS_DIR


def _quality(row: Mapping[str, Any]) -> str:
    q = row.get("quality") or {}
    if q.get("hit@3") is None:
        return "-"
    return f"hit@1 {q['hit@1']:.3f} · hit@3 {q['hit@3']:.3f} ({q['set']}, n {q['n']})"


def _link(path: str | None) -> str:
    if not path:
        return ""
    return f'<a href="{esc(Path(path).resolve().as_uri())}">report</a>'


def fleet_html(
    registry: Registry, rows: Sequence[Mapping[str, Any]], run: Mapping[str, Any]
) -> str:
    counts = Counter(r["state"] for r in rows)
    summary = " · ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    body = [
        f"<h1>kbflow fleet: {len(rows)} KBs</h1>",
        '<table class="kv">',
        f"<tr><td>registry</td><td>{esc(registry.path)}</td></tr>",
        f"<tr><td>fleet run</td><td>{esc(run.get('started_at'))} → {esc(run.get('finished_at'))}"
        f" ({esc(run.get('seconds'))} s, {esc(len(run.get('ran') or []))} KBs run)</td></tr>",
        f"<tr><td>states</td><td>{esc(summary)}</td></tr>",
        f"<tr><td>limits</td><td>{esc(dict(registry.limits) or 'none')}</td></tr>",
        "</table>",
        "<h2>KBs</h2><table><thead><tr>",
        "".join(
            f"<th>{h}</th>"
            for h in (
                "KB",
                "state",
                "live version",
                "entries",
                "quality (live)",
                "run",
                "seconds",
                "message",
                "",
            )
        ),
        "</tr></thead><tbody>",
    ]
    for r in rows:
        state = str(r["state"])
        css = (
            state
            if state in ("published", "unchanged", "blocked", "failed", "running")
            else "failed"
        )
        body.append(
            "<tr>"
            f"<td>{esc(r['kb'])}</td>"
            f'<td><span class="status {css}">{esc(state)}</span></td>'
            f"<td>{esc(r.get('version') or '-')}</td>"
            f"<td>{esc(r.get('entries'))}</td>"
            f"<td>{esc(_quality(r))}</td>"
            f"<td>{esc(r.get('run_id') or '-')}</td>"
            f"<td>{esc(r.get('seconds'))}</td>"
            f"<td>{esc(r.get('message') or '')}</td>"
            f"<td>{_link(r.get('report'))}</td>"
            "</tr>"
        )
    body.append("</tbody></table>")
    return page("kbflow fleet report", "".join(body))


def write_fleet_report(
    registry: Registry, rows: Sequence[Mapping[str, Any]], run: Mapping[str, Any]
) -> Path:
    """``fleet-<time>.html`` and ``.json`` in ``reports_dir``, and ``latest.html``/``.json``
    (each written atomically). Returns the HTML's path."""
    out = reports_dir(registry)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    html = fleet_html(registry, rows, run)
    data = json.dumps({"run": run, "kbs": list(rows)}, ensure_ascii=False, indent=2, default=str)
    for name in (f"fleet-{stamp}", "latest"):
        atomic_write_text(out / f"{name}.html", html)
        atomic_write_text(out / f"{name}.json", data)
    return out / f"fleet-{stamp}.html"
