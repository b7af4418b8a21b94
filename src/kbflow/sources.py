"""Stage 1, pull: find an export, land an immutable copy under ``raw/``, and read it.

An export (``--source``) is one file, or a folder whose files together are one full snapshot
of the KB. Supported formats, by extension: ``.jsonl``/``.ndjson``, ``.csv``, ``.parquet``,
``.xlsx``. Hidden files (a path component starting with ``.``) and ``README*`` files are
ignored; any other file is an error, so that nothing in the export is silently skipped.

Three steps, each usable on its own:

- ``discover_export(source)``: list and hash the export's files (local path or fsspec URL).
- ``land_export(source, raw_dir)``: copy them to ``raw_dir/<snapshot_id>/`` (idempotent).
- ``read_export(root, files)``: parse them into ``RAW_ROW`` rows plus ``QUARANTINE_ROW`` rows
  for records that cannot be parsed at all.

Reading is deliberately lenient about *content* (a missing required column gives null
values, which the validate stage reports as a batch failure) and strict about *form* (a file
that cannot be decoded raises ``ExportFormatError``).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import json
import logging
import math
import os
import posixpath
import re
import secrets
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from kbflow.contracts import QUARANTINE_ROW, RAW_ROW, table_from_rows
from kbflow.errors import ContractError, ExportFormatError, SourceError
from kbflow.home import NO_SPACE

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

#: Written last into a landed snapshot folder; lists the files. Its presence means "complete".
COMPLETE_MARKER = "_COMPLETE"

#: XLSX limits, checked on the zip's central directory before openpyxl sees the file. The
#: declared sizes can be trusted because ``zipfile`` stops decompressing a member at its
#: declared size (and then fails its CRC check), so a member cannot expand past them.
XLSX_MAX_UNCOMPRESSED = 200 * 1024 * 1024
#: Real sheets compress 5-30x; a member far above this is a zip bomb, not a spreadsheet.
XLSX_MAX_RATIO = 100.0
#: Members smaller than this are not checked for ratio: tiny highly-compressible XML parts
#: (styles, empty sheets) are normal and harmless.
_XLSX_RATIO_MIN_BYTES = 1024 * 1024

#: ``raw`` of a quarantined record is cut to this many characters.
RAW_MAX_CHARS = 2_000

_CHUNK = 1024 * 1024
# The csv module's default field limit (128 KiB) is below the validate stage's
# max_answer_chars (200k); long answers must reach validation to be judged there.
_CSV_FIELD_LIMIT = 64 * 1024 * 1024

_STR_FIELDS = (
    "id",
    "title",
    "answer",
    "category",
    "status",
    "updated_at",
    "effective_from",
    "expires_at",
    "lang",
)
_LIST_FIELDS = ("similar_questions", "tags")
_KNOWN = frozenset(_STR_FIELDS + _LIST_FIELDS)
_LIST_SEP = "||"


# --------------------------------------------------------------------------------------------
# Discovery and snapshot identity


@dataclass(frozen=True)
class ExportFile:
    """One file of an export. ``name`` is its posix path relative to the source root."""

    name: str
    sha256: str
    size: int
    format: ExportFormat


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


# --------------------------------------------------------------------------------------------
# Landing


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


# --------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class ReadResult:
    """Parsed export.

    ``rows`` (RAW_ROW) and ``quarantine`` (QUARANTINE_ROW) together hold every input record
    exactly once, by ``row_id``. ``encodings`` maps each text file (JSONL, CSV) to the
    encoding it was decoded with. ``counts``: ``files``, ``records`` (row_ids given),
    ``rows``, ``quarantined``, ``blank_lines`` (skipped, no row_id); ``file_counts`` the same
    ``records``/``rows``/``quarantined`` per file.
    """

    rows: pa.Table
    quarantine: pa.Table
    encodings: dict[str, str]
    counts: dict[str, int]
    file_counts: dict[str, dict[str, int]] = field(default_factory=dict)


def read_export(
    root: Path,
    files: list[ExportFile],
    *,
    xlsx_max_uncompressed: int = XLSX_MAX_UNCOMPRESSED,
    xlsx_max_ratio: float = XLSX_MAX_RATIO,
) -> ReadResult:
    """Parse ``files`` (under ``root``) into RAW_ROW rows, in name order.

    ``row_id`` numbers every input record 0..n-1 across the files in name order; a record
    that cannot be parsed (JSONL line that is not a JSON object, CSV record with the wrong
    number of fields) consumes a row_id and goes to ``quarantine`` with expectation
    ``parseable_row``. Blank lines/rows are skipped and get no row_id. ``source_line`` is the
    1-based physical line where the record starts (CSV header = line 1; XLSX sheet row
    number; Parquet row index + 1).

    Column names match case-insensitively, surrounding whitespace ignored; the first of two
    columns with the same normalised name wins. Values become strings (integral numbers
    without ``.0``, dates ISO 8601, ``""`` becomes null); ``similar_questions``/``tags``
    accept a list, a JSON list string or ``||``-separated text. Unknown columns with a value
    go to ``metadata`` as a JSON object string (null when there are none). A missing required
    column gives nulls here; the validate stage reports it.

    Each file is read once into memory and checked against its ``sha256`` and ``size`` first,
    so the rows always come from exactly the landed bytes. Never reads outside ``root``.

    Raises ``ExportFormatError`` when a file cannot be decoded or parsed at all (not UTF-8
    JSONL, CSV in none of UTF-8/UTF-8 BOM/GB18030, unreadable Parquet, XLSX that is not a zip,
    too large or a zip bomb), ``SourceError`` when a file is missing, outside ``root`` or
    differs from its hash.
    """
    out = _Collector()
    encodings: dict[str, str] = {}
    file_counts: dict[str, dict[str, int]] = {}
    # The csv field limit is process-wide: raise it for this read only, then restore it.
    csv_limit = csv.field_size_limit(_CSV_FIELD_LIMIT)
    try:
        for f in sorted(files, key=lambda f: f.name):
            data = _read_landed(Path(root), f)
            start = out.snapshot()
            match f.format:
                case "jsonl":
                    encodings[f.name] = _read_jsonl(f.name, data, out)
                case "csv":
                    encodings[f.name] = _read_csv(f.name, data, out)
                case "parquet":
                    _read_parquet(f.name, data, out)
                case "xlsx":
                    _read_xlsx(f.name, data, out, xlsx_max_uncompressed, xlsx_max_ratio)
            file_counts[f.name] = out.delta(start)
    finally:
        csv.field_size_limit(csv_limit)

    rows = out.rows_table()
    quarantine = table_from_rows(out.quarantine, QUARANTINE_ROW)
    counts = {
        "files": len(files),
        "records": out.next_row_id,
        "rows": rows.num_rows,
        "quarantined": quarantine.num_rows,
        "blank_lines": out.blank_lines,
    }
    log.info(
        "pull: read %d files: %d records, %d rows, %d quarantined, %d blank lines skipped",
        counts["files"],
        counts["records"],
        counts["rows"],
        counts["quarantined"],
        counts["blank_lines"],
    )
    return ReadResult(rows, quarantine, encodings, counts, file_counts)


def _read_landed(root: Path, f: ExportFile) -> bytes:
    name = _safe_name(f.name, str(root))
    real_root = os.path.realpath(root)
    path = os.path.realpath(os.path.join(real_root, *name.split("/")))
    if not _is_within(path, real_root):
        raise SourceError(f"{f.name} resolves to {path}, outside {root}; refusing to read it")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise SourceError(f"cannot read {f.name} under {root}: {exc}") from exc
    if len(data) != f.size or hashlib.sha256(data).hexdigest() != f.sha256:
        raise SourceError(
            f"{f.name} under {root} does not match its recorded sha256/size; it changed "
            "after it was landed. Land the export again."
        )
    return data


class _Collector:
    """Accumulates RAW_ROW columns (column-wise, for speed) and quarantine rows."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {name: [] for name in RAW_ROW.names}
        self.quarantine: list[dict[str, Any]] = []
        self.next_row_id = 0
        self.blank_lines = 0

    def add(self, source_file: str, line: int, pairs: Iterable[tuple[str, Any]]) -> None:
        values, metadata = _build_record(pairs)
        cols = self.cols
        cols["row_id"].append(self.next_row_id)
        cols["source_file"].append(source_file)
        cols["source_line"].append(line)
        for name in _STR_FIELDS:
            cols[name].append(values.get(name))
        for name in _LIST_FIELDS:
            cols[name].append(values.get(name))
        cols["metadata"].append(metadata)
        self.next_row_id += 1

    def add_bad(
        self, source_file: str, line: int, detail: str, raw: str, entry_id: str | None = None
    ) -> None:
        self.quarantine.append(
            {
                "row_id": self.next_row_id,
                "source_file": source_file,
                "source_line": line,
                "entry_id": entry_id,
                "expectation": "parseable_row",
                "detail": detail,
                "raw": raw[:RAW_MAX_CHARS],
            }
        )
        self.next_row_id += 1

    def snapshot(self) -> tuple[int, int]:
        return self.next_row_id, len(self.quarantine)

    def delta(self, start: tuple[int, int]) -> dict[str, int]:
        records = self.next_row_id - start[0]
        bad = len(self.quarantine) - start[1]
        return {"records": records, "rows": records - bad, "quarantined": bad}

    def rows_table(self) -> pa.Table:
        try:
            return pa.Table.from_pydict(self.cols, schema=RAW_ROW)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ContractError(f"parsed rows do not fit RAW_ROW: {exc}") from exc


