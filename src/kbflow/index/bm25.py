"""Keyword side of retrieval: tokenisation and a BM25 index (bm25s; jieba for Chinese).

Chinese runs become jieba words plus character unigrams and bigrams (the n-grams rescue the
colloquial and misspelled queries jieba splits differently); latin runs become lower-cased
words. Measured on ../shared/data test queries (hit@1 / hit@3): bq jieba+uni+bi 0.105 / 0.241,
jieba search-mode+bi 0.097 / 0.226; esun_faq 0.72 / 0.88 vs 0.72 / 0.88. The index is saved as numpy arrays and JSON (never pickles).
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from kbflow.index.columns import NpyRows

log = logging.getLogger(__name__)


_TOKEN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[a-z0-9]+(?:'[a-z]+)?")


_EN_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "am",
        "i",
        "me",
        "my",
        "you",
        "your",
        "we",
        "our",
        "it",
        "its",
        "to",
        "of",
        "in",
        "on",
        "for",
        "and",
        "or",
        "do",
        "does",
        "did",
        "can",
        "could",
        "would",
        "should",
        "will",
        "with",
        "at",
        "by",
        "from",
        "this",
        "that",
        "there",
        "what",
        "how",
    ]
)


@cache
def _jieba() -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


def tokenize(text: str) -> list[str]:
    """Tokens for BM25 (same function for documents and queries)."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    tokens: list[str] = []
    for m in _TOKEN_RE.finditer(text):
        seg = m.group()
        if is_cjk(seg[0]):
            tokens.extend(w for w in _jieba().lcut(seg) if len(w) > 1)
            tokens.extend(seg)
            tokens.extend(seg[i : i + 2] for i in range(len(seg) - 1))
        elif seg not in _EN_STOP:
            tokens.append(seg)
    return tokens


def cjk_share(texts: Sequence[str]) -> float:
    """Share of letters that are CJK characters (the KB's language mix)."""
    cjk = other = 0
    for t in texts:
        for ch in t:
            if is_cjk(ch):
                cjk += 1
            elif ch.isalpha():
                other += 1
    total = cjk + other
    return cjk / total if total else 0.0


#: Changes whenever ``tokenize`` does: a version reuses the live version's saved tokens only when
#: they were made by the same tokeniser.
TOKENIZER = "jieba-uni-bi-1"

#: Placeholder token of a passage with no tokens (a dense-only kind, punctuation only).
EMPTY_TOKEN = "\x00empty"

#: Files beside bm25s's own in a version's ``bm25/`` folder: every passage's distinct token ids
#: (int32, ascending within a passage), how often each occurs (int32), and where each passage's
#: run starts (int64, n + 1). The next version reuses the tokens of every passage whose text did
#: not change instead of tokenising it again (jieba: about 107 s for a 100k-entry KB's 504k
#: passages on 2 cores).
DOC_TOKENS = "doc_tokens.npy"
DOC_COUNTS = "doc_counts.npy"
DOC_OFFSETS = "doc_offsets.npy"


_COPY_ROWS = 32_768


