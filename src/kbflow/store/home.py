"""The data home (``KBFLOW_HOME``): where every file kbflow writes lives.

```
catalog.duckdb  raw/  runs/<run_id>/<stage>/  embeddings/<model_key>/  indexes/<version>/
indexes/CURRENT  reports/  logs.duckdb  logs/spool/  logs/segments/
```
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kbflow.errors import ConcurrentRunError, StorageError


@dataclass(frozen=True)
class DataHome:
    root: Path

    @classmethod
    def at(cls, root: Path | str) -> DataHome:
        home = cls(Path(root).expanduser().resolve())
        for sub in (home.raw, home.runs, home.embeddings, home.indexes, home.reports):
            sub.mkdir(parents=True, exist_ok=True)
        return home

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.duckdb"

    @property
    def logs_path(self) -> Path:
        return self.root / "logs.duckdb"

    @property
    def spool_dir(self) -> Path:
        """Per-process spool files of serving processes (``kbflow.store.spool``)."""
        return self.root / "logs" / "spool"

    @property
    def segments_dir(self) -> Path:
        """Parquet log segments rolled from the spools (``kbflow.store.segments``)."""
        return self.root / "logs" / "segments"

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    @property
    def indexes(self) -> Path:
        return self.root / "indexes"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def stage_dir(self, run_id: str, stage: str) -> Path:
        path = self.runs / run_id / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    @contextmanager
    def run_lock(self, wait: bool = False) -> Iterator[None]:
        """Hold the data home's writer lock for the duration of a run.

        Two nightly runs on one home never write at once: the second is refused with
        ``ConcurrentRunError`` (or waits, with ``wait=True``). The OS releases the lock when
        the process dies, so a killed run never leaves it stuck.
        """

        def refuse(holder: str) -> None:
            raise ConcurrentRunError(
                f"another kbflow run is writing to {self.root} ({holder}); "
                "wait for it to finish or use another --home"
            )

        with file_lock(self.root / ".run.lock", on_busy=None if wait else refuse):
            yield


@contextmanager
def file_lock(path: Path, on_busy: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing), which records its holder
    (pid and since when). When another process holds it, ``on_busy(holder)`` is called first:
    raise there to refuse, return to wait for the lock. The OS releases it when the process
    dies, so a killed holder never leaves it stuck."""
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            if on_busy is not None:
                on_busy(fh.read().strip() or "another process")
            fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {datetime.now(UTC).isoformat(timespec='seconds')}")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


#: errno values that mean "no room": the disk, a quota, or a file-size limit is full.
NO_SPACE = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def storage_error(what: str, root: Path, exc: BaseException) -> StorageError:
    """The ``StorageError`` for an I/O failure of ``what`` while writing under ``root``."""
    text = str(exc)
    if (
        getattr(exc, "errno", None) in NO_SPACE
        or any(m in text for m in ("No space left", "File too large", "Disk quota"))
        or _SHORT_WRITE.search(text)  # numpy's tofile reports a full disk this way, no errno
    ):
        return StorageError(
            f"{what}: out of space writing to {root} ({text}); free space (or raise the "
            "file-size limit) and run again. Nothing was published."
        )
    return StorageError(f"{what}: I/O error under {root}: {text}")


def new_run_id(now: datetime | None = None) -> str:
    """Sortable, unique run id: ``20261124T020000-a1b2c3``."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder, fsync, ``os.replace``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync, ``os.replace``
    (a reader sees the old file or the whole new one; a crash leaves at most the temp file)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