# --- values ---------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _canonical(key: str) -> str | None:
    norm = key.strip().lower()
    return norm if norm in _KNOWN else None


def _build_record(pairs: Iterable[tuple[str, Any]]) -> tuple[dict[str, Any], str | None]:
    values: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    for key, value in pairs:
        canon = _canonical(key)
        if canon is not None and canon not in values:
            values[canon] = _to_list(value) if canon in _LIST_FIELDS else _to_str(value)
            continue
        # Unknown column, or a second column with an already-seen normalised name.
        meta_value = _to_jsonable(value)
        if meta_value is not None:
            metadata.setdefault(key.strip() or key, meta_value)
    meta = json.dumps(metadata, ensure_ascii=False) if metadata else None
    return values, meta


def _to_str(value: Any) -> str | None:
    """One cell as a string: None/""/NaN → None; 12 and 12.0 → "12"; dates → ISO 8601."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, Decimal):
        if value.is_nan():
            return None
        if value.is_finite() and value == value.to_integral_value():
            return str(int(value))
        return format(value, "f")
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace") or None
    if isinstance(value, dict | list | tuple):
        return json.dumps(_to_jsonable(value), ensure_ascii=False)
    if hasattr(value, "isoformat"):  # pandas.Timestamp from nanosecond Parquet columns
        return str(value.isoformat())
    return str(value) or None


def _to_list(value: Any) -> list[str] | None:
    """A list cell: a list, a JSON list string, or ``a || b`` text. Empty items dropped."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        items = [s for s in (_to_str(v) for v in value) if s is not None]
        return items or None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None  # e.g. "[VIP] how do I ..." is text, not JSON
            if isinstance(parsed, list):
                return _to_list(parsed)
        items = [part.strip() for part in text.split(_LIST_SEP)]
        return [s for s in items if s] or None
    single = _to_str(value)
    return [single] if single is not None else None