@dataclass
class DocTokens:
    """The corpus as bags of token ids: ``ids[offsets[i]:offsets[i + 1]]`` are passage ``i``'s
    distinct tokens (ascending), ``counts`` alongside how often each occurs, ``vocab[id]`` the
    token. All BM25 needs: term frequencies and passage lengths."""

    vocab: list[str]
    ids: np.ndarray
    counts: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def of(
        cls,
        texts: Sequence[str],
        prior: DocTokens | None = None,
        prior_rows: Sequence[int] | np.ndarray | None = None,
        tokens_of: Callable[[str], list[str]] = tokenize,
    ) -> DocTokens:
        """Tokenise ``texts`` (with ``tokens_of``: ``tokenize`` or a memo of it); where ``prior_rows[i] >= 0`` passage ``i``'s text is ``prior``'s
        row ``prior_rows[i]`` and its tokens are taken from there. The vocabulary keeps only
        tokens some passage uses."""
        n = len(texts)
        reuse = (
            np.asarray(prior_rows, dtype=np.int64)
            if prior is not None and prior_rows is not None
            else np.full(n, -1, dtype=np.int64)
        )
        names: list[str] = list(prior.vocab) if prior is not None else []
        index = {t: i for i, t in enumerate(names)}
        bags: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        fresh: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for i in np.nonzero(reuse < 0)[0].tolist():
            bag = bags.get(texts[i])  # repeated texts (empty dense-only ones) tokenised once
            if bag is None:
                token_ids: list[int] = []
                for t in tokens_of(texts[i]) or [EMPTY_TOKEN]:
                    got = index.get(t)
                    if got is None:
                        got = index[t] = len(names)
                        names.append(t)
                    token_ids.append(got)
                uniq, count = np.unique(np.asarray(token_ids, np.int32), return_counts=True)
                bag = bags[texts[i]] = (uniq.astype(np.int32), count.astype(np.int32))
            fresh[i] = bag
        lengths = np.zeros(n, dtype=np.int64)
        old = reuse >= 0
        if prior is not None:
            lengths[old] = np.diff(prior.offsets)[reuse[old]]
        for i, (uniq, _) in fresh.items():
            lengths[i] = len(uniq)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.empty(int(offsets[-1]), dtype=np.int32)
        counts = np.empty(int(offsets[-1]), dtype=np.int32)
        if prior is not None and old.any():
            # the reused runs copied a block of passages at a time: each position's source is
            # its own position moved by where its run starts in the prior (per-position index
            # arrays over the whole corpus took ~600 MB at 100k entries)
            move = np.where(old, prior.offsets[np.maximum(reuse, 0)] - offsets[:-1], 0)
            for b0 in range(0, n, _COPY_ROWS):
                b1 = min(n, b0 + _COPY_ROWS)
                lo, hi = int(offsets[b0]), int(offsets[b1])
                owner = np.repeat(np.arange(b0, b1, dtype=np.int64), lengths[b0:b1])
                keep = old[owner]
                src = (np.arange(lo, hi, dtype=np.int64) + move[owner])[keep]
                ids[lo:hi][keep] = prior.ids[src]
                counts[lo:hi][keep] = prior.counts[src]
        for i, (uniq, count) in fresh.items():
            ids[offsets[i] : offsets[i + 1]] = uniq
            counts[offsets[i] : offsets[i + 1]] = count
        used = np.nonzero(np.bincount(ids, minlength=len(names)))[0]
        if len(used) < len(names):
            # ascending ids stay ascending: the remap is increasing
            remap = np.full(len(names), -1, dtype=np.int32)
            remap[used] = np.arange(len(used), dtype=np.int32)
            ids = remap[ids]
            names = [names[u] for u in used.tolist()]
        return cls(names, ids, counts, offsets)

    def save(self, folder: Path) -> None:
        np.save(folder / DOC_TOKENS, self.ids, allow_pickle=False)
        np.save(folder / DOC_COUNTS, self.counts, allow_pickle=False)
        np.save(folder / DOC_OFFSETS, self.offsets, allow_pickle=False)

    @classmethod
    def load(cls, folder: Path) -> DocTokens | None:
        """A version's saved tokens, or None for a version built before they were saved."""
        if not has_saved_tokens(folder):
            return None
        return cls(
            saved_vocab(folder),
            np.load(folder / DOC_TOKENS, allow_pickle=False),
            np.load(folder / DOC_COUNTS, allow_pickle=False),
            np.load(folder / DOC_OFFSETS, allow_pickle=False),
        )


def has_saved_tokens(folder: Path) -> bool:
    return all((folder / f).is_file() for f in (DOC_TOKENS, DOC_COUNTS, DOC_OFFSETS))


def saved_vocab(folder: Path) -> list[str]:
    """The tokens of a saved BM25 index, by id."""
    vocab_dict = json.loads((folder / "vocab.index.json").read_text(encoding="utf-8"))
    names = [""] * len(vocab_dict)
    for t, i in vocab_dict.items():
        names[i] = t
    return names


@dataclass
class SavedTokens:
    """A version's saved tokens (``DocTokens``' files) for a reader of a few passages: ``ids``
    and ``counts`` are read a slice at a time (``NpyRows``), only ``offsets`` and the vocabulary
    are loaded (the whole arrays are 265 MB at 100k entries)."""

    vocab: list[str]
    ids: NpyRows
    counts: NpyRows
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def open(cls, folder: Path) -> SavedTokens | None:
        if not has_saved_tokens(folder):
            return None
        return cls(
            saved_vocab(folder),
            NpyRows(folder / DOC_TOKENS),
            NpyRows(folder / DOC_COUNTS),
            np.load(folder / DOC_OFFSETS, allow_pickle=False),
        )


_SCORE_BLOCK = 1 << 22


