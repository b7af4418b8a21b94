"""Which index version is live, and what a version folder says about itself.

``indexes/CURRENT`` names the live version (``kbflow.publish`` moves it); ``manifest.json`` in
each version folder records how it was built (model, settings, counts, calibration, gate).
Only folders inside ``indexes/`` are versions: ``CURRENT`` = ``../x``, a symlinked version or a
symlinked ``indexes/`` folder are refused."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbflow.errors import IndexError_, NoLiveVersion
from kbflow.store.home import DataHome, atomic_write_text

MANIFEST = "manifest.json"


def read_manifest(version_dir: Path) -> dict[str, Any]:
    path = version_dir / MANIFEST
    if not path.is_file():
        raise IndexError_(f"{version_dir} is not a complete index version (no {MANIFEST})")
    return json.loads(path.read_text(encoding="utf-8"))


def embedding_info(manifest: dict[str, Any], version_dir: Path) -> dict[str, Any]:
    """The version's ``embedding`` block with its adapter's folder resolved (``adapter.dir``),
    what ``kbflow.embed.adapter.make_version_embedder`` needs to load the version's own query
    encoder. The manifest itself records the adapter's path relative to the version."""
    info = dict(manifest.get("embedding") or {})
    adapter = info.get("adapter")
    if adapter:
        info["adapter"] = {**adapter, "dir": str(version_dir / adapter["path"])}
    return info


def update_manifest(version_dir: Path, **fields: Any) -> dict[str, Any]:
    manifest = read_manifest(version_dir)
    manifest.update(fields)
    atomic_write_text(
        version_dir / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2, default=str)
    )
    return manifest


CURRENT = "CURRENT"

HISTORY = "HISTORY"

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


def live_manifest(home: DataHome) -> dict[str, Any] | None:
    if current_version(home.indexes) is None:
        return None
    return read_manifest(live_version_dir(home.indexes))
