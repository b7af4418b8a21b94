"""A backfill's units: planned from the catalog, run one after the other, recorded in the ledger.

**The date of an export** is the ``run_date`` of the first ``kb-nightly`` run that pulled it
(the night it arrived, as recorded in the catalog's ``runs`` table), or, for an export no run
recorded (landed by a run that was killed), the day in Asia/Shanghai it was landed
(``exports.first_seen_at``). Dates in file names are not used. A replay runs each export with
that date as its run date, so expiry is judged as it was that night. A unit that failed, or
whose run was killed (left ``running``), is done again next time."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from kbflow.backfill.reembed import reembed_unit
from kbflow.backfill.request import DONE, TIMEZONE, BackfillRequest, params_hash
from kbflow.errors import BackfillFailed, ConfigError
from kbflow.runner import MARKER
from kbflow.store import catalog
from kbflow.store.home import DataHome, atomic_write_text, file_lock
from kbflow.store.sql import load_sql

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LandedSnapshot:
    """A landed export and its date (see the module docstring)."""

    snapshot_id: str
    snapshot_sha256: str
    export_date: date
    dated_by: Literal["run", "landed"]
    source: str
    files: list[dict[str, Any]]
    first_seen_at: str
    first_run_id: str | None


def export_dates(home: DataHome, tz: str = TIMEZONE) -> list[LandedSnapshot]:
    """Every export landed in ``home`` with its date, oldest first (then by landing time)."""
    if not home.catalog_path.exists():
        return []
    with catalog.connect(home.catalog_path) as con:
        cur = con.execute(load_sql("catalog/select_export_dates"))
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    zone = ZoneInfo(tz)
    out = []
    for r in rows:
        seen: datetime = r["first_seen_at"]  # naive UTC
        if r["first_run_date"] is not None:
            day, dated_by = r["first_run_date"], "run"
        else:
            day, dated_by = seen.replace(tzinfo=UTC).astimezone(zone).date(), "landed"
        out.append(
            LandedSnapshot(
                snapshot_id=r["snapshot_id"],
                snapshot_sha256=r["snapshot_sha256"],
                export_date=day,
                dated_by=dated_by,  # type: ignore[arg-type]
                source=r["source"],
                files=json.loads(r["files"]),
                first_seen_at=seen.isoformat(timespec="seconds"),
                first_run_id=r["first_run_id"],
            )
        )
    out.sort(key=lambda s: (s.export_date, s.first_seen_at))
    return out


def plan_exports(home: DataHome, start: date, end: date) -> list[LandedSnapshot]:
    """The landed exports dated ``start``..``end`` (inclusive), in date order.

    Raises ``ConfigError`` when none is, or when a landed folder under ``raw/`` is missing or
    incomplete (half an export is never replayed)."""
    chosen = [s for s in export_dates(home) if start <= s.export_date <= end]
    if not chosen:
        raise ConfigError(
            f"no landed export is dated {start}..{end} in {home.root} "
            "(an export's date is the run date of the first kb-nightly run that pulled it)"
        )
    for snap in chosen:
        if not (home.raw / snap.snapshot_id / "_COMPLETE").is_file():
            raise ConfigError(
                f"export {snap.snapshot_id} ({snap.export_date}) is in the catalog but "
                f"{home.raw / snap.snapshot_id} is missing or incomplete; restore raw/ first"
            )
    return chosen


def export_unit(snap: LandedSnapshot, overrides: dict[str, Any], force: bool) -> dict[str, Any]:
    """The unit that replays ``snap`` as the nightly run of its date."""
    unit = f"{snap.export_date.isoformat()}:{snap.snapshot_id}"
    return {
        "kind": "exports",
        "unit": unit,
        "params_hash": params_hash("exports", {"overrides": overrides, "force": force}),
        "snapshot": {**asdict(snap), "export_date": snap.export_date.isoformat()},
        "run_date": snap.export_date.isoformat(),
    }


def prepare_export_run(home: DataHome, run_id: str, snapshot: dict[str, Any]) -> dict[str, Any]:
    """Make run ``run_id`` start from the landed copy of ``snapshot``: its pull stage is
    recorded as complete (what ``pull_stage`` returns for an export already landed), and the
    golden queries the original run was gated on are frozen for it. Returns the pull summary.
    """
    root = home.raw / snapshot["snapshot_id"]
    pulled = {
        "snapshot_id": snapshot["snapshot_id"],
        "snapshot_sha256": snapshot["snapshot_sha256"],
        "root": str(root),
        "files": snapshot["files"],
        "already_landed": True,
        "source": snapshot["source"],
        "replay_of": snapshot.get("first_run_id"),
        "seconds": 0.0,
    }
    marker = home.stage_dir(run_id, "pull") / MARKER
    if not marker.is_file():
        atomic_write_text(marker, json.dumps(pulled, ensure_ascii=False, default=str))
    original = snapshot.get("first_run_id")
    golden = home.run_dir(original) / "golden.jsonl" if original else None
    if (
        golden is not None
        and golden.is_file()
        and not (home.run_dir(run_id) / golden.name).exists()
    ):
        shutil.copy2(golden, home.run_dir(run_id) / golden.name)
    return pulled


def week_unit(week: str, overrides: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "weeks",
        "unit": week,
        "params_hash": params_hash("weeks", {"overrides": overrides}),
        "week": week,
    }


def unit_record(home: DataHome, unit: dict[str, Any]) -> dict[str, Any] | None:
    """The ledger's latest attempt of ``unit``: ``status``, ``run_id``, ``summary``; or None."""
    with catalog.connect(home.catalog_path) as con:
        cur = con.execute(
            load_sql("catalog/select_backfill_unit"),
            {"kind": unit["kind"], "unit": unit["unit"], "params_hash": unit["params_hash"]},
        )
        cols = [d[0] for d in cur.description]
        row = cur.fetchone()
    if row is None:
        return None
    rec = dict(zip(cols, row, strict=True))
    rec["summary"] = json.loads(rec["summary"]) if rec["summary"] else None
    return rec


