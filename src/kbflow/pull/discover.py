"""Find an export's files (a local path or any fsspec URL) and hash them.

Supported formats, by extension: ``.jsonl``/``.ndjson``, ``.csv``, ``.parquet``, ``.xlsx``.
Hidden files (a path component starting with ``.``) and ``README*`` files are ignored; any other
file is an error, so that nothing in the export is silently skipped. Symlinks that leave the
source and names that could escape a folder are refused."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, cast, get_args

from kbflow.errors import ExportFormatError, SourceError

log = logging.getLogger(__name__)


ExportFormat = Literal["jsonl", "csv", "parquet", "xlsx"]

FORMATS_BY_SUFFIX: dict[str, ExportFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".xlsx": "xlsx",
}


SUPPORTED = ", ".join(FORMATS_BY_SUFFIX)


@dataclass(frozen=True)
class ExportFile:
    """One file of an export. ``name`` is its posix path relative to the source root."""

    name: str
    sha256: str
    size: int
    format: ExportFormat

    @classmethod
    def from_landed(cls, f: Mapping[str, Any]) -> ExportFile:
        """The file as the pull stage's summary records it (``kbflow.results.LandedFile``)."""
        fmt = str(f["format"])
        if fmt not in get_args(ExportFormat):
            raise ExportFormatError(f"{f['name']}: unknown format {fmt!r} in the pull summary")
        return cls(str(f["name"]), str(f["sha256"]), int(f["size"]), cast(ExportFormat, fmt))


@dataclass(frozen=True)
class _SourceEntry:
    """A file found in the source, not yet hashed; ``open`` reads it from the source."""

    name: str
    format: ExportFormat
    open: Callable[[], IO[bytes]]


def discover_export(source: str) -> list[ExportFile]:
    """List and hash the files of the export at ``source``.

    ``source`` is a local path (file or folder) or any fsspec URL (``file://``, ``memory://``,
    ``s3://`` when s3fs is installed). Returns one ``ExportFile`` per export file, sorted by
    ``name``. Reads every file once (to hash it); writes nothing.

    Raises ``SourceError`` when the source is missing, holds no export files, contains a
    symlink that points outside the source folder, or cannot be read; ``ExportFormatError``
    (a ``SourceError``) when a file has an unsupported extension.
    """
    return [_hash_entry(entry) for entry in _list_source(source)]


