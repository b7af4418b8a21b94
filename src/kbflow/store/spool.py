"""Durable search and click logging for serving processes: a spool file per process, rolled
into Parquet segments.

Each serving process appends every event, as one JSON line, to its own spool file with one
``write`` before the request is answered: once the call returns the bytes belong to the OS, so
a ``kill -9`` of the process (OOM killer, node eviction) loses nothing it answered for
(``logs.fsync`` adds an fsync per event for power loss too). No lock is shared between
processes, so any number of processes on any number of hosts log at once.

Every ``logs.roll_interval_s`` a background thread starts a new spool file and rolls the old
one into segments (``kbflow.store.segments``), then deletes it. A live process holds an
exclusive ``flock`` on each spool file it owns; a spool nobody holds belongs to a dead process
and is rolled by the next process that starts (``kbflow serve`` does at start and at every
interval) or by ``kbflow logs roll``. The line a process was writing when killed can be cut
short; a cut last line is dropped (its request was never answered).

Spool files live on local disk (``<home>/logs/spool``); segments go to ``logs.segments``
(default ``<home>/logs/segments``, or an fsspec URL shared by every host).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from kbflow.errors import SourceError
from kbflow.settings import LogSettings
from kbflow.store.home import DataHome
from kbflow.store.logs import EventLog, event_line, event_tables, parse_event_line
from kbflow.store.segments import write_segments

log = logging.getLogger(__name__)

_SUFFIX = ".jsonl"


@dataclass
class RollResult:
    spool: str
    searches: int
    clicks: int
    torn: bool
    segments: list[str]


def _lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise


def read_spool(path: Path) -> tuple[dict[str, pa.Table], bool]:
    """The events of a spool file as ``{"search": Table, "click": Table}``, and whether its
    last line was cut short (dropped). Any other bad line is a ``SourceError``."""
    data = path.read_bytes()
    torn = bool(data) and not data.endswith(b"\n")
    lines = data.split(b"\n")
    if torn:
        lines = lines[:-1]
    rows: dict[str, list[dict[str, Any]]] = {"search": [], "click": []}
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            kind, row = parse_event_line(n, raw.decode("utf-8"))
        except (UnicodeDecodeError, SourceError) as exc:
            raise SourceError(f"spool {path}: {exc}") from exc
        rows[kind].append(row)
    searches, clicks = event_tables(rows)
    return {"search": searches, "click": clicks}, torn


def roll_spool(path: Path, segments: str) -> RollResult:
    """Write the spool at ``path`` as segments under ``segments``, then delete it. The caller
    holds the spool's flock."""
    tables, torn = read_spool(path)
    if torn:
        log.warning(
            "spool %s: its last line was cut short (process killed mid-write); dropped", path
        )
    stem = path.name.removesuffix(_SUFFIX)
    written = write_segments(segments, stem, tables)
    path.unlink(missing_ok=True)
    return RollResult(path.name, tables["search"].num_rows, tables["click"].num_rows, torn, written)