def record_unit(
    home: DataHome,
    unit: dict[str, Any],
    status: str,
    run_id: str | None,
    summary: dict[str, Any] | None = None,
    started_at: datetime | None = None,
) -> None:
    """Write the unit's state: ``running`` when it starts, ``done`` or ``failed`` when its
    flow run ends."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with catalog.connect(home.catalog_path) as con:
        con.execute(
            load_sql("catalog/upsert_backfill_unit"),
            {
                "kind": unit["kind"],
                "unit": unit["unit"],
                "params_hash": unit["params_hash"],
                "status": status,
                "run_id": run_id,
                "started_at": started_at or now,
                "finished_at": None if status == "running" else now,
                "summary": None
                if summary is None
                else json.dumps(summary, ensure_ascii=False, default=str),
            },
        )


def with_ledger(home: DataHome, units: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``units`` with ``done`` (skip it) and ``previous`` (the ledger's record) filled in."""
    out = []
    for unit in units:
        rec = unit_record(home, unit)
        out.append({**unit, "done": bool(rec and rec["status"] == DONE), "previous": rec})
    return out


@contextmanager
def backfill_lock(home: DataHome) -> Iterator[None]:
    """One backfill at a time per data home: a second one waits here for the first to finish
    (and then finds its units done). Separate from the run lock, which each unit's own run
    takes; released by the OS if the process dies."""

    def announce(holder: str) -> None:
        log.warning(
            "backfill: another backfill is running on %s (%s); waiting for it", home.root, holder
        )

    with file_lock(home.root / ".backfill.lock", on_busy=announce):
        yield


def wait_for_home(home: DataHome) -> None:
    """Wait until no run holds the data home's run lock (a scheduled nightly that started
    during a long replay), so the unit's run is not refused. The lock is only probed: the
    unit's own run takes it a moment later."""
    with home.run_lock(wait=True):
        pass


def plan_units(
    home: DataHome, request: BackfillRequest, overrides: dict[str, Any], force: bool
) -> list[dict[str, Any]]:
    """The backfill's units in the order they run, each marked ``done`` when the ledger
    already has it (see ``with_ledger``)."""
    match request.kind:
        case "exports":
            assert request.exports_from is not None and request.exports_to is not None
            snaps = plan_exports(home, request.exports_from, request.exports_to)
            units = [export_unit(s, overrides, force) for s in snaps]
        case "reembed":
            units = [reembed_unit(home, request.model, request.dim, overrides, force)]
        case "weeks":
            units = [week_unit(w, overrides) for w in request.weeks]
    planned = with_ledger(home, units)
    log.info(
        "backfill: %d %s unit(s), %d already done",
        len(planned),
        request.kind,
        sum(u["done"] for u in planned),
    )
    return planned


