"""Land an export: an immutable, verified copy under ``raw/<snapshot_id>/``, content-addressed
(landing the same export again changes nothing), with a completion marker written last."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from kbflow.errors import SourceError
from kbflow.pull.discover import (
    _CHUNK,
    ExportFile,
    _hash_entry,
    _hash_file,
    _list_source,
    _safe_name,
    _SourceEntry,
    snapshot_sha256,
)
from kbflow.store.home import NO_SPACE

log = logging.getLogger(__name__)


#: Written last into a landed snapshot folder; lists the files. Its presence means "complete".
COMPLETE_MARKER = "_COMPLETE"


@dataclass(frozen=True)
class LandedExport:
    """An export copied under ``raw_dir``: ``root`` is ``raw_dir/<snapshot_id>``."""

    snapshot_id: str
    snapshot_sha256: str
    files: list[ExportFile]
    root: Path
    already_landed: bool


def land_export(source: str, raw_dir: Path) -> LandedExport:
    """Copy the export at ``source`` to ``raw_dir/<snapshot_id>/<name>``, immutably.

    Idempotent: when ``raw_dir/<snapshot_id>`` already holds a ``_COMPLETE`` marker it is
    reused untouched (nothing written, ``already_landed=True``); the source is then read only
    once, to hash it. Otherwise each file is copied to a temp name, its sha256 checked against
    the one discovered (so an export that changes while being landed is refused) and again on
    the written copy, made read-only and renamed into place with ``os.replace``; the marker,
    listing the files, is written last. A folder left incomplete by a crash is completed.

    Raises ``SourceError`` (see ``discover_export``), also when a copy does not match its hash
    or a landed folder disagrees with its marker.
    """
    entries = _list_source(source)
    files = [_hash_entry(e) for e in entries]
    full = snapshot_sha256(files)
    snap = full[:16]
    root = Path(raw_dir) / snap
    marker = root / COMPLETE_MARKER

    if marker.exists():
        _check_landed(root, marker, full, files)
        log.info("pull: snapshot %s already landed (%d files), reused", snap, len(files))
        return LandedExport(snap, full, files, root, already_landed=True)

    root.mkdir(parents=True, exist_ok=True)
    for entry, expected in zip(entries, files, strict=True):
        _copy_verified(entry, expected, root)
    _remove_stale_temps(root)
    _write_marker(marker, snap, full, files)
    log.info(
        "pull: landed snapshot %s: %d files, %d bytes from %s",
        snap,
        len(files),
        sum(f.size for f in files),
        source,
    )
    return LandedExport(snap, full, files, root, already_landed=False)


def _copy_verified(entry: _SourceEntry, expected: ExportFile, root: Path) -> None:
    final = root.joinpath(*_safe_name(expected.name, str(root)).split("/"))
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.kbflow-tmp-{os.getpid()}-{secrets.token_hex(4)}")
    digest = hashlib.sha256()
    size = 0
    try:
        try:
            with entry.open() as src, open(tmp, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise  # the data home is full, not the source's fault (a StorageError)
            raise SourceError(f"cannot copy {expected.name}: {exc}") from exc
        if digest.hexdigest() != expected.sha256 or size != expected.size:
            raise SourceError(
                f"{expected.name} changed while the export was being landed; "
                "run again once the export is complete."
            )
        if _hash_file(tmp) != expected.sha256:
            raise SourceError(f"the landed copy of {expected.name} does not match its sha256")
        os.chmod(tmp, 0o444)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _remove_stale_temps(root: Path) -> None:
    # Left by a crashed earlier attempt at the same snapshot; they are ours, never export data.
    for stale in root.rglob(".*.kbflow-tmp-*"):
        stale.unlink(missing_ok=True)


def _write_marker(marker: Path, snap: str, full: str, files: list[ExportFile]) -> None:
    body = {
        "snapshot_id": snap,
        "snapshot_sha256": full,
        "files": [asdict(f) for f in files],
        "landed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    tmp = marker.with_name(f".{marker.name}.kbflow-tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(body, fh, ensure_ascii=False, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, marker)
    dir_fd = os.open(marker.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _check_landed(root: Path, marker: Path, full: str, files: list[ExportFile]) -> None:
    """Cheap consistency check of a complete folder (marker agrees, sizes match); no rehash."""
    fix = f"delete {root} and run again to land the export afresh."
    try:
        body = json.loads(marker.read_text(encoding="utf-8"))
        landed = [ExportFile(**f) for f in body["files"]]
        landed_sha = body["snapshot_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SourceError(f"{marker} is unreadable ({exc}); {fix}") from exc
    if landed_sha != full or landed != files:
        raise SourceError(f"{root} does not hold the snapshot its name says; {fix}")
    for f in files:
        path = root / f.name
        if not path.is_file() or path.stat().st_size != f.size:
            raise SourceError(f"landed file {path} is missing or has the wrong size; {fix}")
