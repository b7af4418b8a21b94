"""Read a landed export into ``RAW_ROW`` rows, and ``QUARANTINE_ROW`` rows for records that cannot
be parsed at all.

Reading is deliberately lenient about *content* (a missing required column gives null values,
which the validate stage reports as a batch failure) and strict about *form* (a file that cannot
be decoded raises ``ExportFormatError``). CSV comes in UTF-8, UTF-8 with BOM or GB18030
(detected); XLSX zip bombs and non-zip files are refused."""

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
import re
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from kbflow.contracts import (
    EXPORT_FIELDS,
    EXPORT_LIST_FIELDS,
    QUARANTINE_ROW,
    RAW_ROW,
    table_from_rows,
)
from kbflow.errors import ContractError, ExportFormatError, SourceError
from kbflow.pull.discover import ExportFile, _is_within, _safe_name

log = logging.getLogger(__name__)


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


# The csv module's default field limit (128 KiB) is below the validate stage's
# max_answer_chars (200k); long answers must reach validation to be judged there.
_CSV_FIELD_LIMIT = 64 * 1024 * 1024


_STR_FIELDS = tuple(f for f in EXPORT_FIELDS if f not in EXPORT_LIST_FIELDS)
_LIST_FIELDS = EXPORT_LIST_FIELDS


_KNOWN = frozenset(_STR_FIELDS + _LIST_FIELDS)


_LIST_SEP = "||"


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


#: Parsed rows are moved from Python lists into Arrow every this many rows: a million-row export
#: held as Python objects took ~3 GB more than the same rows in Arrow.
FLUSH_ROWS = 50_000


class _Collector:
    """Accumulates RAW_ROW columns (column-wise, for speed; in Arrow batches of ``FLUSH_ROWS``)
    and quarantine rows."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {name: [] for name in RAW_ROW.names}
        self.batches: list[pa.Table] = []
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
        if len(cols["row_id"]) >= FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        try:
            batch = pa.Table.from_pydict(self.cols, schema=RAW_ROW)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ContractError(f"parsed rows do not fit RAW_ROW: {exc}") from exc
        self.batches.append(batch)
        self.cols = {name: [] for name in RAW_ROW.names}

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
        self._flush()
        return pa.concat_tables(self.batches)


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
            if type(value) is str and value:  # most cells: nothing to convert
                values[canon] = _to_list(value) if canon in _LIST_FIELDS else value
            else:
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
        if all(type(v) is str and v for v in value):  # most lists: non-empty strings
            return list(value) or None
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