def _to_jsonable(value: Any) -> Any:
    """Metadata values: leaves as strings (same result whatever the file format)."""
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_jsonable(v) for v in value]
    return _to_str(value)


def _header_name(value: Any, index: int) -> str:
    name = _to_str(value)
    return name.strip() if name and name.strip() else f"column_{index + 1}"


def _is_blank(values: Iterable[Any]) -> bool:
    """No value at all: None, blank strings, empty lists and objects."""
    return all(
        v is None
        or (isinstance(v, str) and not v.strip())
        or (isinstance(v, list | tuple | dict) and not v)
        for v in values
    )


# --- formats --------------------------------------------------------------------------------


def _read_jsonl(name: str, data: bytes, out: _Collector) -> str:
    encoding = "utf-8"
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
        encoding = "utf-8-sig"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ExportFormatError(
            f"{name}: not valid UTF-8 (line {line}); JSONL exports must be UTF-8. "
            "Re-export the file as UTF-8."
        ) from exc
    loads = json.loads
    # Split on "\n" only: str.splitlines would also break on U+2028 and friends, which are
    # legal unescaped inside JSON strings.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # what follows the final newline is not a line
    for lineno, line_text in enumerate(lines, start=1):
        if line_text.startswith("\ufeff"):
            # Exports concatenated with `cat` carry the second file's BOM mid-file.
            line_text = line_text.lstrip("\ufeff")
        if not line_text.strip():
            out.blank_lines += 1
            continue
        try:
            obj = loads(line_text)
        except ValueError as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            col = exc.colno if isinstance(exc, json.JSONDecodeError) else 0
            out.add_bad(name, lineno, f"invalid JSON: {msg} (column {col})", line_text)
            continue
        except RecursionError:
            out.add_bad(name, lineno, "invalid JSON: nested too deeply", line_text)
            continue
        if not isinstance(obj, dict):
            out.add_bad(
                name,
                lineno,
                f"expected a JSON object, found {type(obj).__name__}",
                line_text,
            )
            continue
        if _is_blank(obj.values()):
            out.blank_lines += 1  # {} or all-empty values: a blank row, as in CSV and XLSX
            continue
        if "\\u" in line_text and _LONE_SURROGATE_ESCAPE.search(line_text):
            obj = _replace_surrogates(obj)
        try:
            out.add(name, lineno, obj.items())
        except RecursionError:
            out.add_bad(name, lineno, "invalid JSON: nested too deeply", line_text)
    return encoding


