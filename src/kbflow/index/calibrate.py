"""Per-version calibration: the fusion weight, the BM25 scale and the hand-off threshold.

The weight is chosen on the KB's own similar questions, each held out with its near copies, plus
the golden queries of every split but ``test``; the threshold from out-of-scope golden queries
(Youden's J), else from held-out questions, else the settings' default."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kbflow.chunk.overlay import fold
from kbflow.embed.adapter import make_version_embedder, queries_reuse_passages
from kbflow.index.bm25 import cjk_share, tokenize
from kbflow.index.version import (
    WEIGHT_GRID,
    Candidates,
    LoadedVersion,
    held_out_rows,
    self_check_rows,
)
from kbflow.settings import Settings
from kbflow.store.golden import GoldenQuery, calibration_queries, sample_golden

log = logging.getLogger(__name__)


#: Dense weight without enough queries to calibrate on, when the model covers the KB's language.
#: On bq (titles only, nothing to calibrate on) with multilingual-e5-small, hit@3 by weight on the
#: dense scale: 0.5 0.286, 0.6 0.287, 0.7 0.282, 0.8 0.280 (keyword alone 0.243, dense 0.270).
PRIOR_WEIGHT = 0.6


@dataclass
class VersionCalibration:
    dense_weight: float
    bm25_scale: float
    handoff_threshold: float
    method: str
    queries: int
    scores_by_weight: dict[str, float] = field(default_factory=dict)
    self_check: dict[str, float] = field(default_factory=dict)
    threshold_method: str = ""
    golden_queries: int = 0

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def bm25_scale(version: LoadedVersion, sample: int = 300, seed: int = 0) -> float:
    """Median BM25 score of a passage queried with its own text (what a perfect match scores)."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(version.n_passages, size=min(sample, version.n_passages), replace=False)
    selfs = []
    for r in rows:
        s = version.bm25.scores(tokenize(version.texts[r]))
        if s[r] > 0:
            selfs.append(float(s[r]))
    return float(np.median(selfs)) if selfs else 1.0


def _rank_of(entries: np.ndarray, scores: np.ndarray, target: int | set[int]) -> int | None:
    """Rank of the best-placed target entry (1 = top), None when no target is a candidate."""
    targets = {target} if isinstance(target, int) else target
    hit = np.nonzero(np.isin(entries, list(targets)))[0]
    if len(hit) == 0:
        return None
    s = scores[hit].max()
    # ties rank pessimistically: an all-zero side must not look like a hit
    return int((scores >= s).sum())


@dataclass
class GoldenCalibration:
    """Golden queries usable for calibration (never the split the gate reports as test)."""

    answerable: list[Candidates]
    targets: list[set[int]]
    out_of_scope: list[Candidates]


def golden_candidates(
    version: LoadedVersion,
    queries: list[tuple[str, tuple[str, ...]]],
    query_vectors: np.ndarray | None,
    n: int = 50,
) -> GoldenCalibration:
    """Candidates of ``(query, expected entry ids)`` pairs; ``()`` = out of scope.

    Answerable queries whose expected entries are all missing from this version are skipped.
    """
    pos = {e: i for i, e in enumerate(version.entry_ids)}
    answerable: list[Candidates] = []
    targets: list[set[int]] = []
    out: list[Candidates] = []
    for i, (text, expected) in enumerate(queries):
        qv = query_vectors[i] if query_vectors is not None else None
        if expected:
            t = {pos[e] for e in expected if e in pos}
            if not t:
                continue
            answerable.append(version.candidates(qv, tokenize(text), n=n))
            targets.append(t)
        else:
            out.append(version.candidates(qv, tokenize(text), n=n))
    return GoldenCalibration(answerable, targets, out)


def handoff_threshold_from_out_of_scope(
    in_scope: list[float], out_of_scope: list[float], max_answerable_share: float = 0.1
) -> float | None:
    """Threshold that best separates answerable from out-of-scope top-1 scores.

    Maximises Youden's J (share of out-of-scope queries handed off minus share of answerable
    queries handed off), so the answer does not depend on how many of each the golden file
    happens to hold, among thresholds that hand off at most ``max_answerable_share`` of the
    answerable queries (a user who gets a human for a question the KB answers is a cost too).
    None with fewer than 10 of either.
    """
    if len(in_scope) < 10 or len(out_of_scope) < 10:
        return None
    ins = np.sort(np.asarray(in_scope))
    outs = np.sort(np.asarray(out_of_scope))
    grid = np.unique(np.concatenate([ins, outs]))
    # handed off = score < threshold; candidate thresholds just above each observed score
    thresholds = np.concatenate([grid + 1e-6, [0.0]])
    tpr = np.searchsorted(outs, thresholds, side="left") / len(outs)
    fpr = np.searchsorted(ins, thresholds, side="left") / len(ins)
    j = np.where(fpr <= max_answerable_share, tpr - fpr, -np.inf)
    return float(thresholds[int(np.argmax(j))])


