"""The search and click log (``logs.duckdb``): the event schemas, imports and batched appends.

Serving processes do not write here: they spool to files rolled into Parquet segments
(``kbflow.store.spool``), and readers see both through ``kbflow.store.segments``. This file
holds what ``kbflow logs import`` loads, what ``kbflow simulate-logs`` writes (``LogWriter``)
and the weekly review tables.

Tables are defined in ``sql/schema/create_log_tables.sql``. DuckDB lets one process write a
database file at a time, and the weekly mining flow (another process) reads it, so a writer
never holds the file open: each flush opens it, appends one batch in one transaction and
closes it, retrying briefly while another process holds the lock. Events that cannot be
written (the lock is held for long, the disk is full) stay queued for the next flush; on
``close`` whatever still cannot be written is spilled to a JSONL file beside the database,
which ``import_events`` loads later. So logging never slows or fails a query and no event is
lost.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from kbflow.contracts import CLICK_EVENT, SEARCH_EVENT
from kbflow.errors import KbflowError, SourceError
from kbflow.store.db import staged, transaction
from kbflow.store.segments import attach_log_views
from kbflow.store.sql import load_sql

log = logging.getLogger(__name__)


_SCHEMAS = {"search": SEARCH_EVENT, "click": CLICK_EVENT}


class LogLockedError(KbflowError):
    """Another process held ``logs.duckdb`` for longer than the retry budget."""


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "conflicting" in text or "resource temporarily unavailable" in text


@contextmanager
def connect_logs(
    path: Path,
    read_only: bool = False,
    retry_s: float = 5.0,
    config: dict[str, Any] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open ``logs.duckdb`` (creating its tables on first write), retrying while another
    process holds the file; raises ``LogLockedError`` after ``retry_s`` seconds."""
    if read_only and not path.exists():
        read_only = False
    deadline = time.monotonic() + retry_s
    delay = 0.02
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=config or {})
            break
        except duckdb.Error as exc:
            if not _is_lock_error(exc) or time.monotonic() >= deadline:
                if _is_lock_error(exc):
                    raise LogLockedError(f"{path} is locked by another process: {exc}") from exc
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    try:
        if not read_only:
            con.execute(load_sql("schema/create_log_tables"))
        yield con
    finally:
        con.close()


def append_events(con: duckdb.DuckDBPyConnection, searches: pa.Table, clicks: pa.Table) -> None:
    """Append search and click events (``SEARCH_EVENT`` / ``CLICK_EVENT`` tables) in one
    transaction; events already stored (same query id; same click) are skipped."""
    with transaction(con):
        for name, table, sql in (
            ("staged_search_events", searches, "schema/insert_search_events"),
            ("staged_click_events", clicks, "schema/insert_click_events"),
        ):
            if table.num_rows:
                with staged(con, name, table):
                    con.execute(load_sql(sql))


def _utc(ts: datetime | str | None) -> datetime:
    if ts is None:
        return datetime.now(UTC)
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def search_event(
    response: Any,
    session_id: str | None = None,
    user_id: str | None = None,
    ts: datetime | None = None,
    query_id: str | None = None,
) -> dict[str, Any]:
    """A ``search_events`` row from a ``kbflow.search.SearchResponse``."""
    results = list(response.results)
    return {
        "query_id": query_id or uuid.uuid4().hex,
        "ts": _utc(ts),
        "session_id": session_id,
        "user_id": user_id,
        "query": response.query,
        "version": response.version,
        "result_ids": [h.entry_id for h in results],
        "result_scores": [float(h.score) for h in results],
        "top1_score": None if response.top_score is None else float(response.top_score),
        "latency_ms": float(response.latency_ms),
        "fallback_level": int(response.fallback_level),
        "handoff": bool(response.handoff),
        "threshold": response.threshold,
    }


@dataclass
class _Event:
    kind: str  # "search" | "click"
    row: dict[str, Any]


_STOP = object()


