"""Parquet log segments: where serving processes' events land, and how every log reader sees
them together with ``logs.duckdb``.

A segment is one Parquet file of search or click events (the ``SEARCH_EVENT`` /
``CLICK_EVENT`` schemas, explicit), named after the spool file it was rolled from and split by
UTC day::

    <segments>/search/date=2026-12-07/<host>-<pid>-<token>-<seq>.parquet
    <segments>/click/date=2026-12-07/<host>-<pid>-<token>-<seq>.parquet

``<segments>`` is a local folder (default ``<home>/logs/segments``) or an fsspec URL
(``s3://bucket/kbflow/segments`` with s3fs installed) that several hosts write to. A segment is
written whole or not at all: locally to a hidden temporary name, fsync'd, then renamed; on an
object store by one PUT. Its name is a function of the spool and the day, so rolling one spool
twice (a crash between writing the segment and removing the spool) rewrites the same file.

Readers (``attach_log_views``) list the segments of the days they need and put them behind two
views, ``search_log`` and ``click_log``, with the rows already in ``logs.duckdb``: an event
stored twice (a spool replayed, a segment also imported) counts once (search events by query
id; clicks by query id, entry and time).
"""

from __future__ import annotations

import io
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kbflow.errors import ConfigError
from kbflow.store.home import atomic_write_bytes
from kbflow.store.sql import load_sql

log = logging.getLogger(__name__)

KINDS = ("search", "click")
#: Open ends of a log window (a bound parameter always gets a value).
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def is_url(location: str) -> bool:
    """``s3://…``, ``gs://…``, ``memory://…``: anything with a scheme other than ``file``."""
    return "://" in location and not location.startswith("file://")


def _local(location: str) -> Path:
    return Path(location.removeprefix("file://")).expanduser()


def filesystem(location: str) -> Any:
    """The fsspec filesystem of a segment URL (``ConfigError`` if its driver is missing)."""
    import fsspec

    protocol = location.split("://", 1)[0]
    try:
        return fsspec.filesystem(protocol)
    except (ImportError, ValueError) as exc:
        raise ConfigError(
            f"logs.segments is {location!r} but fsspec has no usable {protocol!r} filesystem "
            f"({exc}); install its driver (s3fs for s3://, gcsfs for gs://) beside kbflow"
        ) from exc


def _day_dir(location: str, kind: str, day: date) -> str:
    return f"{location.rstrip('/')}/{kind}/date={day.isoformat()}"


def write_segments(location: str, stem: str, tables: dict[str, pa.Table]) -> list[str]:
    """Write each kind's events as one segment per UTC day; returns the paths written.

    ``tables`` maps ``search``/``click`` to tables with the kind's schema. Atomic per file;
    rewriting the same ``stem`` replaces its segments with the same content."""
    written: list[str] = []
    for kind, table in tables.items():
        if not table.num_rows:
            continue
        days = pc.cast(pc.cast(table.column("ts"), pa.timestamp("us", tz="UTC")), pa.date32())
        for day in sorted(set(days.to_pylist())):
            part = table.filter(pc.equal(days, pa.scalar(day, pa.date32())))
            path = f"{_day_dir(location, kind, day)}/{stem}.parquet"
            _write_atomic(location, path, part)
            written.append(path)
    return written


def _write_atomic(location: str, path: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    if is_url(location):
        filesystem(location).pipe_file(path, buf.getvalue())  # one PUT: whole or nothing
        return
    target = _local(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, buf.getvalue())


def segment_files(
    location: str, kind: str, start: datetime | None = None, end: datetime | None = None
) -> list[str]:
    """The segments of ``kind`` whose day may hold events in ``[start, end)`` (all if no
    bounds), sorted. A day folder is UTC, so the window is widened by a day each side."""
    lo = (start.astimezone(UTC).date() - timedelta(days=1)) if start else None
    hi = (end.astimezone(UTC).date() + timedelta(days=1)) if end else None
    root = f"{location.rstrip('/')}/{kind}"
    if is_url(location):
        fs = filesystem(location)
        found = [fs.unstrip_protocol(p) for p in fs.glob(f"{root}/date=*/*.parquet")]
    else:
        found = [str(p) for p in _local(root).glob("date=*/*.parquet")]
    out = []
    for path in found:
        day = _day_of(path)
        if day is None or (lo and day < lo) or (hi and day > hi):
            continue
        out.append(path)
    return sorted(out)


def _day_of(path: str) -> date | None:
    folder = path.rsplit("/", 2)[-2]
    try:
        return date.fromisoformat(folder.removeprefix("date="))
    except ValueError:
        return None


def attach_log_views(
    con: duckdb.DuckDBPyConnection,
    location: str | None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, int]:
    """Create ``search_log`` and ``click_log`` on ``con`` (a connection to ``logs.duckdb``,
    its tables created): the stored events plus the segments at ``location`` (None: stored
    events only) whose day may fall in ``[start, end)``, each event once.

    With segments they are temp tables (``sql/logs/``), restricted to the window, read once
    however many statements use them; clicks are taken from a day before ``start`` on, with no
    end, since a click may come long after its search. A segment event already stored is left
    out (an anti-join on the key); segments repeating each other (a spool copied by hand) are
    deduplicated when a count says there are any. Without segments they are views over the
    stored tables. Returns the number of segment files read per kind."""
    counts: dict[str, int] = {}
    if location and is_url(location):
        con.register_filesystem(filesystem(location))
    con.execute(load_sql("logs/drop_log_views"))
    for kind in KINDS:
        lo, hi = start, end
        if kind == "click":  # a click may come long after its search; hosts' clocks may differ
            lo, hi = (start - timedelta(days=1) if start else None), None
        files = segment_files(location, kind, lo, hi) if location else []
        counts[kind] = len(files)
        if not files:
            con.execute(load_sql(f"logs/create_{kind}_log_view"))
            continue
        con.execute(
            load_sql(f"logs/create_{kind}_log"),
            {"files": files, "start_at": lo or _EARLIEST, "end_at": hi or _LATEST},
        )
        ((repeats,),) = con.execute(load_sql(f"logs/select_{kind}_log_repeats")).fetchall()
        if repeats:
            log.warning("logs: %d %s events appear in more than one segment; counted once",
                        repeats, kind)  # fmt: skip
            con.execute(load_sql(f"logs/dedupe_{kind}_log"))
    return counts


def count_segment_events(location: str) -> dict[str, dict[str, int]]:
    """Per kind, the segment files at ``location`` and the rows they hold (duplicates counted
    as stored): ``{"search": {"files": n, "events": n}, "click": {...}}``."""
    fs = filesystem(location) if is_url(location) else None
    out: dict[str, dict[str, int]] = {}
    for kind in KINDS:
        files = segment_files(location, kind)
        events = 0
        for f in files:
            if fs is not None:
                with fs.open(f, "rb") as fh:
                    events += pq.ParquetFile(fh).metadata.num_rows
            else:
                events += pq.ParquetFile(f).metadata.num_rows
        out[kind] = {"files": len(files), "events": events}
    return out
