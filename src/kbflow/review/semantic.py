"""Semantic near-duplicates: different entries whose questions mean the same.

MinHash (``kbflow.clean``) merges copies with small edits; it cannot see that "How do I change
my shipping address?" and "Can I edit the delivery details on an order?" ask the same thing.
This pass compares meaning: every entry contributes its **title and similar-question vectors**
(answers and SOP sections are left out: two entries about one topic share answer vocabulary
without asking the same question). Pairs are found with FAISS nearest-neighbour search, never
Python loops over pairs: each vector's ``k`` nearest vectors of *other* entries (exact
inner-product search up to ``exact_search_max`` vectors, IVF above), kept when the cosine is at
least the version's threshold. An entry pair's score is its best vector pair; the matched
texts are kept so a reviewer sees why. Pairs are not merged: they go to a review table.

**The threshold is calibrated per version and model, not a constant.** What a cosine means
depends on the model and the KB's language and domain (all-MiniLM-L6-v2 gives 0.85 to two
different English FAQ entries on one topic, and 1.0 to unrelated Chinese titles it cannot
read). From the version's own vectors:

* *positives*: pairs of texts the KB says mean the same, the title and similar questions of
  one entry (title-question and question-question pairs), scored by cosine;
* *negatives*: random pairs of different entries (every pair for small KBs), scored like the
  pass scores a pair: the best cosine between their title/question vectors. Almost all of them
  mean different things. Sampled as the cross products of random blocks of entries, one matrix
  product each, so millions cost seconds.

``false_pair_rate`` (default 5%) is the share of entries that may be listed with a partner
that means something else. An entry meets ``N - 1`` others, so the share of random entry pairs
allowed at or above the threshold is ``p = false_pair_rate / (N - 1)`` and the expected number
of false pairs in the list is about ``false_pair_rate * N / 2``: it grows with the KB, like the
true duplicates, instead of with the square of its size as a per-pair rate would. The
threshold is the lowest score that at most a share ``p`` of the negatives reaches:

* **read off the negatives** when at least 10 of them lie above it: the pass samples
  ``10 (N - 1) / false_pair_rate`` pairs for that (200 per entry at 5%; at most
  ``calibration_pairs``, 20M, which covers 100k entries). Real duplicates are among the random
  pairs too: as long as fewer than about ``false_pair_rate / 2`` of the entries have one, they
  take less than half of the allowed share; with more, the threshold rises into them and the
  list keeps the strongest ``false_pair_rate * N / 2`` pairs.
* **extrapolated** otherwise (KBs under ~400 entries, where every pair together is too few):
  a generalized Pareto tail over the top 10% of the negatives (peaks over threshold), matched
  to their 90th, 95th and 99th percentiles, which real duplicates (above the 99th) do not move.
  Measured on the 42k entry pairs of banking77 + clinc150 + hwu64 with the default model:
  fitted on a 10% sample and extrapolated to per-pair shares of 1e-3 and 3e-4 it gave 0.6-1.0
  times the target share; 25 duplicates added to 50k random pairs move it by 0.01 (a
  likelihood or moment fit: 0.1-0.2). It is only as good as the tail is one population: on a
  Gaussian it gives 2x the share 1.5 orders of magnitude out, and a narrow topic's pairs
  bulging at the 99th percentile can send it past 1.

The positives give the recall the threshold keeps on the KB's own paraphrases (reported with
it), and a floor: the threshold is never below their 10th percentile, so no pair is reported
that is less alike than 90% of the pairs the KB itself says mean the same (a guard against
hard negatives the negatives under-sample; with the default model on real KBs it does not
bind, their paraphrase pairs being loose: examples/kb_en's 10th percentile is 0.28).

A threshold above ``max_threshold`` means the model cannot tell paraphrases from unrelated
entries on this KB at that rate: the pass reports nothing and says why (the embedded English
model on a Chinese KB always ends here). With fewer than ``min_positives`` positive pairs or
``min_entries`` entries there is too little to calibrate on, and the model's default from
``ReviewSettings.default_thresholds`` is used, unless the model does not cover the KB's
language, in which case the pass is skipped.

Measured with all-MiniLM-L6-v2 (calibrated thresholds at 5% / 1%): examples/kb_en 0.84 / 0.92,
banking77 0.91 / 0.97, hwu64 0.92 / 1.01 (cannot separate), clinc150 above 1 (its 150 intents
are deliberately confusable); the model scores paraphrases without shared words 0.70-0.80 and
different English FAQ entries on one topic up to 0.85, so on real KBs it finds the close
rewordings, not the free paraphrases. Its default, 0.9, sits between those calibrations.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kbflow.index.dense import load_faiss
from kbflow.settings import ReviewSettings

log = logging.getLogger(__name__)


__all__ = [
    "SemanticThreshold",
    "SemanticPairs",
    "calibrate_threshold",
    "default_threshold",
    "entry_index_table",
    "find_semantic_duplicates",
    "neighbour_pairs",
    "negative_scores",
    "positive_scores",
    "update_semantic_duplicates",
]


#: Share of the negatives the generalized Pareto tail is fitted to.
TAIL_SHARE = 0.1


#: The threshold is never below this quantile of the positives (see the module doc).
POSITIVE_FLOOR = 0.1


#: Negatives expected above the threshold for reading it off them instead of a fitted tail.
MIN_EXCEEDANCES = 10


_QUERY_BATCH = 16_384


@dataclass
class SemanticThreshold:
    """How a version's semantic threshold was chosen (stored in the review stage's summary)."""

    model_key: str
    threshold: float | None
    """None: the pass is skipped (see ``method`` and ``reason``)."""
    method: str
    """``calibrated`` | ``default`` | ``cannot_separate`` | ``not_covered``."""
    reason: str
    false_pair_rate: float
    per_pair_rate: float | None = None
    entries: int = 0
    positives: int = 0
    negatives: int = 0
    recall_positives: float | None = None
    """Share of the KB's own paraphrase pairs at or above the threshold."""
    negative_share: float | None = None
    """Share of the sampled random entry pairs at or above the threshold."""
    tail: dict[str, float] = field(default_factory=dict)
    """``u`` (top-decile start), ``sigma``, ``xi`` of the fitted tail, when it was used."""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("threshold", "per_pair_rate", "recall_positives", "negative_share"):
            if out[k] is not None:
                out[k] = round(float(out[k]), 6)
        out["tail"] = {k: round(float(v), 6) for k, v in self.tail.items()}
        return out


