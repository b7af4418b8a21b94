"""Evaluate retrieval on golden queries: hit@k, MRR, and hand-off quality.

Golden file: JSONL of ``{"query", "expected": [entry ids], "split"?}``; ``expected: []``
marks an out-of-scope query whose right answer is a hand-off.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kbflow.index.bm25 import tokenize
from kbflow.index.version import LoadedVersion
from kbflow.store.golden import GoldenQuery


def auroc(pos: list[float], neg: list[float]) -> float | None:
    """Probability that a random positive outranks a random negative (ties count half)."""
    if not pos or not neg:
        return None
    p = np.asarray(pos)[:, None]
    n = np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def evaluate(
    version: LoadedVersion,
    queries: list[GoldenQuery],
    query_vectors: np.ndarray | None,
    weight: float | None = None,
    threshold: float | None = None,
    candidates: int = 50,
) -> dict[str, Any]:
    """Metrics of ``version`` on ``queries`` (vectors row-aligned; None = keyword only)."""
    thr = version.threshold if threshold is None else threshold
    dense_ok = query_vectors is not None
    ranks: list[int | None] = []
    top_in: list[float] = []
    top_out: list[float] = []
    failures: list[dict[str, Any]] = []
    for i, q in enumerate(queries):
        qv = query_vectors[i] if dense_ok and query_vectors is not None else None
        c = version.candidates(qv, tokenize(q.query), n=candidates)
        s = version.fuse(c, weight, dense_available=dense_ok)
        order = np.argsort(-s, kind="stable")
        ranked = [version.entry_ids[int(c.entries[j])] for j in order]
        top = float(s[order[0]]) if len(order) else 0.0
        if q.expected:
            rank = next((r + 1 for r, e in enumerate(ranked) if e in q.expected), None)
            ranks.append(rank)
            top_in.append(top)
            if rank != 1 and len(failures) < 50:
                failures.append(
                    {
                        "query": q.query,
                        "expected": list(q.expected),
                        "got": ranked[:3],
                        "rank": rank,
                    }
                )
        else:
            top_out.append(top)
    n = len(ranks)
    res: dict[str, Any] = {"n": n, "n_out_of_scope": len(top_out), "version": version.version}
    for k in (1, 3, 10):
        res[f"hit@{k}"] = round(sum(1 for r in ranks if r and r <= k) / n, 4) if n else None
    res["mrr"] = round(sum(1 / r for r in ranks if r) / n, 4) if n else None
    if top_out:
        handed_in = sum(1 for s in top_in if s < thr)
        handed_out = sum(1 for s in top_out if s < thr)
        handed = handed_in + handed_out
        a = auroc(top_out, top_in)
        res["handoff"] = {
            "threshold": round(thr, 4),
            "precision": round(handed_out / handed, 4) if handed else None,
            "recall": round(handed_out / len(top_out), 4),
            "auroc": round(1 - a, 4) if a is not None else None,
        }
    res["failures"] = failures
    return res