def begin_unit(home: DataHome, unit: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Record ``unit`` as running under ``run_id``; an export replay's run is prepared to start
    from the landed copy (``prepare_export_run``). Returns what the unit's flow needs:
    ``source`` (export replays: the landed folder, a path the pull stage never re-lands)."""
    if unit["kind"] != "weeks":
        wait_for_home(home)
    record_unit(home, unit, "running", run_id)
    if unit["kind"] == "exports":
        prepare_export_run(home, run_id, unit["snapshot"])
        return {"source": str(home.raw / unit["snapshot"]["snapshot_id"])}
    return {}


def finish_unit(
    home: DataHome,
    unit: dict[str, Any],
    run_id: str,
    completed: bool,
    result: Any,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Record how the unit's flow run ended (``done`` when it completed, whatever the run's
    own status: a blocked version blocks again; ``failed`` otherwise, so it is done again next
    time). Returns the unit's line of the backfill result."""
    summary: dict[str, Any] = {"flow_run_id": flow_run_id}
    if completed and isinstance(result, dict):
        summary.update(
            {k: result.get(k) for k in ("run_id", "status", "version", "message") if k in result}
        )
        if unit["kind"] == "weeks":
            summary.update({"status": "mined", "report": result.get("report")})
    else:
        summary.update({"status": "failed", "message": str(result)})
    running = unit_record(home, unit)
    started = running["started_at"] if running and running["run_id"] == run_id else None
    record_unit(home, unit, DONE if completed else "failed", run_id, summary, started)
    return {
        "kind": unit["kind"],
        "unit": unit["unit"],
        "outcome": DONE if completed else "failed",
        "run_id": summary.get("run_id", run_id),
        **{k: v for k, v in summary.items() if k != "run_id"},
    }


def skipped_unit(unit: dict[str, Any]) -> dict[str, Any]:
    """The result line of a unit the ledger has as done: nothing runs."""
    prev = unit.get("previous") or {}
    summary = prev.get("summary") or {}
    log.info("backfill: %s %s already done by run %s, skipped", unit["kind"], unit["unit"],
             prev.get("run_id"))  # fmt: skip
    return {
        "kind": unit["kind"],
        "unit": unit["unit"],
        "outcome": "skipped",
        "run_id": prev.get("run_id"),
        "status": summary.get("status"),
        "version": summary.get("version"),
    }


def summarize(kind: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The backfill's result: every unit with what happened to it, and counts by outcome."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    return {"kind": kind, "units": results, "counts": counts}


@dataclass(frozen=True)
class UnitRun:
    """How a unit's flow run ended: ``completed`` (whatever the run's own status: a blocked
    version blocks again), its ``result`` (the flow's summary, or the error), its Prefect id."""

    completed: bool
    result: Any
    flow_run_id: str | None = None


#: Runs one unit as its own flow run: ``(unit, run_id, ready)`` -> how it ended. ``ready`` is
#: what ``begin_unit`` prepared (an export replay's landed ``source``).
UnitRunner = Callable[[dict[str, Any], str, dict[str, Any]], UnitRun]


def run_units(
    home: DataHome,
    units: list[dict[str, Any]],
    runners: Mapping[str, UnitRunner],
    new_run_id: Callable[[], str],
) -> list[dict[str, Any]]:
    """Run the planned units in order, each through the runner of its kind (``exports``,
    ``reembed``, ``weeks``), recording each in the ledger before and after; units the ledger
    has as done are skipped. Returns one result line per unit (``outcome``: done, failed,
    skipped). Every unit runs, whatever the ones before it did."""
    results = []
    for unit in units:
        if unit["done"]:
            results.append(skipped_unit(unit))
            continue
        run_id = new_run_id()
        ready = begin_unit(home, unit, run_id)
        ran = runners[unit["kind"]](unit, run_id, ready)
        results.append(finish_unit(home, unit, run_id, ran.completed, ran.result, ran.flow_run_id))
    return results


def raise_if_failed(results: list[dict[str, Any]]) -> None:
    """``BackfillFailed`` naming every failed unit and why, when some failed (triggering the
    same backfill again redoes only those)."""
    failed = [r for r in results if r["outcome"] == "failed"]
    if failed:
        raise BackfillFailed(
            f"{len(failed)} of {len(results)} backfill units failed: "
            + "; ".join(f"{r['unit']}: {r.get('message')}" for r in failed)
        )
