"""Gap queries into topics.

MinHash over character bigrams of the normalised text (datasketch), LSH for candidates,
verified by exact Jaccard, leader clustering (each query joins the most similar more frequent
leader, so topics do not chain into each other). It was chosen when the only embedded model was
English-only and scored below keyword matching on Chinese; the bundled multilingual model reads
Chinese now, and clustering over the live version's own query vectors is the next step (it would
group paraphrases that share few characters). Until then: users' paraphrases of one missing
topic (typos, inserted particles, reordered words) keep most of their character bigrams, so
Jaccard groups them without a model, deterministically, at ~50k queries/s. Clustering works on
distinct normalised texts, the ``max_gap_queries`` most frequent of them (the long tail beyond
that is left unclustered and counted in the summary)."""

from __future__ import annotations

import unicodedata

import pyarrow as pa

from kbflow.settings import MiningSettings

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


def assign_gap_clusters(gap_queries: pa.Table, settings: MiningSettings) -> tuple[pa.Table, int]:
    """Map raw gap queries (``query``, ``n_events``, most frequent first) to cluster ids.

    Raw texts that normalise to the same string share a cluster; distinct normalised texts
    beyond ``max_gap_queries`` are left out. Clusters are renumbered by total events (largest
    first) so ``cluster_id`` 0 is the biggest topic. Returns (``query``, ``cluster_id``) and the
    number of raw queries left out."""
    queries = gap_queries.column("query").to_pylist()
    counts = gap_queries.column("n_events").to_pylist()
    norm_index: dict[str, int] = {}
    norm_of: list[int] = []
    for q in queries:
        key = normalize_query(q) or q
        norm_of.append(norm_index.setdefault(key, len(norm_index)))
    kept = min(len(norm_index), settings.max_gap_queries)
    norms = list(norm_index)[:kept]
    labels = cluster_texts(norms, settings.cluster_threshold, settings.num_perm)
    size: dict[int, int] = {}
    for q_norm, n in zip(norm_of, counts, strict=True):
        if q_norm < kept:
            size[labels[q_norm]] = size.get(labels[q_norm], 0) + int(n)
    order = sorted(size, key=lambda c: (-size[c], c))
    rank = {c: i for i, c in enumerate(order)}
    out_q, out_c = [], []
    for q, q_norm in zip(queries, norm_of, strict=True):
        if q_norm < kept:
            out_q.append(q)
            out_c.append(rank[labels[q_norm]])
    table = pa.table(
        {"query": pa.array(out_q, pa.string()), "cluster_id": pa.array(out_c, pa.int32())}
    )
    return table, len(queries) - len(out_q)
