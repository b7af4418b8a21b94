"""The keyword index built from saved tokens (``kbflow.index.bm25``): the scores bm25s itself
computes, and a version built from the live version's tokens scores like one built from
scratch."""

from __future__ import annotations

import json
from pathlib import Path

import bm25s
import numpy as np
import pytest

from kbflow.index.bm25 import EMPTY_TOKEN, Bm25Index, DocTokens, tokenize

from ...conftest import EXAMPLES


def sample_texts() -> list[str]:
    out = []
    for line in (EXAMPLES / "kb_zh" / "export" / "faq.jsonl").read_text("utf-8").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            out += [str(obj.get("title", "")), str(obj.get("answer", ""))]
    return out + ["", "Refund of an order, refund rules", "？？"]


def reference(texts: list[str], k1: float, b: float) -> tuple[bm25s.BM25, dict[str, int]]:
    """bm25s's own index of the same tokens."""
    vocab: dict[str, int] = {}
    corpus = [
        [vocab.setdefault(t, len(vocab)) for t in tokenize(x) or [EMPTY_TOKEN]] for x in texts
    ]
    r = bm25s.BM25(k1=k1, b=b)
    r.index((corpus, vocab), show_progress=False)
    return r, vocab


def test_scores_are_bm25s_scores() -> None:
    texts = sample_texts()
    mine = Bm25Index.build(texts, 1.5, 1.0)
    ref, vocab = reference(texts, 1.5, 1.0)
    # one token: the matrix column itself, float for float
    for token in list(vocab)[:300]:
        want = np.asarray(ref.get_scores_from_ids([vocab[token]]), dtype=np.float32)
        assert np.array_equal(mine.scores([token]), want), token
    # whole queries: the same sums (bm25s adds in float32, we in float64)
    for q in texts[:60] + ["我单子咋还没到", "refund rules"]:
        toks = tokenize(q)
        ids = [vocab[t] for t in toks if t in vocab]
        want = np.asarray(ref.get_scores_from_ids(ids), np.float32) if ids else 0.0
        assert np.allclose(mine.scores(toks), want, atol=1e-5, rtol=1e-6), q


@pytest.mark.parametrize("copy_rows", [32_768, 7])  # one block; many, cutting reused runs
def test_tokens_reused_from_a_saved_version_score_like_a_fresh_build(
    tmp_path: Path, copy_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kbflow.index.bm25 as bm25_module

    monkeypatch.setattr(bm25_module, "_COPY_ROWS", copy_rows)
    texts = sample_texts()
    first = Bm25Index.build(texts, 1.5, 1.0)
    first.save(tmp_path)
    prior = DocTokens.load(tmp_path)
    assert prior is not None and len(prior) == len(texts)
    # the next version: reversed, one text changed, one added, one gone
    new = texts[::-1][1:] + ["新品保修一年，非人为损坏免费维修。"]
    new[5] = new[5] + "（已更新）"
    rows = [len(texts) - 2 - i for i in range(len(texts) - 1)] + [-1]
    rows[5] = -1
    again = Bm25Index.build(new, 1.5, 1.0, prior, rows)
    fresh = Bm25Index.build(new, 1.5, 1.0)
    assert again.doc is not None and fresh.doc is not None
    assert sorted(again.doc.vocab) == sorted(fresh.doc.vocab)  # tokens of the gone text dropped
    for q in new[:80] + ["新品坏了能修吗", "更新"]:
        toks = tokenize(q)
        assert np.array_equal(again.scores(toks), fresh.scores(toks)), q


def test_a_version_without_saved_tokens_loads_none(tmp_path: Path) -> None:
    Bm25Index.build(["退款多久到账"], 1.5, 1.0)._r.save(str(tmp_path))  # bm25s files only
    assert DocTokens.load(tmp_path) is None
