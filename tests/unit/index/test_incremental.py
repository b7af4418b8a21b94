"""Incremental versions (``kbflow.index.incremental``) answer like a full rebuild.

A synthetic KB of 10,000 entries (about 40,000 passages, HNSW with hub correction, as at scale)
is built, edited (1% of answers changed, entries deleted and added), and built again both ways:
incrementally from the first version and from scratch. Keyword scores must be identical, dense
results as close to exact search as a fresh HNSW index, fused top 10s the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from kbflow.chunk.passages import chunk_entries
from kbflow.contracts import CLEAN_ENTRY, table_from_rows
from kbflow.index.bm25 import tokenize
from kbflow.index.build import build_version
from kbflow.index.dense import BASE_KEYS, DELTA, TOMBSTONES, StoredVectors
from kbflow.index.incremental import Live, Plan, plan_reuse
from kbflow.index.version import LoadedVersion
from kbflow.settings import Settings

from ..helpers import entry

EMBEDDING = {"model": "synthetic", "model_key": "synthetic@64", "dim": 64}
CHARS = (
    "订单物流退款发票会员积分优惠券账户密码登录支付银行卡快递地址修改取消申请审核客服电话保险理赔"
)


def _word(rng: np.random.Generator) -> str:
    return "".join(rng.choice(list(CHARS), 2))


def _sentence(rng: np.random.Generator, n: int) -> str:
    return "".join(_word(rng) for _ in range(n)) + "。"


def synthetic_entries(n: int, seed: int, prefix: str = "e") -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        topic = _sentence(rng, 3)
        out.append(
            entry(
                f"{prefix}{i:05d}",
                f"如何{topic}",
                _sentence(rng, 12) + _sentence(rng, 10),
                [f"{topic}怎么办", f"请问{_sentence(rng, 2)}{topic}"],
            )
        )
    return out


class BagOfTokens:
    """Deterministic synthetic vectors: the normalised sum of one fixed random vector per BM25
    token, so texts sharing words are near (a stand-in for a model at this size)."""

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.ids: dict[str, int] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        rows, cols = [], []
        for r, t in enumerate(texts):
            for tok in tokenize(t):
                rows.append(r)
                cols.append(self.ids.setdefault(tok, len(self.ids)))
        m = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, cols)), (len(texts), len(self.ids))
        )
        table = (
            np.random.default_rng(7).standard_normal((len(self.ids), self.dim)).astype(np.float32)
        )
        v = np.asarray(m @ table, dtype=np.float32)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-6)


def chunked(
    entries: list[dict[str, Any]], settings: Settings, embed: BagOfTokens
) -> tuple[pa.Table, np.ndarray]:
    passages = chunk_entries(table_from_rows(entries, CLEAN_ENTRY), settings.chunk)
    return passages, embed(passages.column("text").to_pylist())


def build(
    folder: Path, name: str, passages: pa.Table, vectors: np.ndarray, settings: Settings, plan: Plan
) -> LoadedVersion:
    manifest = {
        "run_id": name,
        "embedding": EMBEDDING,
        "settings": {"index": settings.index.model_dump(mode="json")},
        "counts": {"passages": passages.num_rows},
    }
    return LoadedVersion(
        build_version(folder, name, passages, vectors, manifest, settings.index, None, plan)
    )


def edited(
    entries: list[dict[str, Any]], seed: int, change: int, delete: int, add: int
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = [dict(e) for e in entries]
    for i in rng.choice(len(out), change, replace=False):
        out[i]["answer"] = out[i]["answer"] + _sentence(rng, 4)
    gone = set(rng.choice(len(out), delete, replace=False).tolist())
    out = [e for i, e in enumerate(out) if i not in gone]
    return out + synthetic_entries(add, seed + 1000, prefix=f"n{seed}-")


def top_entries(v: LoadedVersion, qvec: np.ndarray, tokens: list[str], k: int = 10) -> list[str]:
    c = v.candidates(qvec, tokens, n=50)
    scores = v.fuse(c, 0.5)
    return [v.entry_ids[int(c.entries[j])] for j in np.argsort(-scores, kind="stable")[:k]]


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("incr")
    settings = Settings(index={"flat_max": 2_000, "hub_weight": 0.5})
    embed = BagOfTokens()
    e1 = synthetic_entries(10_000, seed=1)
    p1, v1 = chunked(e1, settings, embed)
    first = build(
        root / "indexes",
        "v1",
        p1,
        v1,
        settings,
        plan_reuse(None, p1, EMBEDDING, settings.index, False),
    )
    e2 = edited(e1, seed=2, change=100, delete=50, add=50)
    p2, v2 = chunked(e2, settings, embed)
    plan = plan_reuse(Live.load(first.folder), p2, EMBEDDING, settings.index, False)
    incr = build(root / "indexes", "v2", p2, v2, settings, plan)
    full = build(root / "full", "v2", p2, v2, settings, Plan())
    return {
        "root": root, "settings": settings, "embed": embed, "e2": e2, "p2": p2, "v2": v2,
        "first": first, "plan": plan, "incr": incr, "full": full,
    }  # fmt: skip


def test_the_edited_kb_reuses_the_base_and_indexes_only_what_changed(kb: dict[str, Any]) -> None:
    report, incr = kb["plan"].report, kb["incr"]
    assert report["mode"] == "incremental" and report["base_version"] == "v1"
    # 100 changed answers and 50 new entries (4 passages each) in the delta; the 50 deleted
    # entries' passages and the changed answers' old vectors are tombstones
    assert report["delta_passages"] == 100 + 50 * 4
    assert report["tombstones"] == 100 + 50 * 4
    assert report["tokens_reused"] >= kb["p2"].num_rows * 0.7  # titles are not keyword texts
    assert (incr.folder / "dense.faiss").stat().st_ino == (
        kb["first"].folder / "dense.faiss"
    ).stat().st_ino
    assert (incr.folder / BASE_KEYS).stat().st_ino == (kb["first"].folder / BASE_KEYS).stat().st_ino
    assert (incr.folder / DELTA).is_file() and (incr.folder / TOMBSTONES).is_file()
    assert incr.dense.ntotal == incr.n_passages == kb["full"].n_passages
    assert incr.manifest["index"]["segments"] == {
        "base_version": "v1", "delta_passages": 300, "tombstones": 300,
    }  # fmt: skip


def test_keyword_scores_are_identical_to_a_full_rebuild(kb: dict[str, Any]) -> None:
    incr, full, p2 = kb["incr"], kb["full"], kb["p2"]
    texts = p2.column("text").to_pylist()
    for r in np.random.default_rng(3).choice(len(texts), 200, replace=False):
        tokens = tokenize(texts[r])
        assert np.array_equal(incr.bm25.scores(tokens), full.bm25.scores(tokens))


def test_dense_search_is_as_exact_as_a_fresh_index_and_never_returns_a_deleted_passage(
    kb: dict[str, Any],
) -> None:
    incr, full, v2 = kb["incr"], kb["full"], kb["v2"]
    rng = np.random.default_rng(4)
    queries = v2[rng.choice(len(v2), 300, replace=False)] + rng.normal(0, 0.05, (300, 64)).astype(
        np.float32
    )
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = np.argsort(-(queries @ v2.T), axis=1)[:, :10]
    ids = np.asarray(kb["p2"].column("faiss_id").to_pylist())

    def recall(v: LoadedVersion) -> float:
        _, got = v.dense.search(queries, 10)
        return float(
            np.mean([len(set(g) & set(ids[e])) / 10 for g, e in zip(got, exact, strict=True)])
        )

    r_incr, r_full = recall(incr), recall(full)
    assert r_incr >= r_full - 0.01 and r_incr >= 0.95, (r_incr, r_full)
    # every id returned is one of the version's passages (no tombstone, nothing deleted)
    _, got = incr.dense.search(queries, 50)
    assert set(got.ravel().tolist()) <= set(ids.tolist())


def test_fused_top_10_matches_a_full_rebuild(kb: dict[str, Any]) -> None:
    incr, full, p2, v2 = kb["incr"], kb["full"], kb["p2"], kb["v2"]
    texts, kinds = p2.column("text").to_pylist(), p2.column("kind").to_pylist()
    rows = [r for r in range(len(texts)) if kinds[r] == "question"]
    same_top1 = overlap = 0.0
    picked = np.random.default_rng(5).choice(rows, 200, replace=False)
    for r in picked:
        tokens = tokenize(texts[r])
        a, b = top_entries(incr, v2[r], tokens), top_entries(full, v2[r], tokens)
        same_top1 += a[0] == b[0]
        overlap += len(set(a) & set(b)) / 10
    assert same_top1 / len(picked) >= 0.98 and overlap / len(picked) >= 0.95, (same_top1, overlap)
    hub_gap = np.abs(incr.hub - full.hub)  # base passages keep the base's hub scores
    assert float(hub_gap.mean()) < 0.01


def test_a_second_increment_stays_one_base_and_a_large_change_merges(kb: dict[str, Any]) -> None:
    settings, embed, root = kb["settings"], kb["embed"], kb["root"]
    e3 = edited(kb["e2"], seed=3, change=100, delete=0, add=20)
    p3, v3 = chunked(e3, settings, embed)
    plan = plan_reuse(Live.load(kb["incr"].folder), p3, EMBEDDING, settings.index, False)
    assert plan.report["mode"] == "incremental" and plan.report["base_version"] == "v1"
    # yesterday's delta is carried again, on top of today's changes
    assert plan.report["delta_passages"] >= 300 + 100 + 20 * 4 - 5
    third = build(root / "indexes", "v3", p3, v3, settings, plan)
    assert third.dense.ntotal == third.n_passages
    assert (third.folder / "dense.faiss").stat().st_ino == (
        kb["first"].folder / "dense.faiss"
    ).stat().st_ino
    e4 = edited(e3, seed=4, change=3_000, delete=0, add=0)
    p4, _ = chunked(e4, settings, embed)
    merged = plan_reuse(Live.load(third.folder), p4, EMBEDDING, settings.index, False)
    assert merged.dense is None and "merged into a new base" in merged.report["reason"]
    assert merged.tokens is not None  # tokens are reused even by a full rebuild


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"adapter": True}, "adapter"),
        ({"embedding": {**EMBEDDING, "model_key": "other@64"}}, "the model changed"),
        ({"settings": {"hub_neighbors": 10}}, "the index settings changed"),
        ({"settings": {"incremental": False}}, "a full rebuild was asked for"),
        ({"passages": 1_000}, "the index kind changes"),  # Flat below index.flat_max
    ],
)
def test_what_forces_a_full_rebuild(kb: dict[str, Any], change: dict[str, Any], why: str) -> None:
    base = kb["settings"].index.model_dump()
    settings = type(kb["settings"].index)(**{**base, **change.get("settings", {})})
    plan = plan_reuse(
        Live.load(kb["incr"].folder),
        kb["p2"].slice(0, change.get("passages", kb["p2"].num_rows)),
        change.get("embedding", EMBEDDING),
        settings,
        change.get("adapter", False),
    )
    assert plan.dense is None and why in plan.report["reason"]


def test_a_loaded_version_reads_its_vectors_from_its_segments_as_vectors_npy_holds_them(
    kb: dict[str, Any],
) -> None:
    """The base's HNSW storage and the delta's Flat storage are read in place instead of
    mapping vectors.npy beside them: the same floats, row by row, with tombstoned base vectors
    never read (the delta holds the changed passages' new vectors)."""
    for v in (kb["incr"], kb["full"], kb["first"]):
        assert isinstance(v.vectors, StoredVectors)
        on_disk = np.load(v.folder / "vectors.npy")
        rows = np.random.default_rng(6).permutation(len(on_disk))
        assert v.vectors.shape == on_disk.shape
        assert np.array_equal(v.vectors[rows], on_disk[rows])
        assert np.array_equal(v.vectors[-1], on_disk[-1])
        assert np.array_equal(v.vectors[10:20], on_disk[10:20])
    assert kb["incr"].dense.delta is not None and len(kb["incr"].dense.tombstones)


def test_a_loaded_version_holds_its_passage_columns_as_the_file_does(kb: dict[str, Any]) -> None:
    v = kb["incr"]
    table = pq.read_table(v.folder / "passages.parquet")
    for name, col in (
        ("passage_id", v.passage_ids),
        ("entry_id", v.entry_of_row),
        ("title", v.titles),
        ("text", v.texts),
        ("display", v.display),
        ("kind", v.kinds),
    ):
        values = table.column(name).to_pylist()
        assert list(col) == values, name
        assert [col[i] for i in (0, 7, len(values) - 1)] == [values[i] for i in (0, 7, -1)]
    assert v.entry_ids == list(dict.fromkeys(table.column("entry_id").to_pylist()))
