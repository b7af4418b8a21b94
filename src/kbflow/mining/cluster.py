"""Gap queries into topics.

With the live version's query encoder (``kbflow.mining.kb``): the ``gap_vector_queries`` most
frequent distinct gap queries are embedded as queries and grouped by meaning, leader clustering
over cosine similarity at the threshold calibrated on the version's own vectors (the cosine
only 1% of pairs of wordings of two different entries reach). It groups paraphrases that
share few characters ("猫能托运吗" / "可以带宠物上飞机吗").

Without one (no live version, the encoder cannot be built: a remote endpoint that is down), or
as the fallback: MinHash over character bigrams of the normalised text (datasketch), LSH for
candidates, verified by exact Jaccard, the same leader clustering. Users' typos, inserted
particles and reordered words keep most of their character bigrams, so Jaccard groups those
without a model, deterministically, at ~50k queries/s.

Either way one distinct query asked in fewer than ``min_topic_events`` gap searches is not a
topic: such queries are merged into one "other" cluster (``OTHER``), so the report and the
review queue list topics, not every string someone typed once. The long tail beyond the cap is left unclustered and
counted in the summary."""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from kbflow.settings import MiningSettings

log = logging.getLogger(__name__)

#: The cluster id of gap queries that form no topic with any other query.
OTHER = -1

_PUNCT = {"P", "S", "Z", "C"}  # punctuation, symbols, separators, control characters


def normalize_query(text: str) -> str:
    """NFKC, lowercase, punctuation/symbols/whitespace removed (letters, digits, CJK kept)."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] not in _PUNCT)


def _shingles(text: str) -> set[bytes]:
    if len(text) < 2:
        return {text.encode("utf-8")} if text else set()
    return {text[i : i + 2].encode("utf-8") for i in range(len(text) - 1)}


def cluster_texts(texts: list[str], threshold: float = 0.4, num_perm: int = 128) -> list[int]:
    """Cluster normalised texts, given most frequent first: a label per text, ``0..k-1``.

    Leader clustering: each text joins the earlier leader whose character-bigram set is most
    similar to its own (exact Jaccard, at least ``threshold``; candidates from MinHash LSH over
    the leaders only), or becomes a new leader. Unlike single linkage this does not chain
    different topics together through a series of near neighbours, and the most frequent
    phrasing of a topic is its leader. Deterministic for a given input order."""
    from datasketch import MinHash, MinHashLSH

    if not texts:
        return []
    sets = [_shingles(t) for t in texts]
    hashes = MinHash.bulk([sorted(s) for s in sets], num_perm=num_perm, seed=1)
    # LSH recall must be high: index at a lower threshold, verify candidates exactly.
    lsh = MinHashLSH(threshold=max(0.05, threshold * 0.7), num_perm=num_perm)
    labels: list[int] = []
    leader_label: dict[int, int] = {}
    for i, h in enumerate(hashes):
        best, best_j = -1, threshold
        a = sets[i]
        for j in lsh.query(h):
            b = sets[int(j)]
            sim = len(a & b) / len(a | b) if a and b else 0.0
            if sim > best_j or (sim == best_j and (best < 0 or int(j) < best)):
                best, best_j = int(j), sim
        if best >= 0:
            labels.append(leader_label[best])
        else:
            leader_label[i] = len(leader_label)
            labels.append(leader_label[i])
            lsh.insert(i, h)
    return labels


def cluster_vectors(vectors: np.ndarray, threshold: float) -> list[int]:
    """Leader clustering of row vectors (given most frequent first) by cosine similarity: each
    joins the most similar earlier leader at ``threshold`` or above, or becomes a leader. A
    label per row, ``0..k-1``; deterministic."""
    v = np.asarray(vectors, dtype=np.float32)
    v = v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-12)
    leaders = np.empty((0, v.shape[1]), dtype=np.float32) if len(v) else v
    labels: list[int] = []
    for row in v:
        if len(leaders):
            sims = leaders @ row
            best = int(np.argmax(sims))
            if sims[best] >= threshold:
                labels.append(best)
                continue
        labels.append(len(leaders))
        leaders = np.vstack([leaders, row[None, :]])
    return labels


def assign_gap_clusters(
    gap_queries: pa.Table,
    settings: MiningSettings,
    encode: Callable[[list[str]], np.ndarray] | None = None,
    threshold: float | None = None,
) -> tuple[pa.Table, int, str]:
    """Map raw gap queries (``query``, ``n_events``, most frequent first) to cluster ids.

    Raw texts that normalise to the same string share a cluster. With ``encode`` and
    ``threshold`` the ``gap_vector_queries`` most frequent normalised texts are clustered by
    meaning (their most frequent raw spelling embedded), otherwise the ``max_gap_queries`` most
    frequent by characters; the rest are left out. Clusters of one normalised text asked in
    fewer than ``min_topic_events`` searches become ``OTHER``; the others are renumbered by total events (largest first) so ``cluster_id`` 0 is
    the biggest topic. Returns (``query``, ``cluster_id``), the number of raw queries left out
    and the method used (``vectors`` or ``characters``)."""
    queries = gap_queries.column("query").to_pylist()
    counts = gap_queries.column("n_events").to_pylist()
    norm_index: dict[str, int] = {}
    norm_of: list[int] = []
    for q in queries:
        key = normalize_query(q) or q
        norm_of.append(norm_index.setdefault(key, len(norm_index)))
    labels: list[int] | None = None
    method = "characters"
    kept = min(len(norm_index), settings.max_gap_queries)
    if encode is not None and threshold is not None and norm_index:
        kept = min(len(norm_index), settings.gap_vector_queries)
        spelling: dict[int, str] = {}
        for q, q_norm in zip(queries, norm_of, strict=True):
            spelling.setdefault(q_norm, q)  # most frequent first: the most asked spelling
        try:
            labels = cluster_vectors(encode([spelling[i] for i in range(kept)]), threshold)
            method = "vectors"
        except Exception as exc:  # noqa: BLE001 - a model that cannot load: cluster by characters
            log.warning("mine: gap queries clustered by characters: the encoder failed (%s)", exc)
            kept = min(len(norm_index), settings.max_gap_queries)
    if labels is None:
        labels = cluster_texts(
            list(norm_index)[:kept], settings.cluster_threshold, settings.num_perm
        )
    members: dict[int, int] = {}
    events: dict[int, int] = {}
    for q_norm, n in zip(norm_of, counts, strict=True):
        if q_norm < kept:
            events[labels[q_norm]] = events.get(labels[q_norm], 0) + int(n)
    for label in labels:
        members[label] = members.get(label, 0) + 1
    topic = {c for c in members if members[c] > 1 or events.get(c, 0) >= settings.min_topic_events}
    labels = [lab if lab in topic else OTHER for lab in labels]
    size: dict[int, int] = {}
    for q_norm, n in zip(norm_of, counts, strict=True):
        if q_norm < kept:
            size[labels[q_norm]] = size.get(labels[q_norm], 0) + int(n)
    order = sorted((c for c in size if c != OTHER), key=lambda c: (-size[c], c))
    rank = {c: i for i, c in enumerate(order)}
    rank[OTHER] = OTHER
    out_q, out_c = [], []
    for q, q_norm in zip(queries, norm_of, strict=True):
        if q_norm < kept:
            out_q.append(q)
            out_c.append(rank[labels[q_norm]])
    table = pa.table(
        {"query": pa.array(out_q, pa.string()), "cluster_id": pa.array(out_c, pa.int32())}
    )
    return table, len(queries) - len(out_q), method