def snapshot_sha256(files: Iterable[ExportFile]) -> str:
    """Full sha256 identifying a snapshot: over its sorted ``(name, sha256)`` pairs.

    Independent of file order, sizes and formats; two exports with the same file names and
    contents have the same hash wherever they were read from.
    """
    pairs = sorted((f.name, f.sha256) for f in files)
    # JSON framing keeps the encoding unambiguous whatever characters a file name holds.
    payload = json.dumps(pairs, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def snapshot_id(files: Iterable[ExportFile]) -> str:
    """Short snapshot id: the first 16 hex characters of ``snapshot_sha256(files)``."""
    return snapshot_sha256(files)[:16]


def _list_source(source: str) -> list[_SourceEntry]:
    try:
        import fsspec.core
        from fsspec.implementations.local import LocalFileSystem

        is_url = "://" in source or "::" in source
        fs, root = fsspec.core.url_to_fs(source if is_url else os.path.expanduser(source))
    except (ImportError, ValueError) as exc:
        raise SourceError(
            f"cannot open export source {source!r}: {exc}. Use a local path or an fsspec URL "
            "whose filesystem package is installed (e.g. s3fs for s3://)."
        ) from exc
    try:
        if isinstance(fs, LocalFileSystem):
            entries = _list_local(source, root)
        else:
            entries = _list_fsspec(source, fs, root)
    except OSError as exc:
        raise SourceError(f"cannot read export source {source!r}: {exc}") from exc
    if not entries:
        raise SourceError(
            f"export source {source!r} contains no export files ({SUPPORTED}); "
            "check that --source points at the export folder."
        )
    entries.sort(key=lambda e: e.name)
    return entries


def _list_local(source: str, root: str) -> list[_SourceEntry]:
    path = os.path.expanduser(root)
    if not os.path.exists(path):
        raise SourceError(
            f"export source {source!r} does not exist; check --source (a file, a folder, "
            "or an fsspec URL)."
        )
    if os.path.isfile(path):
        # The user named this file, so it is read even when it is a symlink.
        real = os.path.realpath(path)
        name = os.path.basename(path)
        return [_SourceEntry(name, _format_of(name), _local_opener(real))]

    real_root = os.path.realpath(path)
    entries: list[_SourceEntry] = []

    def fail(exc: OSError) -> None:
        raise exc

    for dirpath, dirnames, filenames in os.walk(real_root, onerror=fail, followlinks=False):
        rel_dir = os.path.relpath(dirpath, real_root)
        kept: list[str] = []
        for d in sorted(dirnames):
            if d.startswith("."):
                continue
            full = os.path.join(dirpath, d)
            rel = _rel_name(rel_dir, d)
            if os.path.islink(full):
                _check_link(full, real_root, rel, source)
                # Its files are already in the export under their real path: following the
                # link would list them twice.
                log.warning("not following symlinked folder %s inside %s", rel, source)
                continue
            kept.append(d)
        dirnames[:] = kept
        for fn in filenames:
            if _is_ignored(fn):
                continue
            full = os.path.join(dirpath, fn)
            rel = _rel_name(rel_dir, fn)
            real = _check_link(full, real_root, rel, source) if os.path.islink(full) else full
            if not os.path.isfile(real):
                raise SourceError(
                    f"{rel} in {source!r} is not a regular file (or is a broken link); "
                    "remove it from the export."
                )
            entries.append(
                _SourceEntry(_safe_name(rel, source), _format_of(rel), _local_opener(real))
            )
    return entries


def _check_link(full: str, real_root: str, rel: str, source: str) -> str:
    target = os.path.realpath(full)
    if not _is_within(target, real_root):
        raise SourceError(
            f"{rel} in {source!r} is a symlink to {target}, outside the export folder; "
            "kbflow never follows links out of the source. Copy the file into the export."
        )
    return target


def _is_within(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def _rel_name(rel_dir: str, name: str) -> str:
    return name if rel_dir == "." else posixpath.join(Path(rel_dir).as_posix(), name)


def _local_opener(real_path: str) -> Callable[[], IO[bytes]]:
    return lambda: open(real_path, "rb")  # noqa: SIM115 - the caller closes it


def _list_fsspec(source: str, fs: Any, root: str) -> list[_SourceEntry]:
    try:
        info = fs.info(root)
    except FileNotFoundError:
        raise SourceError(
            f"export source {source!r} does not exist; check --source (a file, a folder, "
            "or an fsspec URL)."
        ) from None
    if info.get("type") == "file":
        name = posixpath.basename(root.rstrip("/"))
        return [_SourceEntry(name, _format_of(name), _fsspec_opener(fs, root))]

    prefix = root.rstrip("/") + "/"
    entries: list[_SourceEntry] = []
    for path, meta in fs.find(root, withdirs=False, detail=True).items():
        if not path.startswith(prefix):
            raise SourceError(f"{path} listed by {source!r} is outside the export folder")
        rel = path[len(prefix) :]
        if any(part.startswith(".") for part in rel.split("/")) or _is_ignored(
            posixpath.basename(rel)
        ):
            continue
        if meta.get("islink"):
            raise SourceError(f"{rel} in {source!r} is a symlink; kbflow does not follow them.")
        entries.append(
            _SourceEntry(_safe_name(rel, source), _format_of(rel), _fsspec_opener(fs, path))
        )
    return entries


def _fsspec_opener(fs: Any, path: str) -> Callable[[], IO[bytes]]:
    return lambda: fs.open(path, "rb")


def _is_ignored(basename: str) -> bool:
    return basename.startswith(".") or basename.upper().startswith("README")


def _format_of(name: str) -> ExportFormat:
    fmt = FORMATS_BY_SUFFIX.get(posixpath.splitext(name)[1].lower())
    if fmt is None:
        raise ExportFormatError(
            f"{name}: unsupported file type; an export holds only {SUPPORTED} files "
            "(hidden files and README* are ignored). Remove it or convert it."
        )
    return fmt


def _safe_name(name: str, where: str) -> str:
    """Reject names that could address anything outside a root once joined to it."""
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise SourceError(f"unsafe file name {name!r} in {where!r}; rename it.")
    return name


def _hash_entry(entry: _SourceEntry) -> ExportFile:
    digest = hashlib.sha256()
    size = 0
    try:
        with entry.open() as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise SourceError(f"cannot read {entry.name}: {exc}") from exc
    return ExportFile(entry.name, digest.hexdigest(), size, entry.format)


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


_CHUNK = 1024 * 1024