def score_matrix(doc: DocTokens, retriever: Any) -> dict[str, Any]:
    """bm25s's eager score matrix (CSC, tokens by passages), computed with numpy over the whole
    corpus at once with bm25s's own idf and term-frequency functions: the same floats as
    ``bm25s.BM25.index`` (a test checks it) in seconds instead of the 39 s its per-passage loop
    takes on 504k passages. ``retriever``: the ``bm25s.BM25`` whose parameters apply."""
    import scipy.sparse as sp
    from bm25s.scoring import _select_idf_scorer, _select_tfc_scorer

    n = len(doc)
    n_vocab = len(doc.vocab)
    runs = np.diff(doc.offsets)
    # passages in blocks of about _SCORE_BLOCK tokens: the per-token temporaries (owner,
    # length as float64, term-frequency weight) of the whole corpus took 1.2 GB at 100k entries
    starts = np.searchsorted(doc.offsets, np.arange(0, int(doc.offsets[-1]), _SCORE_BLOCK))
    blocks = [int(b) for b in np.unique(np.r_[starts, n])]
    if blocks[0] != 0:
        blocks.insert(0, 0)
    lengths = np.zeros(n, dtype=np.int64)
    for p0, p1 in zip(blocks[:-1], blocks[1:], strict=True):
        lo, hi = int(doc.offsets[p0]), int(doc.offsets[p1])
        d = np.repeat(np.arange(p0, p1, dtype=np.int32), runs[p0:p1])
        lengths += np.bincount(d, weights=doc.counts[lo:hi], minlength=n).astype(np.int64)
    df = np.bincount(doc.ids, minlength=n_vocab)
    idf_of = _select_idf_scorer(retriever.idf_method)
    idf = np.zeros(n_vocab, dtype=np.float32)
    for token, count in enumerate(df.tolist()):
        if count:
            idf[token] = idf_of(count, N=n)
    tfc_of = _select_tfc_scorer(retriever.method)
    l_avg = lengths.mean() if n else 1.0
    scores = np.empty(len(doc.ids), dtype=np.float32)
    for p0, p1 in zip(blocks[:-1], blocks[1:], strict=True):
        lo, hi = int(doc.offsets[p0]), int(doc.offsets[p1])
        d = np.repeat(np.arange(p0, p1, dtype=np.int32), runs[p0:p1])
        tfc = tfc_of(
            tf_array=doc.counts[lo:hi].astype(np.float32),
            l_d=lengths[d].astype(np.float64),
            l_avg=l_avg,
            k1=retriever.k1,
            b=retriever.b,
            delta=retriever.delta,
        )
        scores[lo:hi] = idf[doc.ids[lo:hi]] * tfc
    m = sp.csr_matrix((scores, doc.ids, doc.offsets), shape=(n, n_vocab)).tocsc()
    return {"data": m.data, "indices": m.indices, "indptr": m.indptr, "num_docs": n}


class Bm25Index:
    """BM25 over passages, rows aligned with ``passages.parquet``."""

    def __init__(self, retriever: Any, doc: DocTokens | None = None) -> None:
        self._r = retriever
        self._vocab: dict[str, int] = retriever.vocab_dict
        self.num_docs = int(retriever.scores["num_docs"])
        self.doc = doc

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        k1: float = 1.2,
        b: float = 0.75,
        prior: DocTokens | None = None,
        prior_rows: Sequence[int] | np.ndarray | None = None,
        tokens_of: Callable[[str], list[str]] = tokenize,
    ) -> Bm25Index:
        """Index ``texts`` (tokens of rows with ``prior_rows[i] >= 0`` come from ``prior``)."""
        import bm25s

        doc = DocTokens.of(texts, prior, prior_rows, tokens_of)
        retriever = bm25s.BM25(k1=k1, b=b)
        if retriever.method in retriever.methods_requiring_nonoccurrence:
            raise ValueError(f"bm25s method {retriever.method} is not supported")
        retriever.nonoccurrence_array = None
        retriever.scores = score_matrix(doc, retriever)
        retriever.vocab_dict = {t: i for i, t in enumerate(doc.vocab)}
        retriever.unique_token_ids_set = set(retriever.vocab_dict.values())
        return cls(retriever, doc)

    def save(self, folder: Path) -> None:
        self._r.save(str(folder), show_progress=False, allow_pickle=False)
        if self.doc is not None:
            self.doc.save(folder)

    @classmethod
    def load(cls, folder: Path) -> Bm25Index:
        import bm25s

        return cls(
            bm25s.BM25.load(str(folder), allow_pickle=False, show_progress=False, mmap=False)
        )

    def token_ids(self, tokens: Sequence[str]) -> list[int]:
        return [self._vocab[t] for t in tokens if t in self._vocab]

    def scores(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every passage for the query tokens (zeros when none is known): the sum
        of the query tokens' columns of the score matrix, as bm25s computes it, with one
        ``bincount`` instead of its ``np.add.at`` (a third of the gate's time at 100k)."""
        ids = self.token_ids(tokens)
        if not ids:
            return np.zeros(self.num_docs, dtype=np.float32)
        m = self._r.scores
        indptr, indices, data = m["indptr"], m["indices"], m["data"]
        parts = [(int(indptr[t]), int(indptr[t + 1])) for t in ids]
        rows = np.concatenate([indices[a:b] for a, b in parts])
        weights = np.concatenate([data[a:b] for a, b in parts])
        return np.bincount(rows, weights=weights, minlength=self.num_docs).astype(np.float32)
