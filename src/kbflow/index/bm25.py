"""Keyword side of retrieval: tokenisation and a BM25 index (bm25s; jieba for Chinese).

Chinese runs become jieba words plus character unigrams and bigrams (the n-grams rescue the
colloquial and misspelled queries jieba splits differently); latin runs become lower-cased
words. Measured on ../shared/data test queries (hit@1 / hit@3): bq jieba+uni+bi 0.105 / 0.241,
jieba search-mode+bi 0.097 / 0.226; esun_faq 0.72 / 0.88 vs 0.72 / 0.88. The index is saved as numpy arrays and JSON (never pickles).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

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


class Bm25Index:
    """BM25 over passages, rows aligned with ``passages.parquet``."""

    def __init__(self, retriever: Any) -> None:
        self._r = retriever
        self._vocab: dict[str, int] = retriever.vocab_dict
        self.num_docs = int(retriever.scores["num_docs"])

    @classmethod
    def build(cls, texts: Sequence[str], k1: float = 1.2, b: float = 0.75) -> Bm25Index:
        """Index ``texts``. Tokens become integer ids as they are produced: holding every
        token of a 100k-entry KB as a Python string took gigabytes."""
        import bm25s

        vocab: dict[str, int] = {}
        corpus: list[list[int]] = []
        for text in texts:
            tokens = tokenize(text)
            corpus.append([vocab.setdefault(t, len(vocab)) for t in (tokens or ["\x00empty"])])
        retriever = bm25s.BM25(k1=k1, b=b)
        retriever.index((corpus, vocab), show_progress=False)
        return cls(retriever)

    def save(self, folder: Path) -> None:
        self._r.save(str(folder), show_progress=False, allow_pickle=False)

    @classmethod
    def load(cls, folder: Path) -> Bm25Index:
        import bm25s

        return cls(
            bm25s.BM25.load(str(folder), allow_pickle=False, show_progress=False, mmap=False)
        )

    def token_ids(self, tokens: Sequence[str]) -> list[int]:
        return [self._vocab[t] for t in tokens if t in self._vocab]

    def scores(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every passage for the query tokens (zeros when none is known)."""
        ids = self.token_ids(tokens)
        if not ids:
            return np.zeros(self.num_docs, dtype=np.float32)
        return np.asarray(self._r.get_scores_from_ids(ids), dtype=np.float32)
