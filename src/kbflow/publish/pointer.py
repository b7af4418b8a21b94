"""Publishing and rolling back: the ``indexes/CURRENT`` pointer, ``HISTORY``, and pruning.

``CURRENT`` is replaced atomically (temp file, fsync, ``os.replace``) before ``HISTORY``; changes
of either hold the data home's publish lock, so a rollback never interleaves with a publish.
Versions are pruned by renaming them out of the listing first. Reading the pointer (which
version is live) is ``kbflow.store.versions``."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kbflow.errors import IndexError_, NoLiveVersion
from kbflow.store.home import atomic_write_text, file_lock
from kbflow.store.versions import (
    CURRENT,
    HISTORY,
    MANIFEST,
    _history,
    current_version,
    list_versions,
    read_manifest,
    version_dir,
)

log = logging.getLogger(__name__)


POINTER_LOCK = ".publish.lock"


"""In the data home, beside ``indexes/`` (which holds versions and the two pointers only)."""


def repair_history(indexes_dir: Path) -> bool:
    """Append the live version to ``HISTORY`` when a publish or rollback was killed between
    writing ``CURRENT`` and ``HISTORY``; True when it did. Call it holding the run lock."""
    live = current_version(indexes_dir)
    history = _history(indexes_dir)
    if live is None or live in history:
        return False
    atomic_write_text(indexes_dir / HISTORY, "\n".join([*history, live]) + "\n")
    return True


@contextmanager
def pointer_lock(indexes_dir: Path) -> Iterator[None]:
    """Serialise changes of ``CURRENT``/``HISTORY`` (publish, prune, rollback).

    Separate from the data home's run lock, which a nightly run holds for hours: an operator's
    ``kbflow rollback`` must not wait for the run, only for a publish in progress (a second at
    most), and must never interleave with one (each would read HISTORY before the other wrote
    it). The OS releases the lock when the process dies."""
    indexes_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(indexes_dir.parent / POINTER_LOCK):
        yield


def publish_version(indexes_dir: Path, version: str, keep: int) -> str | None:
    """Make ``version`` live; returns the previously live version. Keeps the last ``keep``."""
    with pointer_lock(indexes_dir):
        return _publish_locked(indexes_dir, version, keep)


def _publish_locked(indexes_dir: Path, version: str, keep: int) -> str | None:
    version_dir(indexes_dir, version)
    previous = current_version(indexes_dir)
    history = _history(indexes_dir)
    if previous and previous not in history:
        history.append(previous)  # a run killed between CURRENT and HISTORY: repair
    history = [v for v in history if v != version] + [version]
    # CURRENT first: HISTORY must never list a version that was not live (rollback trusts it).
    atomic_write_text(indexes_dir / CURRENT, version + "\n")
    atomic_write_text(indexes_dir / HISTORY, "\n".join(history) + "\n")
    log.info("publish: %s is live (was %s)", version, previous)
    prune_versions(indexes_dir, keep)
    return previous


def rollback(indexes_dir: Path, target: str | None = None) -> tuple[str, str]:
    """Go back to ``target`` or to the version published before the live one.

    Returns (new live, old live). The rolled-back version stays on disk. Waits for a publish in
    progress (never for a whole nightly run).
    """
    with pointer_lock(indexes_dir):
        return _rollback_locked(indexes_dir, target)


def _rollback_locked(indexes_dir: Path, target: str | None) -> tuple[str, str]:
    live = current_version(indexes_dir)
    if live is None:
        raise NoLiveVersion("nothing to roll back: no version is live")
    history = _history(indexes_dir)
    if live not in history:
        history.append(live)  # a publish killed between CURRENT and HISTORY
    if target is None:
        earlier = (
            [v for v in history[: history.index(live)] if (indexes_dir / v / MANIFEST).is_file()]
            if live in history
            else []
        )
        if not earlier:
            raise IndexError_(
                f"{live} is the oldest kept version; there is nothing to roll back to"
            )
        target = earlier[-1]
    version_dir(indexes_dir, target)
    new_history = [v for v in history if v not in (target, live)] + [live, target]
    atomic_write_text(indexes_dir / CURRENT, target + "\n")
    atomic_write_text(indexes_dir / HISTORY, "\n".join(new_history) + "\n")
    log.info("rollback: %s is live (was %s)", target, live)
    return target, live


def _delete_version(indexes_dir: Path, version: str) -> None:
    # Renamed first (atomic), deleted after: a delete killed half-way leaves a hidden
    # .deleting-* folder (removed by the next run), never a listed, broken version.
    doomed = indexes_dir / f".deleting-{version}"
    os.rename(indexes_dir / version, doomed)
    shutil.rmtree(doomed)


def prune_versions(indexes_dir: Path, keep: int) -> list[str]:
    """Delete all but the ``keep`` most recently published versions (never the live one), and
    versions that never went live: ``blocked`` ones, and ``built`` ones created before the live
    version (left by runs killed before publishing, e.g. during calibration, after the
    folder's rename). A ``built`` version newer than the live one is kept: someone is about to
    gate or publish it."""
    live = current_version(indexes_dir)
    history = _history(indexes_dir)
    keep_set = set(history[-keep:]) | ({live} if live else set())
    live_created = read_manifest(indexes_dir / live).get("created_at") if live else None
    removed = []
    for info in list_versions(indexes_dir):
        if info.version in keep_set:
            continue
        status = read_manifest(indexes_dir / info.version).get("status")
        orphan = (
            status == "built"
            and live_created is not None
            and info.created_at is not None
            and str(info.created_at) < str(live_created)
        )
        if info.version in history or status == "blocked" or orphan:
            _delete_version(indexes_dir, info.version)
            removed.append(info.version)
    if removed:
        atomic_write_text(
            indexes_dir / HISTORY, "\n".join(v for v in history if v not in removed) + "\n"
        )
        log.info("publish: pruned %s", ", ".join(removed))
    return removed