class EventLog:
    """What the search service and the simulator log through: ``log_search``, ``log_click``
    and ``log_row`` build a ``search_events``/``click_events`` row and hand it to ``_put``
    (``LogWriter``: a queue flushed to ``logs.duckdb``; ``SpoolWriter``: the process's spool
    file, ``kbflow.store.spool``)."""

    def _put(self, kind: str, row: dict[str, Any]) -> None:
        raise NotImplementedError

    def log_search(
        self,
        response: Any,
        session_id: str | None = None,
        user_id: str | None = None,
        ts: datetime | None = None,
    ) -> str:
        """Log one search event (from a ``SearchResponse``); returns its ``query_id``."""
        row = search_event(response, session_id, user_id, ts)
        self._put("search", row)
        return str(row["query_id"])

    def log_click(
        self,
        query_id: str,
        entry_id: str,
        position: int | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
        ts: datetime | None = None,
    ) -> None:
        """Log one click on result ``entry_id`` (1-based ``position``) of ``query_id``."""
        self._put(
            "click",
            {
                "query_id": query_id,
                "ts": _utc(ts),
                "session_id": session_id,
                "user_id": user_id,
                "entry_id": entry_id,
                "position": position,
            },
        )

    def log_row(self, kind: str, row: dict[str, Any]) -> None:
        """Log a ready-made ``search_events``/``click_events`` row (``kind`` search|click)."""
        if kind not in _SCHEMAS:
            raise ValueError(f"unknown event kind {kind!r}")
        self._put(kind, row)


class LogWriter(EventLog):
    """Appends search and click events to ``logs.duckdb`` from a background thread.

    ``log_search``/``log_click`` only put the event on an in-memory queue: they never block on
    the database and never raise. A flush happens every ``batch_size`` events, every
    ``flush_s`` seconds, and on ``close`` (also when used as a context manager). Each flush
    opens the file, appends in one transaction, closes it. Thread-safe.
    """

    def __init__(
        self,
        path: Path,
        batch_size: int = 500,
        flush_s: float = 2.0,
        lock_retry_s: float = 2.0,
    ) -> None:
        self.path = Path(path)
        self.batch_size = batch_size
        self.flush_s = flush_s
        self.lock_retry_s = lock_retry_s
        self.written = 0
        self.spilled: Path | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._pending: list[_Event] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="kbflow-logwriter", daemon=True)
        self._thread.start()

    def _put(self, kind: str, row: dict[str, Any]) -> None:
        self._queue.put(_Event(kind, row))

    def flush(self) -> None:
        """Block until every event queued so far has been written (or kept for retry)."""
        done = threading.Event()
        self._queue.put(done)
        done.wait()

    def close(self) -> None:
        """Flush everything, stop the thread; events still unwritable go to a spill file."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        last = time.monotonic()
        while True:
            timeout = max(0.0, self.flush_s - (time.monotonic() - last))
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._drain_queue()
                self._write(final=True)
                return
            if isinstance(item, _Event):
                self._pending.append(item)
            elif isinstance(item, threading.Event):
                self._drain_queue()
                self._write()
                item.set()
                last = time.monotonic()
                continue
            due = time.monotonic() - last >= self.flush_s
            if len(self._pending) >= self.batch_size or due:
                self._write()
                last = time.monotonic()

    def _drain_queue(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Event):
                self._pending.append(item)
            elif isinstance(item, threading.Event):
                item.set()

    def _write(self, final: bool = False) -> None:
        if not self._pending:
            return
        batch = self._pending
        try:
            searches, clicks = _tables(batch)
            with connect_logs(self.path, retry_s=self.lock_retry_s * (5 if final else 1)) as con:
                append_events(con, searches, clicks)
            self.written += len(batch)
            self._pending = []
        except Exception as exc:  # noqa: BLE001 - keep the events, retry on the next flush
            log.warning("logwriter: %d events not written yet (%s)", len(batch), exc)
            if final:
                self.spilled = _spill(self.path, batch)
                self._pending = []
                log.error("logwriter: %d events spilled to %s", len(batch), self.spilled)


def event_tables(rows: dict[str, list[dict[str, Any]]]) -> tuple[pa.Table, pa.Table]:
    """(search events, click events) as tables of their schemas, from rows by kind."""
    return (
        pa.Table.from_pylist(rows.get("search", []), schema=SEARCH_EVENT),
        pa.Table.from_pylist(rows.get("click", []), schema=CLICK_EVENT),
    )


def _tables(batch: list[_Event]) -> tuple[pa.Table, pa.Table]:
    rows: dict[str, list[dict[str, Any]]] = {"search": [], "click": []}
    for e in batch:
        rows[e.kind].append(e.row)
    return event_tables(rows)


def event_line(kind: str, row: dict[str, Any]) -> str:
    """One event as a JSONL line (newline included), as ``parse_event_line`` and
    ``kbflow logs import`` read it: spill files and serving processes' spools."""
    return json.dumps({"type": kind, **row}, ensure_ascii=False, default=str) + "\n"