def _top_scores(version: LoadedVersion, cands: list[Candidates], w: float) -> list[float]:
    out = []
    for c in cands:
        s = version.fuse(c, w)
        out.append(float(s.max()) if len(s) else 0.0)
    return out


def calibrate_version(
    version: LoadedVersion,
    query_vectors: np.ndarray | None,
    rows: list[int],
    model_covers_kb: bool,
    default_threshold: float,
    min_queries: int = 30,
    golden: GoldenCalibration | None = None,
    max_answerable_handoff: float = 0.1,
) -> VersionCalibration:
    """Choose the dense weight and hand-off threshold for this version.

    Queries: held-out similar questions (``rows``, their query vectors in ``query_vectors``)
    plus the answerable golden queries in ``golden``. With at least ``min_queries`` of them,
    every weight in ``WEIGHT_GRID`` is scored by hit@1 + 0.5 * hit@3 + 0.25 * MRR and the best
    wins (ties prefer 0.5, then dense). Otherwise the weight falls back to a language prior:
    ``PRIOR_WEIGHT`` (0.6) when the embedding model covers the KB's main language, else 0.0 (keyword only, e.g.
    an English model on a Chinese KB).

    Hand-off threshold, in order of preference: (1) with at least 10 out-of-scope and 10
    answerable golden queries, the score that best separates them (Youden's J,
    ``handoff_threshold_from_out_of_scope``, handing off at most ``max_answerable_handoff`` of
    the answerable ones); (2) the 5th percentile of the top-1 score of
    correctly answered held-out queries (about 95% of answerable queries are answered);
    (3) ``default_threshold``.
    """
    scale = bm25_scale(version)
    version.bm25_scale = scale
    cands: list[Candidates] = []
    targets: list[int | set[int]] = []
    if query_vectors is not None:
        for qv, r in zip(query_vectors, rows, strict=True):
            tokens = tokenize(version.texts[r])
            hidden = held_out_rows(version, r, tokens)
            if len(hidden) >= len(version.entry_rows[version.row_entry[r]]):
                continue
            cands.append(version.candidates(qv, tokens, exclude=hidden))
            targets.append(int(version.row_entry[r]))
    n_self = len(cands)
    if golden is not None:
        cands.extend(golden.answerable)
        targets.extend(golden.targets)
    n_golden = len(cands) - n_self
    if len(cands) < min_queries or query_vectors is None:
        w = PRIOR_WEIGHT if model_covers_kb else 0.0
        version.weight = w
        threshold, t_method = _threshold(
            version, golden, w, [], min_queries, default_threshold, max_answerable_handoff
        )
        return VersionCalibration(
            w,
            scale,
            threshold,
            "language-prior",
            len(cands),
            threshold_method=t_method,
            golden_queries=n_golden,
        )
    best: tuple[float, float] | None = None
    by_weight: dict[str, float] = {}
    metrics: dict[float, dict[str, float]] = {}
    for w in WEIGHT_GRID:
        h1 = h3 = mrr = 0.0
        for c, t in zip(cands, targets, strict=True):
            rank = _rank_of(c.entries, version.fuse(c, w), t)
            if rank:
                h1 += rank == 1
                h3 += rank <= 3
                mrr += 1 / rank
        n = len(cands)
        metrics[w] = {"hit@1": h1 / n, "hit@3": h3 / n, "mrr": mrr / n}
        objective = (h1 + 0.5 * h3 + 0.25 * mrr) / n
        by_weight[f"{w:.1f}"] = round(objective, 4)
        key = (objective, -abs(w - 0.5) + w * 1e-3)
        if best is None or key > (best[0], -abs(best[1] - 0.5) + best[1] * 1e-3):
            best = (objective, w)
    assert best is not None
    w = best[1]
    version.weight = w
    top_correct = []
    for c, t in zip(cands[:n_self], targets[:n_self], strict=True):
        s = version.fuse(c, w)
        if len(s) and c.entries[int(np.argmax(s))] == t:
            top_correct.append(float(s.max()))
    threshold, t_method = _threshold(
        version, golden, w, top_correct, min_queries, default_threshold, max_answerable_handoff
    )
    return VersionCalibration(
        w,
        scale,
        threshold,
        "held-out-similar-questions" + (" + golden" if n_golden else ""),
        len(cands),
        scores_by_weight=by_weight,
        self_check={k: round(v, 4) for k, v in metrics[w].items()},
        threshold_method=t_method,
        golden_queries=n_golden,
    )


