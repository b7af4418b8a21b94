"""A version loaded for search: dense (FAISS) and BM25 candidates, fused per entry.

Each entry's dense score is the best passage score on the version's dense scale, blended with
the second best (``(best + λ·second) / (1 + λ)``, λ = ``index.dense_second_weight``: an entry
whose several similar questions all sit near the query is likelier the answer than one with a
single close passage), and its keyword score the best BM25 score over its passages, divided by
the version's ``bm25_scale`` (the median score of a passage queried with its own text) and
capped at 1. The fused score is ``w * dense + (1 - w) * keyword``, ``w`` calibrated per version
(``kbflow.index.calibrate``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kbflow.errors import IndexError_
from kbflow.index.bm25 import EMPTY_TOKEN, Bm25Index, SavedTokens, tokenize
from kbflow.index.build import HUB
from kbflow.index.columns import StringColumn, interned, read_columns
from kbflow.index.dense import DenseIndex, StoredVectors
from kbflow.index.incremental import DENSE_ONLY_KINDS
from kbflow.store.versions import MANIFEST, embedding_info

WEIGHT_GRID = tuple(round(x * 0.1, 1) for x in range(11))


@dataclass
class Candidates:
    """Per-entry evidence for one query: entry rows, their dense and keyword scores."""

    entries: np.ndarray  # entry index (int)
    dense: np.ndarray
    keyword: np.ndarray  # raw BM25
    best_dense_row: np.ndarray
    best_keyword_row: np.ndarray


@dataclass
class Hit:
    entry_id: str
    title: str
    score: float
    dense: float
    keyword: float
    passage_id: str
    passage: str
    rerank: float | None = None


class LoadedVersion:
    """A version folder loaded for search (read-only)."""

    def __init__(self, folder: Path) -> None:
        if not (folder / MANIFEST).is_file():
            raise IndexError_(f"{folder} is not a complete index version")
        self.folder = folder
        self.manifest: dict[str, Any] = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        self.version: str = self.manifest["version"]
        #: ``manifest["embedding"]`` with its adapter's folder resolved: what the version's
        #: query encoder is built from (``kbflow.embed.adapter.make_version_embedder``).
        self.embedding: dict[str, Any] = embedding_info(self.manifest, folder)
        t = read_columns(
            folder / "passages.parquet",
            ("passage_id", "faiss_id", "entry_id", "kind", "title", "text"),
            dictionary=("title",),
        )
        self.passage_ids = StringColumn(t.column("passage_id"))
        self.titles = StringColumn(t.column("title"))
        self.texts = StringColumn(t.column("text"))
        kinds, kind_of_row = interned(t.column("kind"))
        self.kinds: list[str] = [kinds[k] for k in kind_of_row.tolist()]
        #: entries in the order of their first passage, and each passage's entry position
        self.entry_ids, self.row_entry = interned(t.column("entry_id"))
        self.entry_of_row = StringColumn.of_codes(self.entry_ids, self.row_entry)
        faiss_ids = t.column("faiss_id").to_numpy().astype(np.int64)
        del t
        self._display: StringColumn | None = None  # read on first use (``display``)
        self._id_order = np.argsort(faiss_ids)
        self._sorted_ids = faiss_ids[self._id_order]
        self.dense = DenseIndex.read(folder)
        #: passage vectors by row: read in place from the dense segments where they keep them
        #: (Flat, HNSW), else ``vectors.npy`` mapped
        self.vectors: StoredVectors | np.ndarray = self.dense.stored_vectors(faiss_ids) or np.load(
            folder / "vectors.npy", mmap_mode="r", allow_pickle=False
        )
        self.dense.set_ef_search(128)
        self.bm25 = Bm25Index.load(folder / "bm25")
        tokenize("预热")  # load jieba's dictionary now, not inside the first query
        order = np.argsort(self.row_entry, kind="stable")
        bounds = np.searchsorted(self.row_entry[order], np.arange(len(self.entry_ids) + 1))
        self.entry_rows = [order[bounds[i] : bounds[i + 1]] for i in range(len(self.entry_ids))]
        cal = self.manifest.get("calibration", {})
        self.weight: float = float(cal.get("dense_weight", 0.5))
        self.bm25_scale: float = float(cal.get("bm25_scale", 1.0)) or 1.0
        self.threshold: float = float(cal.get("handoff_threshold", 0.0))
        self._token_sets: dict[int, frozenset[str]] = {}
        self._doc: SavedTokens | None = None  # the saved BM25 tokens, opened on first use
        self._doc_loaded = False
        self._compact: dict[int, str] = {}
        index_settings = self.manifest.get("settings", {}).get("index", {})
        # versions built before the setting existed keep their best-passage-only scoring
        self.second_weight: float = float(index_settings.get("dense_second_weight", 0.0))
        # versions built before the dense scale existed keep raw cosines (lo 0, hi 1, no hub)
        scale = self.manifest.get("index", {}).get("dense_scale") or {}
        self.hub_weight: float = float(scale.get("hub_weight", 0.0))
        self.hub: np.ndarray | None = (
            np.load(folder / HUB, allow_pickle=False) if self.hub_weight else None
        )
        if self.hub is not None and len(self.hub) != len(self.passage_ids):
            raise IndexError_(f"{folder / HUB} does not match the version's passages")
        self.dense_lo: float = float(scale.get("lo", 0.0))
        self.dense_span: float = float(scale.get("hi", 1.0)) - self.dense_lo

    @property
    def display(self) -> StringColumn:
        """What a hit shows for each passage (its entry's answer), read on first use: the gate
        and calibration rank without it. Read as a dictionary: an entry's passages share it."""
        if self._display is None:
            t = read_columns(self.folder / "passages.parquet", ("display",), ("display",))
            self._display = StringColumn(t.column("display"))
        return self._display

    def token_set(self, row: int) -> frozenset[str]:
        """Tokens of a passage, computed once per version (held-out checks ask repeatedly):
        the version's saved BM25 tokens where it has them, else ``tokenize``."""
        got = self._token_sets.get(row)
        if got is None:
            doc = self._doc_tokens()
            if doc is not None and self.kinds[row] not in DENSE_ONLY_KINDS:
                ids = doc.ids[doc.offsets[row] : doc.offsets[row + 1]]
                got = frozenset(doc.vocab[i] for i in ids.tolist()) - {EMPTY_TOKEN}
            else:
                got = frozenset(tokenize(self.texts[row]))
            self._token_sets[row] = got
        return got

    def _doc_tokens(self) -> SavedTokens | None:
        if not self._doc_loaded:
            doc = SavedTokens.open(self.folder / "bm25")
            self._doc = doc if doc is not None and len(doc) == self.n_passages else None
            self._doc_loaded = True
        return self._doc

    def row_tokens(self, row: int, tokens_of: Callable[[str], list[str]] = tokenize) -> list[str]:
        """A passage's text as query tokens: its saved BM25 tokens (each as often as it occurs)
        where the version has them, else ``tokens_of(text)``."""
        doc = self._doc_tokens()
        if doc is None or self.kinds[row] in DENSE_ONLY_KINDS:
            return tokens_of(self.texts[row])
        lo, hi = int(doc.offsets[row]), int(doc.offsets[row + 1])
        return [
            doc.vocab[i]
            for i, c in zip(doc.ids[lo:hi].tolist(), doc.counts[lo:hi].tolist(), strict=True)
            for _ in range(c)
            if doc.vocab[i] != EMPTY_TOKEN
        ]

    def compact_text(self, row: int) -> str:
        """A passage's text without whitespace, computed once per version."""
        got = self._compact.get(row)
        if got is None:
            got = self._compact[row] = "".join(self.texts[row].split())
        return got

    @property
    def n_passages(self) -> int:
        return len(self.passage_ids)

    def dense_scores(self, rows: np.ndarray, qvec: np.ndarray) -> np.ndarray:
        """Dense scores of passages ``rows`` for a query vector, on the version's dense scale
        (``kbflow.index.dense_scale``: 0 = an unrelated passage, 1 = a perfect match)."""
        cos = np.asarray(self.vectors[rows]) @ qvec
        if self.hub is not None:
            cos = cos - self.hub_weight * self.hub[rows]
        return (cos - self.dense_lo) / self.dense_span

    def rows_for_ids(self, ids: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self._sorted_ids, ids)
        pos = np.clip(pos, 0, len(self._sorted_ids) - 1)
        return self._id_order[pos]

    def candidates(
        self,
        qvec: np.ndarray | None,
        tokens: list[str],
        n: int = 50,
        exclude: np.ndarray | None = None,
    ) -> Candidates:
        """Top ``n`` passages from each side, reduced to entries with both scores filled in.

        ``qvec`` None means the dense side is unavailable (keyword scores only).
        ``exclude`` hides passages by row (held-out self-check).
        """
        kw_all = self.bm25.scores(tokens) if tokens else np.zeros(self.n_passages, np.float32)
        hidden: np.ndarray | None = None
        if exclude is not None and len(exclude):
            kw_all[exclude] = 0.0
            hidden = np.zeros(self.n_passages, dtype=bool)
            hidden[exclude] = True
        k = min(n + (0 if exclude is None else len(exclude)), self.n_passages)
        # the top k among the passages that have a keyword score at all: a query's tokens occur
        # in few passages, and a partition of all of them was a third of a gate query at 100k
        kw_rows = np.flatnonzero(kw_all > 0)
        if len(kw_rows) > k:
            kw_rows = kw_rows[np.argpartition(-kw_all[kw_rows], k - 1)[:k]]
        rows = [kw_rows]
        if qvec is not None:
            _, ids = self.dense.search(qvec.reshape(1, -1).astype(np.float32), k)
            ids = ids[0][ids[0] >= 0]
            rows.append(self.rows_for_ids(ids))
        cand_rows = np.unique(np.concatenate(rows)) if rows else np.zeros(0, np.int64)
        if hidden is not None:
            cand_rows = cand_rows[~hidden[cand_rows]]
        entries = np.unique(self.row_entry[cand_rows])
        m = len(entries)
        dense = np.zeros(m, np.float32)
        keyword = np.zeros(m, np.float32)
        best_d = np.zeros(m, np.int64)
        best_k = np.zeros(m, np.int64)
        if m == 0:
            return Candidates(entries, dense, keyword, best_d, best_k)
        # every passage of every candidate entry at once; per entry the best (first of equals,
        # in row order) and, for the dense side, the second best
        groups = [self.entry_rows[e] for e in entries]
        rows_all = np.concatenate(groups)
        owner = np.repeat(np.arange(m), [len(g) for g in groups])
        if hidden is not None:
            keep = ~hidden[rows_all]
            rows_all, owner = rows_all[keep], owner[keep]
        if len(rows_all) == 0:
            return Candidates(entries, dense, keyword, best_d, best_k)
        ks = kw_all[rows_all]
        order, sorted_owner, head = _best_first(ks, owner)
        top = order[head]
        keyword[owner[top]] = ks[top]
        best_k[owner[top]] = rows_all[top]
        if qvec is None:
            best_d[:] = best_k
            return Candidates(entries, dense, keyword, best_d, best_k)
        ds = self.dense_scores(rows_all, qvec).astype(np.float32)
        order, sorted_owner, head = _best_first(ds, owner)
        top = order[head]
        dense[owner[top]] = ds[top]
        best_d[owner[top]] = rows_all[top]
        if self.second_weight:
            # the element after each head, when it belongs to the same entry, is its second best
            nxt = np.nonzero(head)[0] + 1
            has = nxt < len(order)
            has[has] = sorted_owner[nxt[has]] == sorted_owner[nxt[has] - 1]
            pair = owner[top][has]
            # the same float32 steps as one entry at a time: (best + f32(w * second)) / f32(1 + w)
            second = ds[order[nxt[has]]].astype(np.float64)
            blend = (self.second_weight * second).astype(np.float32)
            dense[pair] = (dense[pair] + blend) / np.float32(1 + self.second_weight)
        return Candidates(entries, dense, keyword, best_d, best_k)

    def fuse(
        self, c: Candidates, weight: float | None = None, dense_available: bool = True
    ) -> np.ndarray:
        w = self.weight if weight is None else weight
        if not dense_available:
            w = 0.0
        kw = np.minimum(c.keyword / self.bm25_scale, 1.0)
        return w * c.dense + (1 - w) * kw

    def hits(
        self, c: Candidates, scores: np.ndarray, k: int, dense_available: bool = True
    ) -> list[Hit]:
        order = np.argsort(-scores, kind="stable")[:k]
        out = []
        for j in order:
            e = int(c.entries[j])
            use_dense = dense_available and self.weight >= 0.5
            row = int(c.best_dense_row[j] if use_dense else c.best_keyword_row[j])
            entry_id = self.entry_ids[e]
            first = int(self.entry_rows[e][0])
            out.append(
                Hit(
                    entry_id=entry_id,
                    title=self.titles[first],
                    score=round(float(scores[j]), 4),
                    dense=round(float(c.dense[j]), 4),
                    keyword=round(float(c.keyword[j]), 4),
                    passage_id=self.passage_ids[row],
                    passage=self.display[row],
                )
            )
        return out


def _best_first(values: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions ordered by owner, best value first within each (ties keep row order), the
    owners in that order, and where each owner's run starts (its best)."""
    order = np.lexsort((-values, owner))
    sorted_owner = owner[order]
    return order, sorted_owner, np.r_[True, sorted_owner[1:] != sorted_owner[:-1]]


def near_copy_rows(
    version: LoadedVersion, entry: int, query: str, tokens: list[str], max_overlap: float = 0.3
) -> np.ndarray:
    """Rows of ``entry`` that are the query itself, contain it verbatim, or share more than
    ``max_overlap`` of its tokens (Jaccard). Real users do not type a near copy of a similar
    question already in the KB, so a held-out check that leaves near copies in place only
    measures string matching and cannot tell which side of the fusion to trust. Containment
    matters for KBs whose answers repeat their questions ("Q: ... A: ..." blocks, as in
    esun_faq): with the question still inside its answer passage, keyword search found every
    held-out question and calibration gave the dense side no weight (esun_faq hit@1 0.74 with
    weight 0, against 0.80-0.84 for weights 0.5-0.6)."""
    q = set(tokens)
    needle = "".join(query.split())
    hidden = []
    for r in version.entry_rows[entry]:
        o = version.token_set(int(r))
        text = version.texts[r]
        if (
            text == query
            or (q and o and len(q & o) / len(q | o) > max_overlap)
            or (len(needle) >= 4 and needle in version.compact_text(int(r)))
        ):
            hidden.append(int(r))
    return np.asarray(hidden, dtype=np.int64)


def held_out_rows(
    version: LoadedVersion, row: int, tokens: list[str], max_overlap: float = 0.3
) -> np.ndarray:
    """Passages hidden while question passage ``row`` is the query: itself, and every passage of
    its entry that is a near copy of it (``near_copy_rows``)."""
    hidden = near_copy_rows(
        version, int(version.row_entry[row]), version.texts[row], tokens, max_overlap
    )
    if row not in hidden:
        hidden = np.append(hidden, row)
    return hidden


def adapter_held_out(version: LoadedVersion) -> set[str] | None:
    """Passage ids of the questions the version's adapter never trained on (None without an
    adapter): the only ones calibration and the self-check may score it on."""
    adapter = version.embedding.get("adapter")
    if not adapter:
        return None
    path = Path(adapter["dir"]) / adapter["held_out"]
    return set(json.loads(path.read_text(encoding="utf-8")))


def stable_order(keys: Iterable[str]) -> list[int]:
    """Positions of ``keys`` in the order of their BLAKE2b digests: a sample taken as the head
    of this order is the same every night for the keys that did not change (the gate's check
    questions, ``kbflow.gate.memo``)."""
    digests = [hashlib.blake2b(k.encode("utf-8"), digest_size=8).digest() for k in keys]
    return sorted(range(len(digests)), key=digests.__getitem__)


def self_check_rows(
    version: LoadedVersion, limit: int = 1500, seed: int = 0, stable: bool = False
) -> list[int]:
    """Question passages whose entry has other passages (so holding one out leaves a target);
    with an adapter, only the questions it did not train on. Above ``limit``, a seeded random
    sample, or with ``stable`` the first ``limit`` in the order of a hash of entry id and text
    (``stable_order``): the same questions every night while they do not
    change, so the gate can reuse what it asked the live version."""
    held = adapter_held_out(version)
    rows = [
        r
        for r, kind in enumerate(version.kinds)
        if kind == "question"
        and len(version.entry_rows[version.row_entry[r]]) > 1
        and (held is None or version.passage_ids[r] in held)
    ]
    if len(rows) > limit and stable:
        order = stable_order(f"{version.entry_of_row[r]}\n{version.texts[r]}" for r in rows)
        rows = sorted(rows[i] for i in order[:limit])
    elif len(rows) > limit:
        rng = np.random.default_rng(seed)
        rows = sorted(rng.choice(rows, size=limit, replace=False).tolist())
    return rows