def _spill(path: Path, batch: list[_Event]) -> Path:
    out = path.with_name(f"{path.name}.spill-{os.getpid()}-{secrets.token_hex(3)}.jsonl")
    with open(out, "w", encoding="utf-8") as fh:
        for e in batch:
            fh.write(event_line(e.kind, e.row))
        fh.flush()
        os.fsync(fh.fileno())
    return out


def parse_event_line(n: int, line: str) -> tuple[str, dict[str, Any]]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SourceError(f"line {n}: not JSON ({exc.msg})") from exc
    if not isinstance(obj, dict):
        raise SourceError(f"line {n}: expected a JSON object")
    kind = obj.pop("type", None) or ("click" if "entry_id" in obj else "search")
    if kind not in _SCHEMAS:
        raise SourceError(f"line {n}: type must be 'search' or 'click', not {kind!r}")
    schema = _SCHEMAS[kind]
    missing = [f.name for f in schema if not f.nullable and obj.get(f.name) is None]
    missing = [m for m in missing if m not in ("fallback_level", "handoff")]
    if missing:
        raise SourceError(f"line {n}: {kind} event lacks {', '.join(missing)}")
    row = {f.name: obj.get(f.name) for f in schema}
    try:
        row["ts"] = _utc(row["ts"])
    except (TypeError, ValueError) as exc:
        raise SourceError(f"line {n}: ts {row['ts']!r} is not an ISO date-time") from exc
    if kind == "search":
        row["fallback_level"] = int(row["fallback_level"] or 0)
        row["handoff"] = bool(row["handoff"])
        scores = row["result_scores"] or []
        if row["top1_score"] is None and scores:
            row["top1_score"] = float(scores[0])
    return kind, row


def import_events(path_jsonl: Path, logs_path: Path, batch_size: int = 100_000) -> dict[str, int]:
    """Load search and click events exported by another serving system (or spilled by a
    ``LogWriter``) from JSONL: one object per line with ``type`` ``search`` or ``click`` and
    the table's columns (``ts`` ISO 8601; naive means UTC). The whole file is validated first
    (``SourceError`` names the first bad line) and then appended in one transaction per batch;
    events already stored are skipped, so importing a file twice adds nothing.
    Returns ``{"searches": n, "clicks": n, "lines": n}`` (rows read)."""
    path_jsonl = Path(path_jsonl)
    if not path_jsonl.is_file():
        raise SourceError(f"no such file: {path_jsonl}")
    rows: dict[str, list[dict[str, Any]]] = {"search": [], "click": []}
    lines = 0
    with open(path_jsonl, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            lines += 1
            kind, row = parse_event_line(n, line)
            rows[kind].append(row)
    with connect_logs(logs_path, retry_s=30.0) as con:
        for i in range(0, max(len(rows["search"]), len(rows["click"]), 1), batch_size):
            append_events(
                con,
                pa.Table.from_pylist(rows["search"][i : i + batch_size], schema=SEARCH_EVENT),
                pa.Table.from_pylist(rows["click"][i : i + batch_size], schema=CLICK_EVENT),
            )
    log.info(
        "import: %d lines, %d searches, %d clicks from %s",
        lines,
        len(rows["search"]),
        len(rows["click"]),
        path_jsonl,
    )
    return {"lines": lines, "searches": len(rows["search"]), "clicks": len(rows["click"])}


def event_counts(logs_path: Path, segments: str | None = None) -> dict[str, int]:
    """``{"searches": n, "clicks": n}`` in ``logs.duckdb`` and the segments at ``segments``
    (each event once)."""
    with connect_logs(logs_path) as con:
        attach_log_views(con, segments)
        n_s, n_c = con.execute(load_sql("schema/select_event_counts")).fetchone() or (0, 0)
    return {"searches": int(n_s), "clicks": int(n_c)}