@dataclass
class SemanticPairs:
    """Entry pairs at or above the threshold, best score first (``a < b`` as entry indices).

    ``vec_a``/``vec_b`` are the matched vectors (rows of the input), ``vec_a`` of entry
    ``a``. ``candidates``: vector pairs above the threshold before grouping by entry pair."""

    a: np.ndarray
    b: np.ndarray
    score: np.ndarray
    vec_a: np.ndarray
    vec_b: np.ndarray
    calibration: SemanticThreshold
    candidates: int = 0
    excluded: int = 0
    truncated: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.a)


def entry_index_table(owner: np.ndarray, n_entries: int, width: int) -> np.ndarray:
    """``(n_entries, width)`` rows of vector indices per entry, in input order, ``-1`` padded.

    ``owner[i]`` is the entry index of vector ``i``; only the first ``width`` vectors of an
    entry are kept (put the title first)."""
    owner = np.asarray(owner, dtype=np.int64)
    order = np.argsort(owner, kind="stable")
    sorted_owner = owner[order]
    starts = np.searchsorted(sorted_owner, np.arange(n_entries))
    pos = np.arange(len(owner)) - starts[sorted_owner]
    table = np.full((n_entries, width), -1, dtype=np.int64)
    keep = pos < width
    table[sorted_owner[keep], pos[keep]] = order[keep]
    return table


