"""Reading a version without holding more than it uses (``kbflow.index.columns``), and the
files the index stage writes from what it did not read (the passages copy, the BM25 scores
computed in blocks): same values as before, less memory (measured in bench/)."""

from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kbflow.chunk.passages import chunk_entries
from kbflow.contracts import CLEAN_ENTRY, PASSAGE, table_from_rows
from kbflow.errors import IndexError_
from kbflow.index import bm25 as bm25_module
from kbflow.index.bm25 import DocTokens, score_matrix
from kbflow.index.build import build_version
from kbflow.index.columns import StringColumn, interned, read_columns, read_rows, take_rows
from kbflow.settings import Settings

from ..helpers import EN_KB

WORDS = ["退款", "订单", "物流", "发票", "", "refund 到账", "会员积分"]


def test_a_string_column_reads_like_the_list_it_replaces(tmp_path: Path) -> None:
    values = [WORDS[i % len(WORDS)] + str(i % 5) for i in range(50_000)]
    pq.write_table(pa.table({"v": values}), tmp_path / "t.parquet", row_group_size=7_000)
    plain = StringColumn(read_columns(tmp_path / "t.parquet", ["v"]).column("v"))
    shared = read_columns(tmp_path / "t.parquet", ["v"], dictionary=["v"]).column("v")
    assert isinstance(shared.combine_chunks(), pa.DictionaryArray)  # one dictionary, 8 groups
    distinct, codes = interned(pa.chunked_array([values]))
    for col in (plain, StringColumn(shared), StringColumn.of_codes(distinct, codes)):
        assert len(col) == len(values) and list(col) == values
        assert [col[0], col[7_001], col[-1]] == [values[0], values[7_001], values[-1]]
        assert col[3:9] == values[3:9] and col.take([5, 1, 49_999]) == [
            values[5], values[1], values[49_999],
        ]  # fmt: skip
        found = col.find([values[12], "absent", values[0]])
        assert found[1] is None and [values[r] for r in (found[0], found[2])] == [
            values[12], values[0],
        ]  # fmt: skip
        with pytest.raises(IndexError):
            col[len(values)]
    assert distinct == list(dict.fromkeys(values))


def test_read_rows_fills_the_rows_asked_from_a_npy_file_in_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kbflow.index.columns as columns

    monkeypatch.setattr(columns, "_ROWS_PER_READ", 7)  # many blocks, one partial at the end
    a = np.random.default_rng(0).standard_normal((100, 5)).astype(np.float32)
    np.save(tmp_path / "v.npy", a)
    rows = np.random.default_rng(1).integers(0, 100, 300)
    dest = np.random.default_rng(2).permutation(400)[:300]
    out = np.zeros((400, 5), np.float32)
    read_rows(tmp_path / "v.npy", rows, out, dest)
    assert np.array_equal(out[dest], a[rows])
    untouched = np.setdiff1d(np.arange(400), dest)
    assert not out[untouched].any()
    read_rows(tmp_path / "v.npy", np.zeros(0, np.int64), out, np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="columns"):
        read_rows(tmp_path / "v.npy", rows, np.zeros((400, 4), np.float32), dest)


def test_bm25_scores_computed_in_blocks_are_the_scores_of_one_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(3)
    texts = [
        "".join(rng.choice(list("订单物流退款发票会员积分优惠券账户"), 12)) for _ in range(3_000)
    ]
    doc = DocTokens.of(texts)
    retriever = bm25s.BM25(k1=1.5, b=1.0)
    whole = score_matrix(doc, retriever)
    monkeypatch.setattr(bm25_module, "_SCORE_BLOCK", 997)  # blocks end on passage bounds
    blocks = score_matrix(doc, retriever)
    for key in ("data", "indices", "indptr"):
        assert np.array_equal(whole[key], blocks[key]), key
    assert len(doc.ids) > 20 * 997  # many blocks
    assert whole["num_docs"] == len(texts)


def test_the_version_copies_the_passages_file_it_was_given_and_refuses_another(
    tmp_path: Path,
) -> None:
    passages = chunk_entries(table_from_rows(EN_KB, CLEAN_ENTRY), Settings().chunk)
    pq.write_table(passages, tmp_path / "passages.parquet")
    vecs = np.random.default_rng(0).standard_normal((passages.num_rows, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    manifest = {"run_id": "t", "embedding": {"model_key": "m@8"}, "counts": {}, "status": "built"}
    read = passages.drop_columns(["display"])  # what the index stage reads
    vdir = build_version(
        tmp_path / "indexes", "v1", read, vecs, manifest, Settings().index, None, None,
        passages_file=tmp_path / "passages.parquet",
    )  # fmt: skip
    assert pq.read_table(vdir / "passages.parquet").equals(passages.cast(PASSAGE))
    with pytest.raises(IndexError_, match="does not hold"):
        build_version(
            tmp_path / "indexes", "v2", read.slice(1), vecs[1:], manifest, Settings().index,
            passages_file=tmp_path / "passages.parquet",
        )  # fmt: skip
    assert not (tmp_path / "indexes" / "v2").exists()


def test_take_rows_reads_a_mapped_file_by_rows_and_an_array_by_indexing(tmp_path: Path) -> None:
    a = np.random.default_rng(4).standard_normal((5_000, 16)).astype(np.float32)
    np.save(tmp_path / "v.npy", a)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    rows = np.random.default_rng(5).integers(0, 5_000, 700)
    assert np.array_equal(take_rows(mapped, rows), a[rows])
    assert np.array_equal(take_rows(a, rows), a[rows])
    assert take_rows(mapped, np.zeros(0, np.int64)).shape == (0, 16)
