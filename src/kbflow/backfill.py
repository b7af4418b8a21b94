"""Backfills (``kb-backfill``): replay landed exports, re-embed the live snapshot, re-mine weeks.

A backfill is a list of *units* (one landed export, one re-embed, one ISO week), each run as
its own flow run by ``flows/backfill.py``. This module plans the units and keeps the ledger
that makes a backfill idempotent: the catalog table ``backfill_units`` holds every unit by
``(kind, unit, params_hash)``; a unit recorded ``done`` is skipped when the same backfill is
triggered again, so triggering it twice does the work once. A unit that failed, or whose run
was killed (left ``running``), is done again.

**The date of an export** is the ``run_date`` of the first ``kb-nightly`` run that pulled it
(the night it arrived, as recorded in the catalog's ``runs`` table), or, for an export no run
recorded (landed by a run that was killed), the day in Asia/Shanghai it was landed
(``exports.first_seen_at``). Dates in file names are not used: an export system that writes
into a fixed folder has none, and a name can lie about the content. A replay runs each export
with that date as its run date, so expiry is judged as it was that night.

**A re-embed** forks the live version's run after its chunk stage: the new run
(``kb-reembed``) starts with a copy of that run's pull, validate, clean, chunk and account
outputs (and its frozen golden queries), embeds every passage with the new model or dimension,
builds a new version beside the live one, gates it against the live version (each scored with
its own model) and publishes it only if it passes. ``CURRENT`` moves once, at the end; until
then the live version keeps answering.

No Prefect here: ``flows/backfill.py`` and ``tasks/backfill.py`` wrap these functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from kbflow import catalog
from kbflow.errors import ConfigError, NoLiveVersion
from kbflow.home import DataHome, atomic_write_text, file_lock
from kbflow.sqlfiles import load_sql

log = logging.getLogger(__name__)

Kind = Literal["exports", "reembed", "weeks"]
#: A unit in this state is not done again.
DONE = "done"
#: Stages of the live version's run that a re-embed starts from (everything before embed).
FORKED_STAGES = ("pull", "validate", "clean", "chunk", "account")
TIMEZONE = "Asia/Shanghai"
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_MARKER = "_SUCCESS.json"  # kbflow.pipeline.MARKER (not imported: pipeline pulls in faiss)


# --- the backfill request ---------------------------------------------------------------------


@dataclass(frozen=True)
class BackfillRequest:
    """What to backfill: exactly one of an export date range, a re-embed, or a week range."""

    exports_from: date | None = None
    exports_to: date | None = None
    reembed: bool = False
    model: str | None = None
    dim: int | None = None
    weeks: tuple[str, ...] = ()

    @property
    def kind(self) -> Kind:
        if self.reembed:
            return "reembed"
        if self.weeks:
            return "weeks"
        return "exports"


def parse_request(
    exports_from: str | date | None = None,
    exports_to: str | date | None = None,
    reembed: bool = False,
    model: str | None = None,
    dim: int | None = None,
    weeks: str | None = None,
) -> BackfillRequest:
    """Check the backfill parameters (the CLI's and the flow's); ``ConfigError`` names the
    mistake. ``exports_to`` defaults to ``exports_from`` (one day)."""
    modes = [
        name
        for name, given in (
            ("--exports-from/--exports-to", exports_from is not None or exports_to is not None),
            ("--reembed", reembed),
            ("--weeks", bool(weeks)),
        )
        if given
    ]
    if len(modes) != 1:
        raise ConfigError(
            "a backfill does one thing: give exactly one of --exports-from/--exports-to, "
            f"--reembed or --weeks (got {', '.join(modes) or 'none'})"
        )
    if (model is not None or dim is not None) and not reembed:
        raise ConfigError("--model and --dim go with --reembed")
    if dim is not None and dim < 1:
        raise ConfigError(f"--dim {dim} must be a positive number of dimensions")
    if reembed:
        if model is None and dim is None:
            raise ConfigError("--reembed needs --model and/or --dim (what to re-embed with)")
        return BackfillRequest(reembed=True, model=model, dim=dim)
    if weeks:
        return BackfillRequest(weeks=tuple(parse_weeks(weeks)))
    start = _date(exports_from if exports_from is not None else exports_to, "--exports-from")
    end = _date(exports_to if exports_to is not None else exports_from, "--exports-to")
    if end < start:
        raise ConfigError(f"--exports-to {end} is before --exports-from {start}")
    return BackfillRequest(exports_from=start, exports_to=end)


def _date(value: str | date | None, flag: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise ConfigError(f"{flag} {value!r} is not a date; use YYYY-MM-DD") from exc


def parse_weeks(spec: str) -> list[str]:
    """``2026-W40..2026-W47`` (inclusive, across year ends), ``2026-W40,2026-W42`` or one week,
    as a list of ISO weeks in order. ``ConfigError`` for anything else."""
    weeks: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        first, _, last = part.partition("..")
        start, end = _monday(first, spec), _monday(last or first, spec)
        if end < start:
            raise ConfigError(f"--weeks {part!r}: {last} is before {first}")
        day = start
        while day <= end:
            year, num, _ = day.isocalendar()
            weeks.append(f"{year}-W{num:02d}")
            day += timedelta(days=7)
    if len(weeks) > 520:
        raise ConfigError(f"--weeks {spec!r} spans {len(weeks)} weeks; split it up")
    return list(dict.fromkeys(weeks))


def _monday(week: str, spec: str) -> date:
    m = _WEEK.match(week.strip())
    if not m:
        raise ConfigError(f"--weeks {spec!r}: {week!r} is not an ISO week like 2026-W47")
    try:
        return date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
    except ValueError as exc:
        raise ConfigError(f"--weeks {spec!r}: week {week!r} does not exist") from exc


def params_hash(kind: str, params: dict[str, Any]) -> str:
    """Stable hash of a unit's parameters (overrides, force, model, ...): the same backfill
    triggered again has the same hash; changing a parameter makes it new work."""
    text = json.dumps({"kind": kind, **params}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# --- export dates -----------------------------------------------------------------------------


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
    marker = home.stage_dir(run_id, "pull") / _MARKER
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


# --- re-embed ---------------------------------------------------------------------------------


def reembed_unit(
    home: DataHome,
    model: str | None,
    dim: int | None,
    overrides: dict[str, Any],
    force: bool,
) -> dict[str, Any]:
    """The re-embed unit of the live version: keyed by the live snapshot's passages and the
    target model, so it stays the same unit after its version went live."""
    live = _live_manifest(home)
    info = live["embedding"]
    target = model or info["model"]
    unit = f"{live['passages_fingerprint'][:16]}:{target}@{dim or 'full'}"
    return {
        "kind": "reembed",
        "unit": unit,
        "params_hash": params_hash(
            "reembed", {"model": target, "dim": dim, "overrides": overrides, "force": force}
        ),
        "model": target,
        "dim": dim,
        "live_version": live["version"],
        "live_model_key": info["model_key"],
    }


def _live_manifest(home: DataHome) -> dict[str, Any]:
    from kbflow.index import read_manifest
    from kbflow.publish import current_version, live_version_dir

    live = current_version(home.indexes)
    if live is None:
        raise NoLiveVersion(
            f"nothing to re-embed: no version is published in {home.root}; run kbflow nightly first"
        )
    manifest = read_manifest(live_version_dir(home.indexes))
    return {**manifest, "version": live}


def reembed_overrides(
    home: DataHome, model: str | None, dim: int | None, overrides: dict[str, Any] | None
) -> dict[str, Any]:
    """Settings overrides of a re-embed of the live version: the new model and dimension, and
    the live version's own clean and chunk settings (its passages are reused as they are, so
    the new manifest must describe them truthfully). Raises ``ConfigError`` when the live
    version already uses that model and dimension."""
    live = _live_manifest(home)
    info = live["embedding"]
    target = model or info["model"]
    # ``auto`` is resolved by the re-embed's model stage, which refuses the live model itself
    if target == info["model"] and (dim or info.get("full_dim")) == info["dim"]:
        raise ConfigError(
            f"the live version {live['version']} already uses {info['model_key']}; "
            "nothing to re-embed (give another --model or --dim)"
        )
    used = live.get("settings", {})
    return {
        **(overrides or {}),
        **{section: used[section] for section in ("clean", "chunk") if section in used},
        "embed.model": target,
        "embed.dim": dim,
    }


def start_reembed(home: DataHome, run_id: str) -> dict[str, Any]:
    """Open run ``run_id`` (flow ``kb-reembed``) as a fork of the live version's run: copy its
    stage outputs up to chunk and its frozen golden queries. Call it holding the run lock.

    Returns ``run_date`` (the live run's), ``pulled`` (its pull summary), ``live_version`` and
    ``source_run``. Raises ``ConfigError`` when the live run's outputs are gone."""
    from kbflow import pipeline

    live = _live_manifest(home)
    source_run = live["run_id"]
    src = home.run_dir(source_run)
    if (
        not (src / "chunk" / "passages.parquet").is_file()
        or not (src / "chunk" / _MARKER).is_file()
    ):
        raise ConfigError(
            f"the live version {live['version']} was built by run {source_run}, whose outputs "
            f"under {src} are gone; run kbflow nightly (the next version can be re-embedded)"
        )
    run_date = date.fromisoformat(live["run_date"])
    pipeline.start_run(home, run_id, run_date, flow="kb-reembed")
    dst = home.run_dir(run_id)
    for stage in FORKED_STAGES:
        if (src / stage / _MARKER).is_file() and not (dst / stage / _MARKER).is_file():
            shutil.copytree(src / stage, dst / stage, dirs_exist_ok=True)
    for name in ("golden.jsonl", "retired.json"):
        if (src / name).is_file() and not (dst / name).exists():
            shutil.copy2(src / name, dst / name)
    pulled = json.loads((dst / "pull" / _MARKER).read_text(encoding="utf-8"))
    log.info(
        "reembed: run %s starts from run %s (live version %s, %s)",
        run_id,
        source_run,
        live["version"],
        live["embedding"]["model_key"],
    )
    return {
        "run_date": run_date.isoformat(),
        "pulled": pulled,
        "live_version": live["version"],
        "live_model_key": live["embedding"]["model_key"],
        "source_run": source_run,
    }


# --- weeks ------------------------------------------------------------------------------------


def week_unit(week: str, overrides: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "weeks",
        "unit": week,
        "params_hash": params_hash("weeks", {"overrides": overrides}),
        "week": week,
    }


# --- the ledger -------------------------------------------------------------------------------


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


# --- the units of a backfill ------------------------------------------------------------------


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
