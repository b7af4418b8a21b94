"""Every KB's state, read from its own data home (``kbflow fleet status``, the fleet report).

Reads files only: ``indexes/CURRENT`` and the live manifest, the newest ``runs/<run_id>/``
and its ``summary.json``. No catalog connection, so a status never waits on (or blocks) a KB
whose nightly is writing, and a KB that never ran is simply "never run".
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kbflow.fleet.registry import KbSpec, Registry
from kbflow.store.versions import current_version, read_manifest, version_dir

#: States of a KB's newest run, worst first (the fleet report sorts by it).
STATES = ("failed", "interrupted", "blocked", "running", "never run", "published", "unchanged")


def run_started(run_id: str) -> datetime | None:
    """When a run started, from its id (``20261124T020000-a1b2c3``, UTC)."""
    try:
        return datetime.strptime(run_id[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def latest_run(home: Path) -> str | None:
    runs = home / "runs"
    ids = [p.name for p in runs.iterdir() if p.is_dir()] if runs.is_dir() else []
    ids = [r for r in ids if run_started(r) is not None]
    return max(ids) if ids else None


def last_started(kbs: Sequence[KbSpec]) -> dict[str, datetime | None]:
    """When each KB's newest run started (None: never ran)."""
    out = {}
    for kb in kbs:
        run = latest_run(kb.home)
        out[kb.name] = run_started(run) if run else None
    return out


def _lock_holder_alive(home: Path) -> bool:
    """Whether the process named in the home's run lock is alive on this host (the lock file
    keeps its last holder; a run on another host reads as not alive)."""
    try:
        text = (home / ".run.lock").read_text(encoding="utf-8")
        pid = int(text.split()[1])
    except (OSError, IndexError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _quality(manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    checks = (manifest.get("gate") or {}).get("checks") or {}
    for name in ("golden", "self_check"):
        new = (checks.get(name) or {}).get("new")
        if new:
            return {"set": name, **{k: new.get(k) for k in ("n", "hit@1", "hit@3", "mrr")}}
    return None


def kb_status(kb: KbSpec, registry: Registry, now: datetime | None = None) -> dict[str, Any]:
    """One KB's row of the fleet status (see ``STATES``)."""
    now = now or datetime.now(UTC)
    row: dict[str, Any] = {
        "kb": kb.name,
        "home": str(kb.home),
        "source": kb.source,
        "schedule": kb.schedule,
        "enabled": kb.enabled,
        "state": "never run",
        "version": None,
        "published_at": None,
        "entries": None,
        "quality": None,
        "run_id": None,
        "started_at": None,
        "seconds": None,
        "message": None,
        "report": None,
    }
    indexes = kb.home / "indexes"
    live = current_version(indexes) if indexes.is_dir() else None
    if live:
        manifest = read_manifest(version_dir(indexes, live))
        row.update(
            version=live,
            published_at=manifest.get("published_at"),
            entries=(manifest.get("counts") or {}).get("entries"),
            quality=_quality(manifest),
        )
    run = latest_run(kb.home)
    started = run_started(run) if run else None
    if run:
        row.update(run_id=run, started_at=started.isoformat() if started else None)
        summary_path = kb.home / "runs" / run / "summary.json"
        if summary_path.is_file():
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
            row.update(
                state=summary.get("status") or "failed",
                seconds=round(sum((summary.get("timings") or {}).values()), 1),
                message=summary.get("message"),
                report=summary.get("report"),
            )
        else:
            row["state"] = "running" if _lock_holder_alive(kb.home) else "interrupted"
    row["due"] = registry.is_due(kb, now, started)
    return row


def fleet_status(
    registry: Registry,
    outcomes: Mapping[str, Mapping[str, Any]] | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Every KB's row, worst state first. ``outcomes``: what a fleet run saw of each KB's flow
    run (``flow_run_id``, ``flow_state``, ``error``), merged into its row: a flow run that
    crashed before kbflow could write its summary still shows as failed, with Prefect's word."""
    rows = []
    for kb in registry.kbs:
        row = kb_status(kb, registry, now)
        seen = (outcomes or {}).get(kb.name)
        if seen:
            row.update({k: seen.get(k) for k in ("flow_run_id", "flow_state")})
            if seen.get("error") and row["state"] not in ("failed", "blocked"):
                row["state"] = "failed"
                row["message"] = seen["error"]
        rows.append(row)
    rows.sort(key=lambda r: (STATES.index(r["state"]) if r["state"] in STATES else 0, r["kb"]))
    return rows


def status_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Plain-text table of ``fleet_status`` rows (``kbflow fleet status``)."""
    head = ("KB", "STATE", "VERSION", "HIT@3", "RUN SECONDS", "LAST RUN", "MESSAGE")
    lines = [head]
    for r in rows:
        q = r.get("quality") or {}
        lines.append(
            (
                r["kb"],
                r["state"] + (" (due)" if r.get("due") and r["state"] != "running" else ""),
                r["version"] or "-",
                f"{q['hit@3']:.3f} {q['set']}" if q.get("hit@3") is not None else "-",
                f"{r['seconds']:.1f}" if r.get("seconds") is not None else "-",
                (r.get("started_at") or "-")[:19],
                (r.get("message") or "")[:80],
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
