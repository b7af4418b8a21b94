"""One pyarrow schema per stage boundary.

Writers pass the schema explicitly (``write_table``); readers check it (``read_table``) and
fail loudly with ``ContractError`` instead of letting an inferred schema drift.

Row outcomes: every input row ends in exactly one of ``OUTCOMES``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from kbflow.errors import ContractError

OUTCOMES = ("indexed", "duplicate", "stale", "unpublished", "quarantined")


_str = pa.string()


_strs = pa.list_(pa.string())

#: The columns of the export format, in order (README: Export format): the one list of them.
#: ``EXPORT_LIST_FIELDS`` hold several values (a list in JSONL/Parquet, ``||``-separated in
#: CSV/XLSX); every other column of an export is kept as ``metadata``.
EXPORT_FIELDS = (
    "id",
    "title",
    "answer",
    "similar_questions",
    "category",
    "tags",
    "status",
    "updated_at",
    "effective_from",
    "expires_at",
    "lang",
)
EXPORT_LIST_FIELDS = ("similar_questions", "tags")


def _export_columns(id_name: str) -> list[tuple[str, pa.DataType]]:
    return [
        (id_name if f == "id" else f, _strs if f in EXPORT_LIST_FIELDS else _str)
        for f in EXPORT_FIELDS
    ]


#: One parsed input row. ``row_id`` is the row's ordinal in the snapshot (0..n-1, stable for
#: a given export); ``source_file``/``source_line`` say where it came from; unknown columns
#: go to ``metadata`` as a JSON object string.
RAW_ROW = pa.schema(
    [
        ("row_id", pa.int64()),
        ("source_file", _str),
        ("source_line", pa.int64()),
        *_export_columns("id"),
        ("metadata", _str),
    ]
)


#: A row that could not be used, with the check that failed. ``raw`` is the row as JSON.
QUARANTINE_ROW = pa.schema(
    [
        ("row_id", pa.int64()),
        ("source_file", _str),
        ("source_line", pa.int64()),
        ("entry_id", _str),
        ("expectation", _str),
        ("detail", _str),
        ("raw", _str),
    ]
)


#: A normalised, deduplicated KB entry. ``row_id`` is the canonical row's input row;
#: ``merged_ids`` the entry ids merged into it as duplicates (their rows are in DEDUP_MERGE).
CLEAN_ENTRY = pa.schema(
    [
        *_export_columns("entry_id"),
        ("metadata", _str),
        ("content_hash", _str),
        ("row_id", pa.int64()),
        ("merged_ids", _strs),
    ]
)


#: One accepted review change in one run's overlay (``kbflow.chunk.overlay``).
OVERLAY_ROW = pa.schema(
    [
        ("suggestion_id", _str),
        ("entry_id", _str),
        ("text", _str),
        ("outcome", _str),  # applied | retired | dropped
        ("applied_to", _str),
    ]
)


#: One recorded merge: ``merged_id`` was folded into ``canonical_id``.
DEDUP_MERGE = pa.schema(
    [
        ("kind", _str),  # exact | near | id
        ("canonical_id", _str),
        ("merged_id", _str),
        ("row_id", pa.int64()),
        ("similarity", pa.float64()),
        ("canonical_title", _str),
        ("merged_title", _str),
    ]
)


#: Final outcome of every input row; exactly one line per ``row_id``.
ROW_OUTCOME = pa.schema(
    [
        ("row_id", pa.int64()),
        ("entry_id", _str),
        ("outcome", _str),
        ("reason", _str),
        ("detail", _str),
    ]
)


#: An entry that is not published because it expired (or is not yet effective).
STALE_ENTRY = pa.schema(
    [
        ("entry_id", _str),
        ("title", _str),
        ("reason", _str),  # expires_at | effective_from | date_phrase
        ("evidence", _str),
        ("stale_since", _str),
    ]
)


#: A retrievable unit. ``passage_id`` = ``entry_id:ordinal``; ``text`` is what is embedded and
#: BM25-indexed (with the heading prefix); ``display`` is what search shows.
PASSAGE = pa.schema(
    [
        ("passage_id", _str),
        ("faiss_id", pa.int64()),
        ("entry_id", _str),
        ("ordinal", pa.int32()),
        ("kind", _str),  # answer | question | section | title (dense only)
        ("title", _str),
        ("heading_path", _str),
        ("text", _str),
        ("display", _str),
        ("text_hash", _str),
    ]
)


#: What a version's dense base segment (``dense.faiss``) holds: one row per vector, the
#: passage's FAISS id and text hash (``kbflow.index.incremental``).
DENSE_BASE_KEY = pa.schema([("faiss_id", pa.int64()), ("text_hash", _str)])


#: A review-stage pair of different entries whose titles/similar questions mean the same
#: (``kbflow.review.semantic``). ``matched_*``: the passage id of the matching similar question, or
#: ``<entry_id>:title``; ``text_*`` its text. Rows are ordered newest first.
REVIEW_SEMANTIC_DUPLICATE = pa.schema(
    [
        ("version", _str),
        ("run_id", _str),
        ("model_key", _str),
        ("entry_a", _str),
        ("entry_b", _str),
        ("title_a", _str),
        ("title_b", _str),
        ("score", pa.float64()),
        ("threshold", pa.float64()),
        ("matched_a", _str),
        ("matched_b", _str),
        ("text_a", _str),
        ("text_b", _str),
        ("updated_at_a", _str),
        ("updated_at_b", _str),
        ("newest_updated_at", _str),
        ("has_contradiction", pa.bool_()),
    ]
)


#: What the review stage compared of each entry (``kbflow.review.incremental``): sha256 of its
#: title and similar questions (their text hashes in order), of its answer, and whether a pair
#: of it was left out as a MinHash merge. The next version's review reuses the pairs of
#: entries whose keys did not change.
REVIEW_ENTRY = pa.schema(
    [
        ("entry_id", _str),
        ("questions", _str),
        ("answer", _str),
        ("merged", pa.bool_()),
    ]
)


#: A fact two near-duplicate answers state with different values (``kbflow.review.facts``).
#: ``source``: semantic | minhash_near | minhash_exact; for a merge ``entry_a`` is the canonical
#: entry and ``entry_b`` the merged one, and ``note`` says what the merge hid.
REVIEW_CONTRADICTION = pa.schema(
    [
        ("version", _str),
        ("run_id", _str),
        ("source", _str),
        ("entry_a", _str),
        ("entry_b", _str),
        ("title_a", _str),
        ("title_b", _str),
        ("similarity", pa.float64()),
        ("fact_kind", _str),  # duration | amount | percent | date | phone | url
        ("unit", _str),
        ("topic", _str),
        ("value_a", _str),
        ("value_b", _str),
        ("normalized_a", _str),
        ("normalized_b", _str),
        ("evidence_a", _str),
        ("evidence_b", _str),
        ("note", _str),
    ]
)


def embedding_schema(dim: int) -> pa.Schema:
    """Schema of an embedding cache shard: text hash to a fixed-size float32 vector."""
    return pa.schema(
        [("text_hash", _str), ("vector", pa.list_(pa.float32(), dim))],
        metadata={"dim": str(dim)},
    )


def empty_table(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


def table_from_rows(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a table from dicts, with the schema enforced (missing keys become null)."""
    if not rows:
        return schema.empty_table()
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    try:
        return pa.Table.from_pydict(cols, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ContractError(f"rows do not fit schema: {exc}") from exc


#: Rows per piece in ``take_chunked``: 65,536 values stay far below Arrow's 2 GiB per string array.
TAKE_ROWS = 65_536


def take_chunked(
    values: pa.Array | pa.ChunkedArray, indices: list[int] | pa.Array, type: pa.DataType
) -> pa.ChunkedArray:
    """``values.take(indices)`` as a chunked array of ``type``, taken ``TAKE_ROWS`` at a time.

    One ``take`` builds one array, and a string array holds at most 2 GiB: a million entries'
    answers overflow it ("Take operation overflowed binary array capacity"). ``values`` may be
    ``large_string``; each piece is cast to ``type``."""
    idx = indices if isinstance(indices, pa.Array) else pa.array(indices, type=pa.int64())
    pieces = [
        values.take(idx.slice(lo, TAKE_ROWS)).cast(type) for lo in range(0, len(idx), TAKE_ROWS)
    ]
    chunks = [c for piece in pieces for c in getattr(piece, "chunks", [piece])]
    return pa.chunked_array(chunks, type=type)


def _conform(table: pa.Table, schema: pa.Schema, path: Path) -> pa.Table:
    """``table`` with exactly ``schema``'s columns and types, or ``ContractError``."""
    if table.schema.equals(schema, check_metadata=False):
        return table
    try:
        return table.select(schema.names).cast(schema)
    except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        raise ContractError(f"{path.name}: table does not match schema: {exc}") from exc


def write_table(table: pa.Table, path: Path, schema: pa.Schema) -> Path:
    """Write ``table`` to ``path`` as Parquet with ``schema``, atomically (temp + rename)."""
    table = _conform(table, schema, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    return path


class TableWriter:
    """``write_table`` a piece at a time: Parquet with ``schema``, atomically (temp + rename
    when the ``with`` block ends without an error; the temp file removed when it raises).

    For outputs too large to hold whole (four million passages at a million entries)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self.rows = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self._writer: pq.ParquetWriter | None = None
        # Arrow encodes and compresses without the GIL: a piece is written on a second thread
        # while the caller builds the next (one piece in flight, so memory stays bounded).
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending: Future[None] | None = None

    def __enter__(self) -> TableWriter:
        self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")
        return self

    def write(self, table: pa.Table) -> None:
        assert self._writer is not None, "use TableWriter in a with block"
        table = _conform(table, self.schema, self.path)
        if self._pending is not None:
            self._pending.result()  # raises what the previous write raised
        self._pending = self._pool.submit(self._writer.write_table, table)
        self.rows += table.num_rows

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self._writer is not None
        failed = exc_type is not None
        try:
            if self._pending is not None and not failed:
                self._pending.result()  # the last write's error, if any, fails the file too
        except BaseException:
            failed = True
            raise
        finally:
            self._pool.shutdown()  # waits for a write in flight
            self._writer.close()
            if failed:
                self._tmp.unlink(missing_ok=True)
            else:
                os.replace(self._tmp, self.path)


def read_table(path: Path, schema: pa.Schema, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a Parquet stage file and check it against ``schema`` (only ``columns`` of it, when
    given: a stage that needs two columns of half a million passages reads those, 20x faster)."""
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    try:
        table = pq.read_table(path, columns=list(columns) if columns is not None else None)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ContractError(f"cannot read stage file {path}: {exc}") from exc
    if not table.schema.equals(schema, check_metadata=False):
        raise ContractError(
            f"{path} does not match its contract.\nexpected: {schema}\nfound: {table.schema}"
        )
    return table


# The search and click log (logs.duckdb tables and Parquet log segments); one schema per
# table, the column order is the table's (sql/schema/create_log_tables.sql).
SEARCH_EVENT = pa.schema(
    [
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("session_id", pa.string()),
        pa.field("user_id", pa.string()),
        pa.field("query", pa.string(), nullable=False),
        pa.field("version", pa.string()),
        pa.field("result_ids", pa.list_(pa.string())),
        pa.field("result_scores", pa.list_(pa.float64())),
        pa.field("top1_score", pa.float64()),
        pa.field("latency_ms", pa.float64()),
        pa.field("fallback_level", pa.int32(), nullable=False),
        pa.field("handoff", pa.bool_(), nullable=False),
        pa.field("threshold", pa.float64()),
    ]
)


CLICK_EVENT = pa.schema(
    [
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("session_id", pa.string()),
        pa.field("user_id", pa.string()),
        pa.field("entry_id", pa.string(), nullable=False),
        pa.field("position", pa.int32()),
    ]
)