#: A ``\uD800``-``\uDFFF`` escape: JSON allows them, but a lone one is not a character (it
#: cannot be encoded as UTF-8) and would break every later write of the row.
_LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_surrogates(value: Any) -> Any:
    """``value`` with every lone surrogate replaced by U+FFFD (keys and nested values too)."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    return value


def _decode_text(name: str, data: bytes) -> tuple[str, str]:
    if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        raise ExportFormatError(f"{name}: UTF-16 text is not supported; save it as UTF-8.")
    # A BOM settles it; otherwise UTF-8 first: GB18030 would also decode much UTF-8 as mojibake.
    has_bom = data.startswith(codecs.BOM_UTF8)
    candidates: tuple[str, ...] = ("utf-8-sig",) if has_bom else ("utf-8", "gb18030")
    first_error: UnicodeDecodeError | None = None
    for encoding in candidates:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            first_error = first_error or exc
            continue
        if encoding == "gb18030":
            _refuse_mixed_encodings(name, data)
            log.warning("%s is not UTF-8; decoded as GB18030", name)
        return text, encoding
    assert first_error is not None
    line = data.count(b"\n", 0, first_error.start) + 1
    raise ExportFormatError(
        f"{name}: cannot be decoded as {' or '.join(candidates)} (first bad byte on line "
        f"{line}); re-export it as UTF-8."
    ) from first_error


#: Two characters of U+0800 and above (CJK and most scripts: three UTF-8 bytes each) that
#: decode as UTF-8 on one line are evidence the line was written as UTF-8: GB18030 text
#: almost never forms valid three-byte UTF-8 sequences by chance.
_UTF8_EVIDENCE = re.compile("[\u0800-\uffff].*[\u0800-\uffff]")


def _refuse_mixed_encodings(name: str, data: bytes) -> None:
    """A file that is not UTF-8 but has UTF-8 lines with Chinese text is a mix (an edited
    export, two files concatenated). Much UTF-8 also decodes as GB18030, into mojibake, so
    the whole file is refused instead of being read as GB18030."""
    utf8_line = bad_line = None
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        if line.isascii():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            bad_line = bad_line or lineno
        else:
            if utf8_line is None and _UTF8_EVIDENCE.search(text):
                utf8_line = lineno
        if utf8_line and bad_line:
            raise ExportFormatError(
                f"{name}: mixed encodings: line {utf8_line} is UTF-8 but line {bad_line} is "
                "not; re-export the whole file as UTF-8."
            )


def _read_csv(name: str, data: bytes, out: _Collector) -> str:
    text, encoding = _decode_text(name, data)
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    id_index: int | None = None
    consumed = 0  # physical lines consumed so far; a record starts on the next one
    try:
        for record in reader:
            start, consumed = consumed + 1, reader.line_num
            if _is_blank(record):
                out.blank_lines += 1
                continue
            if header is None:
                header = [_header_name(v, i) for i, v in enumerate(record)]
                id_index = next((i for i, h in enumerate(header) if _canonical(h) == "id"), None)
                continue
            if len(record) != len(header) and consumed > start:
                # A record runs over several lines only inside a quoted field; with the wrong
                # field count, a quote was never closed and the lines after it were swallowed
                # into one field. Quarantining that one record would hide those rows.
                raise ExportFormatError(
                    f"{name}: unbalanced quote: the record starting on line {start} runs to line "
                    f"{consumed} and has {len(record)} fields instead of {len(header)}; "
                    'close the quote (a literal " inside a quoted field is written "").'
                )
            if len(record) != len(header):
                entry_id = (
                    _to_str(record[id_index])
                    if id_index is not None and id_index < len(record)
                    else None
                )
                out.add_bad(
                    name,
                    start,
                    f"expected {len(header)} fields (as in the header), found {len(record)}",
                    json.dumps(record, ensure_ascii=False),
                    entry_id,
                )
                continue
            out.add(name, start, zip(header, record, strict=True))
    except csv.Error as exc:
        raise ExportFormatError(
            f"{name}: CSV parse error at line {reader.line_num}: {exc}"
        ) from exc
    return encoding


def _read_parquet(name: str, data: bytes, out: _Collector) -> None:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ExportFormatError(f"{name}: not a readable Parquet file: {exc}") from exc
    names = [str(n) for n in table.column_names]
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    for i in range(table.num_rows):
        values = [c[i] for c in columns]
        if _is_blank(values):
            out.blank_lines += 1
            continue
        out.add(name, i + 1, zip(names, values, strict=True))


def _read_xlsx(
    name: str, data: bytes, out: _Collector, max_uncompressed: int, max_ratio: float
) -> None:
    _check_xlsx_zip(name, data, max_uncompressed, max_ratio)
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        with warnings.catch_warnings():
            # openpyxl warns about styles/extensions it ignores; irrelevant for values.
            warnings.simplefilter("ignore")
            # data_only: a formula cell gives the value Excel last computed, not its formula.
            wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
            try:
                if not wb.worksheets:
                    raise ExportFormatError(f"{name}: the workbook has no worksheet")
                ws = wb.worksheets[0]
                # Some writers record a wrong sheet size; read what is really there.
                ws.reset_dimensions()
                _read_sheet(name, ws.iter_rows(min_row=1, values_only=True), out)
            finally:
                wb.close()
    except ExportFormatError:
        raise
    except (
        InvalidFileException,
        zipfile.BadZipFile,
        KeyError,
        ValueError,
        TypeError,
        OSError,
        SyntaxError,  # xml.etree ParseError
    ) as exc:
        raise ExportFormatError(f"{name}: not a readable XLSX workbook: {exc}") from exc


def _check_xlsx_zip(name: str, data: bytes, max_uncompressed: int, max_ratio: float) -> None:
    buf = io.BytesIO(data)
    if not zipfile.is_zipfile(buf):
        raise ExportFormatError(
            f"{name}: not an XLSX file (not a zip archive; old .xls and password-protected "
            "workbooks are not supported). Save it as .xlsx or CSV."
        )
    try:
        with zipfile.ZipFile(buf) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ExportFormatError(f"{name}: not an XLSX file (broken zip: {exc})") from exc
    total = sum(m.file_size for m in members)
    if total > max_uncompressed:
        raise ExportFormatError(
            f"{name}: XLSX expands to {total} bytes, over the {max_uncompressed}-byte limit; "
            "split the export or use CSV/Parquet."
        )
    for m in members:
        if m.file_size > _XLSX_RATIO_MIN_BYTES and m.file_size > max_ratio * max(
            m.compress_size, 1
        ):
            raise ExportFormatError(
                f"{name}: XLSX member {m.filename} compresses {m.file_size / max(m.compress_size, 1):.0f}:1 "
                f"(limit {max_ratio:.0f}:1); this looks like a zip bomb, refusing to open it."
            )


def _read_sheet(name: str, rows: Iterator[tuple[Any, ...]], out: _Collector) -> None:
    header: list[str] | None = None
    for rownum, row in enumerate(rows, start=1):
        if _is_blank(row):
            out.blank_lines += 1
            continue
        if header is None:
            header = [_header_name(v, i) for i, v in enumerate(row)]
            continue
        # Cells past the header's width still carry data; keep them (in metadata).
        names = header + [_header_name(None, i) for i in range(len(header), len(row))]
        out.add(name, rownum, zip(names, row, strict=False))