def roll_orphans(spool_dir: Path, segments: str) -> list[RollResult]:
    """Roll every spool file in ``spool_dir`` that no live process holds (its writer died).
    A spool that cannot be parsed is kept, renamed ``*.bad``, and reported in the log."""
    done: list[RollResult] = []
    if not spool_dir.is_dir():
        return done
    for path in sorted(spool_dir.glob(f"*{_SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # rolled by someone else meanwhile
        try:
            if not _lock(fd):
                continue  # a live process owns it
            if not path.exists():
                continue  # rolled and removed while we waited for the lock
            try:
                done.append(roll_spool(path, segments))
            except SourceError as exc:
                bad = path.with_suffix(".bad")
                os.replace(path, bad)
                log.error("%s; kept as %s for a person to look at", exc, bad)
        finally:
            os.close(fd)
    if done:
        log.info(
            "logs: rolled %d orphaned spool file(s): %d searches, %d clicks",
            len(done),
            sum(r.searches for r in done),
            sum(r.clicks for r in done),
        )
    return done


def log_places(home: Path, settings: LogSettings) -> tuple[Path, str]:
    """(spool folder, segments location) of data home ``home`` under ``settings``."""
    data = DataHome(home)
    spool = settings.spool_dir or data.spool_dir
    segments = settings.segments or str(data.segments_dir)
    return Path(spool), segments


def open_writer(home: Path, settings: LogSettings) -> SpoolWriter:
    """The ``SpoolWriter`` a serving process of data home ``home`` logs to."""
    spool, segments = log_places(home, settings)
    return SpoolWriter(spool, segments, settings.roll_interval_s, settings.fsync)


class SpoolWriter(EventLog):
    """A serving process's event log: ``log_search``/``log_click`` append one line to the
    process's spool file and return once the OS has it; a background thread rolls spool files
    into Parquet segments every ``roll_interval_s`` and rolls orphaned spools of dead
    processes. Thread-safe. ``close`` rolls the current spool."""

    def __init__(
        self,
        spool_dir: Path,
        segments: str,
        roll_interval_s: float = 300.0,
        fsync: bool = False,
    ) -> None:
        self.spool_dir = Path(spool_dir)
        self.segments = segments
        self.roll_interval_s = roll_interval_s
        self.fsync = fsync
        self.written = 0
        self._prefix = f"{_host()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        try:
            roll_orphans(self.spool_dir, self.segments)
        except Exception as exc:  # noqa: BLE001 - serve anyway; the next interval retries
            log.error("logs: could not roll orphaned spools yet: %s", exc)
        self._fd, self._path = self._open_new()
        self._thread = threading.Thread(target=self._run, name="kbflow-spool", daemon=True)
        self._thread.start()

    # --- writing ---------------------------------------------------------------------------

    def _put(self, kind: str, row: dict[str, Any]) -> None:
        """One line, one ``write``; raises ``OSError`` when the spool cannot be written (disk
        full): the caller must not answer as if the event were kept."""
        data = event_line(kind, row).encode("utf-8")
        with self._lock:
            view = memoryview(data)
            while view:  # a regular file takes it in one write; loop for the odd short one
                n = os.write(self._fd, view)
                view = view[n:]
            if self.fsync:
                os.fsync(self._fd)
            self.written += 1

    # --- rolling ---------------------------------------------------------------------------

    def _open_new(self) -> tuple[int, Path]:
        """A new spool file, locked before it gets the name orphan scans look for."""
        self._seq += 1
        name = f"{self._prefix}-{self._seq:06d}{_SUFFIX}"
        tmp = self.spool_dir / f".{name}.new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = self.spool_dir / name
        os.rename(tmp, path)
        return fd, path

    def roll(self) -> RollResult | None:
        """Start a new spool file and roll the current one (if it holds anything)."""
        with self._lock:
            if os.fstat(self._fd).st_size == 0:
                return None
            old_fd, old_path = self._fd, self._path
            self._fd, self._path = self._open_new()
        try:
            return roll_spool(old_path, self.segments)
        finally:
            os.close(old_fd)  # releases its flock: if the roll failed, it is an orphan now

    def flush(self) -> None:
        """Roll what is spooled so far into segments now (tests, shutdown)."""
        self.roll()

    def _run(self) -> None:
        while not self._stop.wait(self.roll_interval_s):
            try:
                self.roll()
                roll_orphans(self.spool_dir, self.segments)
            except Exception as exc:  # noqa: BLE001 - the spool stays; the next interval retries
                log.error("logs: rolling spool files failed (kept for the next try): %s", exc)

    def close(self) -> None:
        """Stop the roll thread and roll the current spool (kept as an orphan if that fails)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        try:
            with self._lock:
                fd, path = self._fd, self._path
                self._fd = -1
            if os.fstat(fd).st_size == 0:
                path.unlink(missing_ok=True)
            else:
                roll_spool(path, self.segments)
            os.close(fd)
        except Exception as exc:  # noqa: BLE001 - the spool stays for the next start
            log.error("logs: could not roll %s at shutdown (the next start will): %s", path, exc)

    def __enter__(self) -> SpoolWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _host() -> str:
    name = socket.gethostname().split(".")[0] or "host"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]