def _block_max(vectors: np.ndarray, table: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` best cosines between the vectors of entries ``a[i]`` and ``b[j]``.

    One BLAS product per chunk of ``a`` against all of ``b``'s vectors, then per-entry maxima
    with ``reduceat`` along both axes: every entry has its title vector, so no segment is empty.
    """

    def ragged(entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = table[entries]
        counts = (rows >= 0).sum(axis=1)
        return rows[rows >= 0], np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)

    flat_b, starts_b = ragged(b)
    vb_t = np.ascontiguousarray(vectors[flat_b].T)
    out = np.empty((len(a), len(b)), dtype=np.float32)
    chunk = max(1, 4_000_000 // max(1, len(flat_b)))  # rows x len(flat_b) floats of ~16 MB
    for lo in range(0, len(a), chunk):
        flat_a, starts_a = ragged(a[lo : lo + chunk])
        sims = vectors[flat_a] @ vb_t
        sims = np.maximum.reduceat(sims, starts_b, axis=1)
        out[lo : lo + chunk] = np.maximum.reduceat(sims, starts_a, axis=0)
    return out


def negative_scores(
    vectors: np.ndarray,
    owner: np.ndarray,
    n_entries: int,
    n_pairs: int,
    width: int = 8,
    seed: int = 0,
) -> np.ndarray:
    """Scores of at least ``n_pairs`` random pairs of different entries (every pair when the KB
    has no more): the best cosine between their first ``width`` vectors (title first).

    Sampled as the cross products of random disjoint blocks of entries, so each block is one
    matrix product: the pairs of a block share entries, but every pair is a uniformly random
    pair of different entries, which is all the threshold needs."""
    if n_entries < 2:
        return np.zeros(0, dtype=np.float32)
    table = entry_index_table(owner, n_entries, width)
    total = n_entries * (n_entries - 1) // 2
    if total <= n_pairs:
        parts = []
        everyone = np.arange(n_entries)
        step = max(1, 2_000_000 // n_entries)
        for lo in range(0, n_entries - 1, step):
            rows = everyone[lo : lo + step]
            block = _block_max(vectors, table, rows, everyone[lo + 1 :])
            # row r (entry lo + r) keeps its pairs with entries after it
            keep = np.arange(len(everyone) - lo - 1)[None, :] >= np.arange(len(rows))[:, None]
            parts.append(block[keep])
        return np.concatenate(parts)
    rng = np.random.default_rng(seed)
    n_blocks = -(-n_pairs // 3000**2)  # blocks of at most 3000 x 3000 entries
    side = min(n_entries // 2, math.ceil(math.sqrt(n_pairs / n_blocks)))
    parts = []
    for _ in range(n_blocks):
        perm = rng.permutation(n_entries)[: 2 * side]
        parts.append(_block_max(vectors, table, perm[:side], perm[side:]).ravel())
    return np.concatenate(parts)


def positive_scores(
    vectors: np.ndarray,
    owner: np.ndarray,
    n_entries: int,
    max_pairs: int = 20_000,
    width: int = 8,
    seed: int = 0,
) -> np.ndarray:
    """Cosines of the pairs of vectors within one entry (title-question, question-question):
    texts the KB states mean the same. A seeded sample of ``max_pairs`` when there are more."""
    table = entry_index_table(owner, n_entries, width)
    counts = (table >= 0).sum(axis=1)
    multi = np.flatnonzero(counts >= 2)
    if len(multi) == 0:
        return np.zeros(0, dtype=np.float32)
    i, j = np.triu_indices(width, 1)
    rows = table[multi]
    ok = (rows[:, i] >= 0) & (rows[:, j] >= 0)
    ea, eb = rows[:, i][ok], rows[:, j][ok]
    if len(ea) > max_pairs:
        pick = np.random.default_rng(seed).choice(len(ea), size=max_pairs, replace=False)
        ea, eb = ea[pick], eb[pick]
    return np.einsum("ij,ij->i", vectors[ea], vectors[eb]).astype(np.float32)


def default_threshold(model_key: str, settings: ReviewSettings) -> float:
    """The model's fallback threshold: by model key (``name@dim``), then name, then the
    generic default."""
    table = settings.default_thresholds
    name = model_key.split("@", 1)[0]
    return float(table.get(model_key, table.get(name, settings.default_threshold)))


def _gpd_quantile(neg: np.ndarray, p: float) -> tuple[float, dict[str, float]]:
    """Score exceeded by a share ``p`` of random pairs, from a generalized Pareto tail over
    the top ``TAIL_SHARE`` of ``neg`` matched to its 90th, 95th and 99th percentiles.

    Quantile matching instead of a moment or likelihood fit: the real duplicates hiding among
    random pairs sit above the 99th percentile, where they would pull any fit that uses every
    exceedance; three quantiles below them do not move."""
    u, q95, q99 = (
        float(x)
        for x in np.quantile(neg, [1 - TAIL_SHARE, 1 - TAIL_SHARE / 2, 1 - TAIL_SHARE / 10])
    )
    a, b = q95 - u, q99 - u
    if a <= 1e-9:  # the top decile is one value (a model that maps every text alike)
        return max(u, q99), {"u": u, "q95": q95, "q99": q99, "sigma": 0.0, "xi": 0.0}
    # S(u + x) / TAIL_SHARE = (1 + xi x / sigma)^(-1/xi): at q95 it is 1/2, at q99 1/10, so
    # (10^xi - 1) / (2^xi - 1) = b / a, increasing in xi; solved by bisection on [-1, 1].
    ratio = min(max(b / a, 1.8 + 1e-9), 9 - 1e-9)
    lo, hi = -1.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        g = math.log(10) / math.log(2) if abs(mid) < 1e-12 else (10**mid - 1) / (2**mid - 1)
        lo, hi = (lo, mid) if g > ratio else (mid, hi)
    xi = (lo + hi) / 2
    sigma = a / math.log(2) if abs(xi) < 1e-9 else xi * a / (2**xi - 1)
    r = TAIL_SHARE / p
    t = u + sigma * math.log(r) if abs(xi) < 1e-9 else u + sigma / xi * (r**xi - 1)
    return t, {"u": u, "q95": q95, "q99": q99, "sigma": sigma, "xi": xi}


def _empirical(neg: np.ndarray, p: float) -> float:
    """Lowest score that at most a share ``p`` of ``neg`` reaches (the ``floor(p n)``-th highest,
    found by a partition: a full sort of 20M scores took 1.5 s)."""
    k = len(neg) - 1 - min(len(neg) - 1, int(math.floor(p * len(neg))))
    return float(np.nextafter(np.partition(neg, k)[k], np.inf))


def calibrate_threshold(
    positives: np.ndarray,
    negatives: np.ndarray,
    n_entries: int,
    model_key: str,
    settings: ReviewSettings,
    model_covers_kb: bool = True,
) -> SemanticThreshold:
    """Choose the semantic threshold for a version (the rule is in the module doc).

    ``positives``: cosines of same-entry paraphrase pairs; ``negatives``: best cosines of
    random pairs of different entries; ``n_entries``: entries in the version. Pure."""
    rate = settings.false_pair_rate
    pos = np.asarray(positives, dtype=np.float64)
    neg = np.asarray(negatives, dtype=np.float64)
    common = {
        "model_key": model_key,
        "false_pair_rate": rate,
        "entries": n_entries,
        "positives": len(pos),
        "negatives": len(neg),
    }

    def shares(t: float) -> dict[str, float | None]:
        return {
            "recall_positives": float((pos >= t).mean()) if len(pos) else None,
            "negative_share": float((neg >= t).mean()) if len(neg) else None,
        }

    if n_entries < settings.min_entries or (
        len(pos) < settings.min_positives and not model_covers_kb
    ):
        if not model_covers_kb:
            return SemanticThreshold(
                threshold=None,
                method="not_covered",
                reason="too little to calibrate on, and the model does not cover the KB's language",
                **common,  # type: ignore[arg-type]
            )
        t = default_threshold(model_key, settings)
        return SemanticThreshold(
            threshold=t,
            method="default",
            reason=f"{n_entries} entries: below min_entries={settings.min_entries}",
            **common,  # type: ignore[arg-type]
            **shares(t),  # type: ignore[arg-type]
        )
    p = rate / max(1, n_entries - 1)
    tail: dict[str, float] = {}
    if p * len(neg) >= MIN_EXCEEDANCES:
        t = _empirical(neg, p)
        how = f"share {p:.2e} of {len(neg)} random entry pairs, read off them"
    else:
        t, tail = _gpd_quantile(neg, p)
        how = (
            f"generalized Pareto tail of {len(neg)} random entry pairs (matched to their 90th, "
            f"95th and 99th percentiles), extrapolated to a per-pair share of {p:.2e}"
        )
    if len(pos) < settings.min_positives:
        how += (
            f" (no paraphrase floor: {len(pos)} same-entry pairs, under {settings.min_positives})"
        )
    elif math.isfinite(t):
        floor = float(np.quantile(pos, POSITIVE_FLOOR))
        if floor > t:
            t = min(floor, settings.max_threshold)
            how += (
                f"; raised to {t:.3f}, the {POSITIVE_FLOOR:.0%} quantile of the KB's own "
                "paraphrase pairs"
            )
    if not math.isfinite(t) or t > settings.max_threshold:
        return SemanticThreshold(
            threshold=None,
            method="cannot_separate",
            reason=f"keeping false pairs under {rate:.1%} of entries needs a cosine above "
            f"{settings.max_threshold} ({'inf' if not math.isfinite(t) else round(t, 3)}): "
            "the model does not separate paraphrases from unrelated entries on this KB",
            per_pair_rate=p,
            tail=tail,
            **common,  # type: ignore[arg-type]
            **shares(settings.max_threshold),  # type: ignore[arg-type]
        )
    return SemanticThreshold(
        threshold=t,
        method="calibrated",
        reason=how,
        per_pair_rate=p,
        tail=tail,
        **common,  # type: ignore[arg-type]
        **shares(t),  # type: ignore[arg-type]
    )


def _knn_index(vectors: np.ndarray, settings: ReviewSettings, seed: int) -> Any:
    faiss = load_faiss()

    n, d = vectors.shape
    index: Any
    if n <= settings.exact_search_max:
        index = faiss.IndexFlatIP(d)
    else:
        # sqrt(n) lists of ~sqrt(n) vectors: training stays cheap (10 k-means passes over 40
        # points a list) and a probe scans few vectors. Near-duplicates (cosine >= 0.75) land in
        # the same list almost always, and each vector of a pair searches for the other, so one
        # probe finds ~99% of them (bench/bench_semantic.py measures it).
        nlist = int(max(64, round(math.sqrt(n))))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=min(n, 40 * nlist), replace=False))
        index.train(np.ascontiguousarray(vectors[sample]))
        index.nprobe = min(settings.nprobe, nlist)
    index.add(vectors)
    return index


def neighbour_pairs(
    vectors: np.ndarray,
    owner: np.ndarray,
    threshold: float,
    settings: ReviewSettings,
    seed: int = 0,
    queries: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vector pairs ``(i, j, cosine)`` of different entries with cosine >= ``threshold``, from
    each vector's nearest neighbours (``k_neighbors`` of other entries, plus room for its own
    entry's vectors, which are nearest and skipped). Each unordered pair once.

    ``queries`` (vector rows): search from those only, with twice the neighbours, since a pair
    of a query and another vector is then found from the query's side alone (a whole review
    finds it from either side); the index still holds every vector."""
    n = len(vectors)
    owner = np.asarray(owner, dtype=np.int64)
    if n < 2 or (queries is not None and len(queries) == 0):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    own = int(np.bincount(owner).max())
    k = settings.k_neighbors * (1 if queries is None else 2)
    k = min(n, k + min(own, 16))
    index = _knn_index(vectors, settings, seed)
    rows = np.arange(n, dtype=np.int64) if queries is None else np.asarray(queries, np.int64)
    qs: list[np.ndarray] = []
    ns: list[np.ndarray] = []
    ss: list[np.ndarray] = []
    for lo in range(0, len(rows), _QUERY_BATCH):
        batch = rows[lo : lo + _QUERY_BATCH]
        scores, ids = index.search(np.ascontiguousarray(vectors[batch]), k)
        q = np.repeat(batch, k).reshape(len(batch), k)
        keep = (ids >= 0) & (scores >= threshold)
        keep &= owner[np.maximum(ids, 0)] != owner[q]
        qs.append(q[keep])
        ns.append(ids[keep].astype(np.int64))
        ss.append(scores[keep].astype(np.float32))
    i, j, s = np.concatenate(qs), np.concatenate(ns), np.concatenate(ss)
    lo_, hi_ = np.minimum(i, j), np.maximum(i, j)
    key = lo_ * n + hi_
    _, first = np.unique(key, return_index=True)
    return lo_[first], hi_[first], s[first]


def find_semantic_duplicates(
    vectors: np.ndarray,
    owner: np.ndarray,
    n_entries: int,
    model_key: str,
    settings: ReviewSettings,
    exclude: set[tuple[int, int]] | None = None,
    model_covers_kb: bool = True,
    seed: int = 0,
) -> SemanticPairs:
    """Calibrate the threshold on these vectors, then find the entry pairs above it.

    ``vectors``: L2-normalised float32 title/similar-question vectors, ``owner[i]`` the entry
    index (``0..n_entries-1``) of row ``i``, each entry's title first. ``exclude``: entry
    index pairs ``(min, max)`` not to report (already merged by MinHash). Returns at most
    ``max_pairs`` pairs, highest score first. Deterministic for a seed."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    owner = np.asarray(owner, dtype=np.int64)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    pos = positive_scores(
        vectors, owner, n_entries, width=settings.max_vectors_per_entry, seed=seed
    )
    # enough pairs to read the threshold off them: MIN_EXCEEDANCES above it at the target share
    wanted = math.ceil(MIN_EXCEEDANCES * max(1, n_entries - 1) / settings.false_pair_rate)
    neg = negative_scores(
        vectors,
        owner,
        n_entries,
        min(settings.calibration_pairs, max(100_000, wanted)),
        width=settings.max_vectors_per_entry,
        seed=seed,
    )
    cal = calibrate_threshold(pos, neg, n_entries, model_key, settings, model_covers_kb)
    timings["calibrate"] = round(time.perf_counter() - start, 3)
    empty_i = np.zeros(0, dtype=np.int64)
    if cal.threshold is None:
        return SemanticPairs(
            empty_i, empty_i, np.zeros(0, np.float32), empty_i, empty_i, cal, seconds=timings
        )
    start = time.perf_counter()
    vi, vj, s = neighbour_pairs(vectors, owner, cal.threshold, settings, seed)
    timings["search"] = round(time.perf_counter() - start, 3)
    return _entry_pairs(vi, vj, s, owner, n_entries, cal, settings, exclude, timings)


def update_semantic_duplicates(
    vectors: np.ndarray,
    owner: np.ndarray,
    n_entries: int,
    calibration: SemanticThreshold,
    settings: ReviewSettings,
    changed: np.ndarray,
    kept: tuple[np.ndarray, np.ndarray, np.ndarray],
    exclude: set[tuple[int, int]] | None = None,
    seed: int = 0,
) -> SemanticPairs:
    """``find_semantic_duplicates`` of a version that changed little since one already reviewed:
    with that review's threshold (``calibration``), its vector pairs between entries that did
    not change (``kept``: ``(i, j, cosine)`` as rows of ``vectors``), and a search from the
    vectors of the ``changed`` entries (bool per entry: new, or title/questions edited) alone.
    A pair of unchanged entries has the same vectors and cosine as before, so only pairs with a
    changed entry need looking for; the FAISS index still holds every vector."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    owner = np.asarray(owner, dtype=np.int64)
    timings: dict[str, float] = {}
    empty_i = np.zeros(0, dtype=np.int64)
    if calibration.threshold is None:
        return SemanticPairs(
            empty_i, empty_i, np.zeros(0, np.float32), empty_i, empty_i, calibration
        )
    start = time.perf_counter()
    queries = np.flatnonzero(changed[owner])
    vi, vj, s = neighbour_pairs(vectors, owner, calibration.threshold, settings, seed, queries)
    vi = np.concatenate([kept[0].astype(np.int64), vi])
    vj = np.concatenate([kept[1].astype(np.int64), vj])
    s = np.concatenate([kept[2].astype(np.float32), s])
    timings["search"] = round(time.perf_counter() - start, 3)
    return _entry_pairs(vi, vj, s, owner, n_entries, calibration, settings, exclude, timings)


def _entry_pairs(
    vi: np.ndarray,
    vj: np.ndarray,
    s: np.ndarray,
    owner: np.ndarray,
    n_entries: int,
    cal: SemanticThreshold,
    settings: ReviewSettings,
    exclude: set[tuple[int, int]] | None,
    timings: dict[str, float],
) -> SemanticPairs:
    """Vector pairs grouped into entry pairs (best vector pair each), ``exclude``d pairs
    dropped, best first, at most ``max_pairs``."""
    start = time.perf_counter()
    ea, eb = owner[vi], owner[vj]
    swap = ea > eb
    a = np.where(swap, eb, ea)
    b = np.where(swap, ea, eb)
    va = np.where(swap, vj, vi)
    vb = np.where(swap, vi, vj)
    # best vector pair per entry pair: sort by (pair, -score), keep the first of each pair
    key = a * n_entries + b
    order = np.lexsort((-s, key))
    key, a, b, s, va, vb = key[order], a[order], b[order], s[order], va[order], vb[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    a, b, s, va, vb = a[first], b[first], s[first], va[first], vb[first]
    excluded = 0
    if exclude:
        drop = np.fromiter(
            ((int(x), int(y)) in exclude for x, y in zip(a, b, strict=True)), bool, len(a)
        )
        excluded = int(drop.sum())
        a, b, s, va, vb = a[~drop], b[~drop], s[~drop], va[~drop], vb[~drop]
    order = np.lexsort((b, a, -s))
    truncated = max(0, len(order) - settings.max_pairs)
    order = order[: settings.max_pairs]
    timings["group"] = round(time.perf_counter() - start, 3)
    log.info(
        "semantic: %d entries, %d vector pairs -> %d entry pairs (threshold %s, %s)",
        n_entries,
        len(vi),
        len(order),
        cal.threshold if cal.threshold is None else round(cal.threshold, 3),
        cal.method,
    )
    return SemanticPairs(
        a[order],
        b[order],
        s[order],
        va[order],
        vb[order],
        cal,
        candidates=len(vi),
        excluded=excluded,
        truncated=truncated,
        seconds=timings,
    )
