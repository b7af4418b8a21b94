"""Reading a version's files without holding more than what is used.

String columns of a loaded version kept in Arrow memory instead of Python lists.

Half a million passages as six Python lists of ``str`` took ~540 MB at 100k entries, on top of
the Arrow table they came from (and the allocator kept most of that after it was freed). An
Arrow string array holds the same text in one buffer; a column whose values repeat (an entry's
answer shown for each of its passages, its title) is read as a dictionary, each distinct value
once. ``StringColumn`` reads like the list it replaces: ``col[i]``, ``len``, iteration, slices.

Rows of a ``vectors.npy`` read with plain file reads (``read_rows``), not mapped: a mapped
file's touched pages count in the process's RSS.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

_BATCH = 8192


class StringColumn(Sequence[str]):
    """A read-only sequence of ``str`` over an Arrow string or dictionary array."""

    def __init__(self, values: pa.Array | pa.ChunkedArray) -> None:
        arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        self._listed: list[str] | None = None
        if isinstance(arr, pa.DictionaryArray):
            self._values: pa.Array = arr.dictionary
            self._index: np.ndarray | None = arr.indices.to_numpy(zero_copy_only=False)
        else:
            self._values = arr
            self._index = None
        self._n = len(arr)

    @classmethod
    def of_codes(cls, distinct: list[str], index: np.ndarray) -> StringColumn:
        """Row ``i`` is ``distinct[index[i]]`` (``interned``'s result)."""
        col = cls(pa.array([], pa.string()))
        col._listed, col._index, col._n = distinct, index, len(index)
        return col

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        j = int(i)
        if j < 0:
            j += self._n
        if not 0 <= j < self._n:
            raise IndexError(f"row {i} out of range ({self._n} rows)")
        if self._index is not None:
            j = int(self._index[j])
        if self._listed is not None:
            return self._listed[j]
        value: str = self._values[j].as_py()
        return value

    def __iter__(self) -> Iterator[str]:
        if self._index is None:
            for lo in range(0, self._n, _BATCH):
                yield from self._values.slice(lo, _BATCH).to_pylist()
            return
        # each value once, shared by the rows that repeat it
        distinct = self._listed if self._listed is not None else self._values.to_pylist()
        for j in self._index.tolist():
            yield distinct[j]

    def find(self, values: Sequence[str]) -> list[int | None]:
        """For each of ``values``, a row holding it (None where none does)."""
        if self._index is None:
            got = pc.index_in(pa.array(list(values), pa.string()), value_set=self._values)
            return [None if r is None else int(r) for r in got.to_pylist()]
        row_of = {v: i for i, v in enumerate(self)}
        return [row_of.get(v) for v in values]

    def take(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """The values of ``rows``, in that order."""
        return [self[int(r)] for r in rows]


def read_columns(path: Path, columns: Sequence[str], dictionary: Sequence[str] = ()) -> pa.Table:
    """``columns`` of a Parquet file, those in ``dictionary`` read as dictionary arrays (a value
    repeated over many rows is held once), then the allocator's freed pages returned to the
    system: decoding half a million rows leaves several hundred MB behind otherwise."""
    table = pq.read_table(path, columns=list(columns), read_dictionary=list(dictionary))
    if dictionary:
        table = table.unify_dictionaries()  # one dictionary over every row group
    pa.default_memory_pool().release_unused()
    return table


def interned(values: pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    """A low-cardinality string column as (distinct values in order of first appearance, the
    row's position in them)."""
    enc = values.combine_chunks().dictionary_encode()
    return enc.dictionary.to_pylist(), enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)


_ROWS_PER_READ = 32_768


def _npy_header(fh: BinaryIO, path: Path) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """(shape, fortran order, dtype) of the ``.npy`` file open as ``fh``, left at its data;
    an array of Python objects is refused (never unpickled, as ``np.load(allow_pickle=False)``)."""
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = header(fh)
    if dtype.hasobject:
        raise ValueError(f"{path} holds Python objects (allow_pickle is off), not numbers")
    return shape, fortran, dtype


def read_rows(path: Path, rows: np.ndarray, out: np.ndarray, dest: np.ndarray) -> None:
    """``out[dest[i]] = file[rows[i]]`` for a 2-D ``.npy`` file, read block by block with plain
    file reads: a memory-mapped file's touched pages count in the process's RSS (the live
    version's 774 MB at 100k entries, on top of the new version's vectors)."""
    with open(path, "rb") as fh:
        shape, fortran, dtype = _npy_header(fh, path)
        if fortran or len(shape) != 2 or shape[1] != out.shape[1]:
            raise ValueError(f"{path} is not a C-ordered 2-D array of {out.shape[1]} columns")
        if not len(rows):
            return
        start, width = fh.tell(), shape[1]
        order = np.argsort(rows, kind="stable")
        block = rows[order] // _ROWS_PER_READ
        bounds = np.flatnonzero(np.r_[True, block[1:] != block[:-1], True])
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            lo = int(block[a]) * _ROWS_PER_READ
            hi = min(lo + _ROWS_PER_READ, shape[0])
            fh.seek(start + lo * width * dtype.itemsize)
            chunk = np.fromfile(fh, dtype=dtype, count=(hi - lo) * width).reshape(-1, width)
            out[dest[order[a:b]]] = chunk[rows[order[a:b]] - lo]


def take_rows(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``vectors[rows]``; from a memory-mapped ``.npy`` file with plain reads (``read_rows``):
    the kernel maps 64 KB around each page a mapping reads, so 11,000 rows spread over a 774 MB
    file mapped all of it into the process's RSS."""
    rows = np.asarray(rows, dtype=np.int64)
    if isinstance(vectors, np.memmap) and vectors.filename and vectors.ndim == 2:
        out = np.empty((len(rows), vectors.shape[1]), dtype=vectors.dtype)
        read_rows(Path(vectors.filename), rows, out, np.arange(len(rows)))
        return out
    return np.asarray(vectors[rows])


class NpyRows:
    """A 1-D ``.npy`` file read by slices with plain reads (``rows[lo:hi]``), for a few rows of
    a large array: a version's saved BM25 tokens, of which the gate reads the passages it asks
    about (265 MB at 100k entries, loaded whole before)."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as fh:
            shape, _, dtype = _npy_header(fh, path)
            self._start = fh.tell()
        if len(shape) != 1:
            raise ValueError(f"{path} is not a 1-D array")
        self.path, self.dtype, self._n = path, dtype, int(shape[0])

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, rows: slice) -> np.ndarray:
        lo, hi, step = rows.indices(self._n)
        if step != 1:
            raise IndexError("only contiguous slices are read")
        size = self.dtype.itemsize
        with open(self.path, "rb") as fh:
            fh.seek(self._start + lo * size)
            return np.fromfile(fh, dtype=self.dtype, count=max(hi - lo, 0))