def _threshold(
    version: LoadedVersion,
    golden: GoldenCalibration | None,
    w: float,
    top_correct: list[float],
    min_queries: int,
    default: float,
    max_answerable: float,
) -> tuple[float, str]:
    if golden is not None:
        t = handoff_threshold_from_out_of_scope(
            _top_scores(version, golden.answerable, w),
            _top_scores(version, golden.out_of_scope, w),
            max_answerable,
        )
        if t is not None:
            return round(t, 4), f"out-of-scope golden queries ({len(golden.out_of_scope)})"
    if len(top_correct) >= min_queries:
        return (
            round(float(np.percentile(top_correct, 5)), 4),
            "5th percentile of correct held-out top-1 scores",
        )
    return default, "default (search.handoff_threshold)"


def held_out_golden(version: LoadedVersion, golden: list[GoldenQuery]) -> list[GoldenQuery]:
    """The golden queries that are still held out: an answerable one the version holds word
    for word (folded) as a title or similar question (a reviewer accepted it from the logs, or
    the export took it) scores ~1 and would pull the hand-off threshold up; it is left out of
    calibration (after the review loop on hwu64, 429 of its 1,076 valid queries). Out-of-scope
    queries always count."""
    known = {
        fold(t)
        for t, k in zip(version.texts, version.kinds, strict=True)
        if k in ("title", "question")
    }
    kept = [q for q in golden if not q.expected or fold(q.query) not in known]
    if len(kept) < len(golden):
        log.info(
            "calibrate: %d golden queries are in the index now; left out", len(golden) - len(kept)
        )
    return kept


def calibration_key(golden: list[GoldenQuery], settings: Settings) -> str:
    """What a calibration was made from besides the version: its golden queries
    (``calibration_queries`` of them) and the settings it reads. A version may reuse the live
    version's calibration only when this is the same."""
    rows = sorted(
        json.dumps([q.query, sorted(q.expected), q.split], ensure_ascii=False)
        for q in calibration_queries(golden)
    )
    rows.append(
        json.dumps(
            [
                settings.search.handoff_threshold,
                settings.search.max_answerable_handoff,
                settings.gate.max_golden_queries,
            ]
        )
    )
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def calibrate_index(
    vdir: Path,
    settings: Settings,
    golden: list[GoldenQuery] | None = None,
    max_golden: int | None = None,
) -> dict[str, Any]:
    """Calibrate fusion weight and hand-off threshold on held-out similar questions and on the
    KB's golden queries (calibration splits only; see ``calibration_queries``)."""
    version = LoadedVersion(vdir)
    rows = self_check_rows(version)
    limit = settings.gate.max_golden_queries if max_golden is None else max_golden
    gold = sample_golden(held_out_golden(version, calibration_queries(golden or [])), limit)
    info = version.embedding
    needs_model = not queries_reuse_passages(info)
    embedder = (
        make_version_embedder(settings.embed, info) if (gold or (rows and needs_model)) else None
    )
    qvecs: np.ndarray | None = None
    if rows:
        if needs_model:
            assert embedder is not None
            qvecs = embedder.embed_queries([version.texts[r] for r in rows])
        else:
            # documents and queries are embedded the same way: a question passage's vector is its query vector
            qvecs = np.asarray(version.vectors[rows])
    gcal = None
    if gold:
        assert embedder is not None
        gvecs = embedder.embed_queries([q.query for q in gold])
        gcal = golden_candidates(version, [(q.query, q.expected) for q in gold], gvecs)
    share = cjk_share(version.titles[:5000])
    kb_lang = "zh" if share > 0.5 else "en"
    covers = "multi" in info.get("languages", []) or kb_lang in info.get("languages", [])
    if qvecs is None and gcal is not None:
        qvecs, rows = np.zeros((0, version.vectors.shape[1]), np.float32), []
    cal = calibrate_version(
        version,
        qvecs,
        rows,
        covers,
        settings.search.handoff_threshold,
        golden=gcal,
        max_answerable_handoff=settings.search.max_answerable_handoff,
    )
    out = cal.as_dict()
    out["key"] = calibration_key(golden or [], settings)
    out["kb_language"] = kb_lang
    out["cjk_share"] = round(share, 3)
    log.info(
        "calibrate: dense weight %.1f (%s, %d queries), bm25 scale %.2f, hand-off threshold %.3f (%s)",
        cal.dense_weight,
        cal.method,
        cal.queries,
        cal.bm25_scale,
        cal.handoff_threshold,
        cal.threshold_method,
    )
    return out
