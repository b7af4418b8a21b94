"""Publish stage: the ``indexes/CURRENT`` pointer, version listing, rollback and pruning.

``CURRENT`` holds one version name. It is replaced atomically (temp file, fsync,
``os.replace``), so a reader sees the old or the new version, never a mix. Only complete
folders directly inside ``indexes/`` (with a manifest) can become live.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbflow.errors import IndexError_, NoLiveVersion
from kbflow.home import atomic_write_text
from kbflow.index import MANIFEST, read_manifest

log = logging.getLogger(__name__)

CURRENT = "CURRENT"
HISTORY = "HISTORY"
_VERSION_RE = re.compile(r"^v[0-9A-Za-z._-]{1,120}$")


def version_dir(indexes_dir: Path, version: str) -> Path:
    """The folder of ``version``, refusing names that would leave ``indexes_dir``."""
    if not _VERSION_RE.match(version):
        raise IndexError_(f"{version!r} is not a version name")
    path = (indexes_dir / version).resolve()
    if path.parent != indexes_dir.resolve() or not (path / MANIFEST).is_file():
        raise IndexError_(f"no complete version {version!r} in {indexes_dir}")
    return path


def current_version(indexes_dir: Path) -> str | None:
    path = indexes_dir / CURRENT
    if not path.is_file():
        return None
    name = path.read_text(encoding="utf-8").strip()
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


def publish_version(indexes_dir: Path, version: str, keep: int) -> str | None:
    """Make ``version`` live; returns the previously live version. Keeps the last ``keep``."""
    version_dir(indexes_dir, version)
    previous = current_version(indexes_dir)
    history = [v for v in _history(indexes_dir) if v != version] + [version]
    atomic_write_text(indexes_dir / HISTORY, "\n".join(history) + "\n")
    atomic_write_text(indexes_dir / CURRENT, version + "\n")
    log.info("publish: %s is live (was %s)", version, previous)
    prune_versions(indexes_dir, keep)
    return previous


def rollback(indexes_dir: Path, target: str | None = None) -> tuple[str, str]:
    """Go back to ``target`` or to the version published before the live one.

    Returns (new live, old live). The rolled-back version stays on disk.
    """
    live = current_version(indexes_dir)
    if live is None:
        raise NoLiveVersion("nothing to roll back: no version is live")
    history = _history(indexes_dir)
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
    atomic_write_text(indexes_dir / HISTORY, "\n".join(new_history) + "\n")
    atomic_write_text(indexes_dir / CURRENT, target + "\n")
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
    live = current_version(indexes_dir)
    out = []
    for p in sorted(indexes_dir.iterdir() if indexes_dir.exists() else []):
        if not p.is_dir() or p.name.startswith(".") or not (p / MANIFEST).is_file():
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


def prune_versions(indexes_dir: Path, keep: int) -> list[str]:
    """Delete all but the ``keep`` most recently published versions (never the live one)."""
    live = current_version(indexes_dir)
    history = _history(indexes_dir)
    keep_set = set(history[-keep:]) | ({live} if live else set())
    removed = []
    for info in list_versions(indexes_dir):
        if info.version in keep_set:
            continue
        if (
            info.version in history
            or read_manifest(indexes_dir / info.version).get("status") == "blocked"
        ):
            shutil.rmtree(indexes_dir / info.version)
            removed.append(info.version)
    if removed:
        atomic_write_text(
            indexes_dir / HISTORY, "\n".join(v for v in history if v not in removed) + "\n"
        )
        log.info("publish: pruned %s", ", ".join(removed))
    return removed
