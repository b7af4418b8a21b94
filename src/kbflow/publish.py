"""Publish stage: the ``indexes/CURRENT`` pointer, version listing, rollback and pruning.

``CURRENT`` holds one version name. It is replaced atomically (temp file, fsync,
``os.replace``), so a reader sees the old or the new version, never a mix, and it is the one
source of truth of what is live: ``HISTORY`` (the order versions went live, for rollback and
pruning) is written after it and repaired from it when a run was killed in between.

Only complete folders directly inside ``indexes/`` (with a manifest), whose files all stay
inside the data home, are ever loaded: ``CURRENT`` naming ``../elsewhere`` or an absolute path,
a version folder that is a symlink out of ``indexes/``, a file in a version that links outside
it, or an ``indexes/`` folder that is itself a link out of the data home are refused with
``IndexError_`` (:func:`version_dir`, which every reader goes through).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbflow.errors import IndexError_, NoLiveVersion
from kbflow.home import atomic_write_text, file_lock
from kbflow.index import MANIFEST, read_manifest

log = logging.getLogger(__name__)

CURRENT = "CURRENT"
HISTORY = "HISTORY"
POINTER_LOCK = ".publish.lock"
"""In the data home, beside ``indexes/`` (which holds versions and the two pointers only)."""
_VERSION_RE = re.compile(r"^v[0-9A-Za-z._-]{1,120}$")


def version_dir(indexes_dir: Path, version: str) -> Path:
    """The resolved folder of ``version``, a complete version inside the data home.

    Raises ``IndexError_`` when ``version`` is not a plain version name (``../x``, ``/x``),
    when its folder or ``indexes_dir`` leads out of the data home through a symlink, when a
    file of the version links outside the version folder, or when it has no manifest.
    """
    if not _VERSION_RE.fullmatch(version):
        raise IndexError_(
            f"{version!r} is not a version name (a folder name under indexes/, never a path); "
            "refusing to load it"
        )
    root = _contained_indexes(indexes_dir)
    path = indexes_dir / version
    resolved = path.resolve()
    if path.is_symlink() or resolved.parent != root:
        raise IndexError_(
            f"version {version} in {indexes_dir} leads to {resolved}, outside the data home; "
            "only folders inside the data home are loaded as indexes"
        )
    if not (resolved / MANIFEST).is_file():
        raise IndexError_(f"no complete version {version!r} in {indexes_dir}")
    for dirpath, dirnames, filenames in os.walk(resolved, followlinks=False):
        for name in dirnames + filenames:
            entry = os.path.join(dirpath, name)
            if os.path.islink(entry):
                target = os.path.realpath(entry)
                if os.path.commonpath([target, str(resolved)]) != str(resolved):
                    raise IndexError_(
                        f"{os.path.relpath(entry, resolved)} in version {version} links to "
                        f"{target}, outside the version folder; refusing to load it"
                    )
    return resolved


def _contained_indexes(indexes_dir: Path) -> Path:
    """``indexes_dir`` resolved, checked to be the data home's own ``indexes/`` folder."""
    root = indexes_dir.resolve()
    if root != indexes_dir.parent.resolve() / indexes_dir.name:
        raise IndexError_(
            f"{indexes_dir} is a link to {root}, outside the data home; keep indexes/ inside "
            "it (point KBFLOW_HOME at the other disk instead)"
        )
    return root


def current_version(indexes_dir: Path) -> str | None:
    """The live version's name, from ``CURRENT``; None when nothing is published.

    Raises ``IndexError_`` when ``CURRENT`` is a symlink (its content could come from anywhere).
    """
    path = indexes_dir / CURRENT
    if path.is_symlink():
        raise IndexError_(f"{path} is a symlink; CURRENT must be a plain file in {indexes_dir}")
    if not path.is_file():
        return None
    with open(path, encoding="utf-8", errors="replace") as fh:
        name = fh.read(1024).strip()  # a version name is short; never read a huge file whole
    return name or None


def live_version_dir(indexes_dir: Path) -> Path:
    name = current_version(indexes_dir)
    if name is None:
        raise NoLiveVersion(
            f"no index version is published in {indexes_dir.parent}; run `kbflow nightly --source ...` first"
        )
    return version_dir(indexes_dir, name)


def _history(indexes_dir: Path) -> list[str]:
    path = indexes_dir / HISTORY
    if not path.is_file():
        return []
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


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


@dataclass
class VersionInfo:
    version: str
    live: bool
    created_at: str | None
    model_key: str | None
    entries: int | None
    passages: int | None
    status: str | None


def list_versions(indexes_dir: Path) -> list[VersionInfo]:
    """Complete versions in ``indexes_dir``: folders with a manifest, not hidden (``.building-*``
    and ``.deleting-*`` are never listed) and not symlinks (never followed out of the home)."""
    live = current_version(indexes_dir)
    out = []
    for p in sorted(indexes_dir.iterdir() if indexes_dir.exists() else []):
        if (
            p.name.startswith(".")
            or p.is_symlink()
            or not p.is_dir()
            or not (p / MANIFEST).is_file()
        ):
            continue
        m: dict[str, Any] = json.loads((p / MANIFEST).read_text(encoding="utf-8"))
        out.append(
            VersionInfo(
                version=p.name,
                live=p.name == live,
                created_at=m.get("created_at"),
                model_key=m.get("embedding", {}).get("model_key"),
                entries=m.get("counts", {}).get("entries"),
                passages=m.get("counts", {}).get("passages"),
                status=m.get("status"),
            )
        )
    return out


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
