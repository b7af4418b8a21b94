"""Clean stage: validated raw rows in (``RAW_ROW``), publishable canonical entries out.

Order of decisions, each input row getting exactly one outcome (``ROW_OUTCOME``):

1. normalise title, answer, similar questions and category (``normalize_text``);
2. status draft/archived (anything but published) -> ``unpublished``;
3. not yet effective -> ``unpublished``; expired (``expires_at`` or a deadline phrase) ->
   ``stale``;
4. exact duplicates (same content hash of the normalised title and answer) -> one canonical;
5. near duplicates among those canonicals: MinHash (datasketch 2.0 signatures) over
   character shingles, LSH banding with the settings' bands x rows for candidates (the same
   buckets as datasketch's ``MinHashLSH``), candidates far below the threshold by their
   MinHash estimate dropped (a true pair is lost with probability < 1e-9), the rest verified
   by exact Jaccard, clusters by union-find;
6. the canonical of a cluster is the newest ``updated_at``, then the longest answer, then the
   smallest id; it absorbs the others' titles and similar questions.

Everything is deterministic and independent of the input row order.
"""

from __future__ import annotations

import gc
import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from kbflow.contracts import CLEAN_ENTRY, DEDUP_MERGE, RAW_ROW, ROW_OUTCOME, STALE_ENTRY
from kbflow.errors import AccountingError, ConfigError, ContractError
from kbflow.expiry import find_expiry, find_not_yet_effective, parse_date
from kbflow.normalize import hash_normalized, normalize_text, shingle_text
from kbflow.settings import CleanSettings

log = logging.getLogger(__name__)

__all__ = [
    "CleanResult",
    "clean_rows",
    "estimated_jaccard",
    "lsh_candidate_pairs",
    "minhash_signatures",
    "screen_margin",
    "shingle_hash32",
]

#: Characters of the answer that go into the near-duplicate fingerprint: long answers that
#: share their first 2,000 characters are the same entry for dedup purposes.
ANSWER_PREFIX_CHARS = 2000
#: datasketch's default seed; signatures are the ones ``MinHash(seed=1)`` would compute.
MINHASH_SEED = 1

_M64 = (1 << 64) - 1
_GRAM_MULT = 0x9E3779B97F4A7C15  # odd 64-bit constant (golden ratio) for the polynomial hash
_CHUNK_DOCS = 4096


@dataclass
class CleanResult:
    """What ``clean_rows`` produces.

    ``entries``: ``CLEAN_ENTRY``, only publishable canonical entries, in input row order.
    ``merges``: ``DEDUP_MERGE``, one row per merged (duplicate) input row.
    ``stale``: ``STALE_ENTRY``, every row not published because of a date: expired
    (reason ``expires_at``/``date_phrase``) or not yet effective (reason ``effective_from``).
    ``outcomes``: ``ROW_OUTCOME``, exactly one row per input row.
    ``counts``: read, indexed, duplicate, duplicate_exact, duplicate_near, stale, unpublished,
    not_yet_effective (a part of unpublished), near_candidate_pairs (from LSH),
    near_screened_pairs (left after the MinHash screen, checked by exact Jaccard),
    near_verified_pairs (pairs that passed and joined two clusters).
    """

    entries: pa.Table
    merges: pa.Table
    stale: pa.Table
    outcomes: pa.Table
    counts: dict[str, int]


# --- MinHash fast path ------------------------------------------------------------------------


def _fmix64_int(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _M64
    return h ^ (h >> 33)


def shingle_hash32(gram: str) -> int:
    """32-bit hash of one shingle: a 64-bit polynomial over its code points, MurmurHash3-mixed.

    The scalar twin of the vectorised hashing in ``minhash_signatures``: ``MinHash(
    hashfunc=shingle_hash32)`` updated with a text's shingles has the same hash values.
    """
    h = 0
    for ch in gram:
        h = (h * _GRAM_MULT + ord(ch) + 1) & _M64
    return _fmix64_int(h) & 0xFFFFFFFF


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    # datasketch 2.0's "affine32" scheme pre-mixes every input hash with this finalizer.
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _permutations(num_perm: int) -> np.ndarray:
    """datasketch's permutation parameters ``(a, b)``, shape ``(2, num_perm)``, uint32."""
    from datasketch import MinHash

    return np.asarray(
        MinHash(num_perm=num_perm, seed=MINHASH_SEED, scheme="affine32").permutations,
        dtype=np.uint32,
    )


def _signature_chunk(texts: Sequence[str], k: int, perms: np.ndarray) -> np.ndarray:
    lens = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    cps = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    offsets = np.cumsum(lens) - lens
    n_grams = np.where(lens >= k, lens - k + 1, 1)
    gram_starts = np.cumsum(n_grams) - n_grams
    total = int(n_grams.sum())
    pos = np.arange(total, dtype=np.int64) + np.repeat(offsets - gram_starts, n_grams)
    gram_len = np.repeat(np.minimum(lens, k), n_grams)
    h = cps[pos] + np.uint64(1)
    last = len(cps) - 1
    for j in range(1, k):
        nxt = h * np.uint64(_GRAM_MULT) + cps[np.minimum(pos + j, last)] + np.uint64(1)
        h = np.where(gram_len > j, nxt, h)
    hv = _fmix32((_fmix64(h) & np.uint64(0xFFFFFFFF)).astype(np.uint32))
    a, b = perms
    out = np.empty((len(texts), perms.shape[1]), dtype=np.uint32)
    tmp = np.empty(total, dtype=np.uint32)
    # One permutation at a time over a contiguous vector: a reduceat along axis 0 of a 2-D
    # (grams x perms) array is about 6x slower.
    for p in range(perms.shape[1]):
        np.multiply(hv, a[p], out=tmp)
        np.add(tmp, b[p], out=tmp)
        out[:, p] = np.minimum.reduceat(tmp, gram_starts)
    return out


def minhash_signatures(texts: Sequence[str], k: int, num_perm: int) -> np.ndarray:
    """MinHash hash values (``len(texts) x num_perm``, uint32) of each text's ``k``-shingles.

    ``texts`` are ``shingle_text`` output and must be non-empty. Row ``i`` equals the
    ``hashvalues`` of ``MinHash(num_perm, seed=1, hashfunc=shingle_hash32)`` updated with the
    shingles of ``texts[i]`` (datasketch 2.0, scheme affine32), computed with numpy in
    parallel chunks instead of one Python call per shingle.
    """
    if any(not t for t in texts):
        raise ValueError("minhash_signatures needs non-empty texts")
    perms = _permutations(num_perm)
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    bounds = [(lo, min(lo + _CHUNK_DOCS, len(texts))) for lo in range(0, len(texts), _CHUNK_DOCS)]

    def work(span: tuple[int, int]) -> None:
        lo, hi = span
        out[lo:hi] = _signature_chunk(texts[lo:hi], k, perms)

    workers = max(1, min(len(bounds), os.cpu_count() or 1))
    if workers == 1:
        for span in bounds:
            work(span)
    else:  # numpy releases the GIL in the heavy loops
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, bounds))
    return out


def _band_keys(block: np.ndarray) -> np.ndarray:
    """A 64-bit key per row of one band (rows x r uint32); equal bands give equal keys."""
    key = np.zeros(len(block), dtype=np.uint64)
    for col in range(block.shape[1]):
        key = key * np.uint64(_GRAM_MULT) + block[:, col].astype(np.uint64)
    return key


def lsh_candidate_pairs(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """LSH candidate pairs of MinHash signatures: an ``(m, 2)`` int64 array of ``(i, j)``,
    ``i < j``, sorted and unique, of every two rows whose hash values agree on all ``rows``
    values of at least one of ``bands`` bands (band ``b`` = columns ``b*rows`` to
    ``(b+1)*rows - 1``).

    These are exactly the pairs ``datasketch.MinHashLSH(num_perm, params=(bands, rows))``
    returns from ``query`` (its buckets are the raw bytes of the same column ranges; a unit test
    checks that the two agree). It is computed with numpy because MinHashLSH keeps one Python
    set per row and band: inserting 100k rows with 25 bands took 5-7 s on the 2-core reference
    machine, and one ``query`` per row ~2.5 s more, against 0.3-2 s here (more when large
    families of similar entries fill big buckets).
    Raises ``ConfigError`` when ``bands * rows`` exceeds the signature width.
    """
    n, width = sig.shape
    if bands < 1 or rows < 1 or bands * rows > width:
        raise ConfigError(f"clean: {bands} LSH bands x {rows} rows do not fit {width} permutations")
    found: list[np.ndarray] = [np.empty(0, dtype=np.int64)]
    for band in range(bands):
        key = _band_keys(sig[:, band * rows : (band + 1) * rows])
        order = np.argsort(key, kind="stable")
        ks = key[order]
        starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        sizes = np.diff(np.r_[starts, n])
        # All buckets of one size at once: a (buckets x size) matrix of members, then every
        # column pair of the upper triangle.
        for size in np.unique(sizes[sizes > 1]).tolist():
            first = starts[sizes == size]
            members = order[first[:, None] + np.arange(size)]
            left, right = np.triu_indices(size, 1)
            i, j = members[:, left].ravel(), members[:, right].ravel()
            found.append(np.minimum(i, j).astype(np.int64) * n + np.maximum(i, j))
    codes = np.unique(np.concatenate(found))  # pair (i, j), i < j, as i * n + j
    pairs = np.stack([codes // n, codes % n], axis=1)
    if len(pairs) == 0:
        return pairs
    # Keys are 64-bit hashes of the bands: keep only pairs whose values are truly equal in
    # some band, so a hash collision cannot add a pair MinHashLSH would not return.
    same = np.zeros(len(pairs), dtype=bool)
    for band in range(bands):
        cols = slice(band * rows, (band + 1) * rows)
        same |= np.all(sig[pairs[:, 0], cols] == sig[pairs[:, 1], cols], axis=1)
    return pairs[same]


#: Chance that the MinHash screen drops a pair whose true Jaccard is at the threshold. LSH
#: itself misses such a pair far more often (25 bands x 5 rows at Jaccard 0.8: 5e-5).
SCREEN_MISS_PROBABILITY = 1e-9


def screen_margin(num_perm: int) -> float:
    """How far below the threshold a MinHash estimate may fall and still be verified.

    The estimate is the share of ``num_perm`` hash values two signatures agree on; by
    Hoeffding's inequality it falls more than ``m`` below the true Jaccard with probability
    at most ``exp(-2 * num_perm * m**2)``, which this margin holds to
    ``SCREEN_MISS_PROBABILITY`` (0.284 for 128 permutations).
    """
    return math.sqrt(math.log(1 / SCREEN_MISS_PROBABILITY) / (2 * num_perm))


def estimated_jaccard(sig: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """MinHash estimate of the Jaccard similarity of each pair of signature rows."""
    out = np.empty(len(pairs), dtype=np.float64)
    step = max(1, (1 << 24) // max(1, sig.shape[1]))  # ~16M hash values compared per chunk
    for lo in range(0, len(pairs), step):
        a, b = pairs[lo : lo + step, 0], pairs[lo : lo + step, 1]
        out[lo : lo + step] = np.count_nonzero(sig[a] == sig[b], axis=1)
    return out / sig.shape[1]


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The partition does not depend on which root wins; the smaller one keeps it stable.
            self.parent[max(ra, rb)] = min(ra, rb)


def _shingle_codes(text: str, k: int) -> np.ndarray:
    """The ``k``-shingles of a ``shingle_text`` output as a sorted array of exact codes.

    Code points (+1, so that none is 0) are packed 21 bits each into a uint64 for ``k <= 3``;
    for larger ``k`` each shingle's code points are kept as raw bytes (a void dtype). Either way
    equal codes mean equal shingles, so Jaccard over codes is Jaccard over ``char_shingles``.
    A text no longer than ``k`` is its own single shingle, as in ``char_shingles``.
    """
    cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    if k <= 3:
        if len(cp) <= k:
            code = 0
            for c in cp.tolist():
                code = (code << 21) | (c + 1)
            return np.array([code], dtype=np.uint64)
        wide = cp.astype(np.uint64) + np.uint64(1)
        n = len(wide) - k + 1
        codes = wide[:n].copy()
        for j in range(1, k):
            codes = (codes << np.uint64(21)) | wide[j : j + n]
        return np.unique(codes)
    padded = np.zeros(max(len(cp), k) + k, dtype=np.uint32)
    padded[: len(cp)] = cp + 1
    n = max(len(cp) - k + 1, 1)
    grams = np.stack([padded[j : j + n] for j in range(k)], axis=1)
    if len(cp) < k:
        grams[:, len(cp) :] = 0  # the whole short text, zero-padded
    return np.unique(np.ascontiguousarray(grams).view(np.dtype((np.void, 4 * k))).ravel())


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted arrays of unique codes (``_shingle_codes``)."""
    if len(a) == 0 or len(b) == 0:
        return 0.0
    # A stable sort of two sorted runs is a single merge (timsort), O(len(a) + len(b)): ~5 us
    # for two 1,700-shingle documents, against ~100 us for a Python set intersection.
    merged = np.sort(np.concatenate((a, b)), kind="stable")
    inter = int(np.count_nonzero(merged[1:] == merged[:-1]))
    return inter / (len(a) + len(b) - inter)


# --- row helpers ------------------------------------------------------------------------------


def _instant(value: str | None, what: str) -> float:
    """Seconds since the epoch for ordering by ``updated_at``; missing sorts oldest."""
    if value is None or not str(value).strip():
        return -math.inf
    try:
        dt = datetime.fromisoformat(str(value).strip())
    except ValueError:
        try:
            d = parse_date(value)
        except ValueError as exc:
            raise ContractError(f"clean: {what}: unparseable updated_at {value!r}") from exc
        if d is None:
            return -math.inf
        dt = datetime(d.year, d.month, d.day)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _field_date(value: str | None, column: str, row_id: int, entry_id: str) -> date | None:
    if value is None:
        return None
    try:
        return parse_date(value)
    except ValueError as exc:
        raise ContractError(
            f"clean: row {row_id} (id {entry_id!r}): unparseable {column} {value!r}"
        ) from exc


def _clean_similar(questions: list[str | None] | None, title: str) -> list[str]:
    """Normalised similar questions: empty ones and the title dropped, case-insensitive
    de-duplication, first occurrence kept."""
    seen = {title.casefold()}
    out: list[str] = []
    for q in questions or ():
        nq = normalize_text(q)
        key = nq.casefold()
        if nq and key not in seen:
            seen.add(key)
            out.append(nq)
    return out


def _table(columns: dict[str, list[Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pydict({f.name: columns[f.name] for f in schema}, schema=schema)


# --- the stage --------------------------------------------------------------------------------


def clean_rows(rows: pa.Table, run_date: date, settings: CleanSettings) -> CleanResult:
    """Normalise, filter by status and dates, and deduplicate validated rows.

    ``rows``: a ``RAW_ROW`` table of rows that passed validation (unique ids, non-empty title
    and answer, known statuses or null = published, parseable dates or null). ``run_date``:
    the date expiry is judged against. Returns a ``CleanResult`` whose ``outcomes`` hold
    exactly one row per input row (indexed | duplicate | stale | unpublished).

    Outcome reasons: ``unique``/``canonical`` (indexed), ``exact_duplicate``/
    ``near_duplicate`` (``detail`` = the canonical's id; kind is relative to the final
    canonical: a row identical to the canonical is exact, otherwise near),
    ``status:<status>``, ``not_yet_effective``, ``expired:expires_at``,
    ``expired:date_phrase`` (``detail`` = the evidence).

    ``merges.similarity`` is the exact Jaccard of the merged row's shingles with the
    canonical's (1.0 for exact duplicates). Clusters are connected components of verified
    pairs, so a row joined through a chain (a~b, b~c) can be below ``near_dup_threshold``
    against the canonical it ends up in.

    Pure and deterministic: shuffling the input rows changes neither which rows merge nor
    which is canonical. Raises ``ContractError`` when a column is missing or a date field
    cannot be parsed, ``ConfigError`` when ``lsh_bands * lsh_rows`` exceeds ``num_perm``.
    """
    # The stage allocates millions of small objects and makes no reference cycles; the cyclic
    # collector's repeated passes over them cost ~20% of the run (1.2 s of 5.5 s CPU on 100k
    # short entries). Paused for the call only, restored even on error.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _clean_rows(rows, run_date, settings)
    finally:
        if was_enabled:
            gc.enable()


def _clean_rows(rows: pa.Table, run_date: date, settings: CleanSettings) -> CleanResult:
    missing = [name for name in RAW_ROW.names if name not in rows.column_names]
    if missing:
        raise ContractError(f"clean: input lacks columns {missing}")
    n = rows.num_rows
    col = {
        name: rows.column(name).to_pylist()
        for name in RAW_ROW.names
        if name not in ("source_file", "source_line")
    }
    ids: list[str] = col["id"]
    row_ids: list[int] = col["row_id"]

    titles = [normalize_text(t) for t in col["title"]]
    answers = [normalize_text(a) for a in col["answer"]]
    similar = [_clean_similar(q, titles[i]) for i, q in enumerate(col["similar_questions"])]
    category_of: dict[str | None, str | None] = {}  # few distinct categories
    categories = [
        category_of[c] if c in category_of else category_of.setdefault(c, normalize_text(c) or None)
        for c in col["category"]
    ]

    outcome: list[tuple[str, str, str | None] | None] = [None] * n
    stale_rows: list[tuple[int, str, str, str]] = []  # (row, reason, evidence, stale_since)
    live: list[int] = []
    for i in range(n):
        status = (col["status"][i] or "").strip().lower() or "published"
        if status != "published":
            outcome[i] = ("unpublished", f"status:{status}", None)
            continue
        text = f"{titles[i]}\n{answers[i]}"
        effective = _field_date(col["effective_from"][i], "effective_from", row_ids[i], ids[i])
        if effective is not None and effective > run_date:
            evidence = f"effective_from={col['effective_from'][i]}"
            outcome[i] = ("unpublished", "not_yet_effective", evidence)
            stale_rows.append((i, "effective_from", evidence, effective.isoformat()))
            continue
        hit = find_not_yet_effective(text, run_date) if settings.expiry_phrases else None
        if hit is not None:
            outcome[i] = ("unpublished", "not_yet_effective", hit.evidence)
            stale_rows.append((i, "effective_from", hit.evidence, hit.stale_since))
            continue
        expires = _field_date(col["expires_at"][i], "expires_at", row_ids[i], ids[i])
        if expires is not None and expires < run_date:
            evidence = f"expires_at={col['expires_at'][i]}"
            outcome[i] = ("stale", "expired:expires_at", evidence)
            stale_rows.append((i, "expires_at", evidence, expires.isoformat()))
            continue
        hit = find_expiry(text, run_date) if settings.expiry_phrases else None
        if hit is not None:
            outcome[i] = ("stale", "expired:date_phrase", hit.evidence)
            stale_rows.append((i, "date_phrase", hit.evidence, hit.stale_since))
            continue
        live.append(i)

    hashes: dict[int, str] = {i: hash_normalized(titles[i], answers[i]) for i in live}
    rank_cache: dict[int, tuple[float, int, str]] = {}

    def rank(i: int) -> tuple[float, int, str]:
        # Sorts best first: newest updated_at, then longest answer, then smallest id.
        key = rank_cache.get(i)
        if key is None:
            ts = _instant(col["updated_at"][i], f"row {row_ids[i]} (id {ids[i]!r})")
            key = rank_cache[i] = (-ts, -len(answers[i]), ids[i])
        return key

    # 4. exact duplicates
    exact_groups: dict[str, list[int]] = {}
    for i in live:
        exact_groups.setdefault(hashes[i], []).append(i)
    reps: list[int] = []  # one per distinct content, the best-ranked row of its group
    members_of: dict[int, list[int]] = {}
    for group in exact_groups.values():
        rep = min(group, key=rank) if len(group) > 1 else group[0]
        reps.append(rep)
        members_of[rep] = group
    reps.sort()

    # 5. near duplicates among the representatives
    k = settings.shingle_size
    stexts = [shingle_text(f"{titles[i]}\n{answers[i][:ANSWER_PREFIX_CHARS]}") for i in reps]
    usable = [p for p, t in enumerate(stexts) if t]
    uf = _UnionFind(len(reps))
    shingle_codes: dict[int, np.ndarray] = {}

    def shingles(p: int) -> np.ndarray:
        codes = shingle_codes.get(p)
        if codes is None:
            codes = shingle_codes[p] = _shingle_codes(stexts[p], k)
        return codes

    n_candidates = n_screened = n_verified = 0
    if len(usable) > 1:
        sig = minhash_signatures([stexts[p] for p in usable], k, settings.num_perm)
        pairs = lsh_candidate_pairs(sig, settings.lsh_bands, settings.lsh_rows)
        n_candidates = len(pairs)
        # Most LSH candidates are far below the threshold (a 100k KB gives ~0.5M of them, mostly
        # at Jaccard < 0.2); the MinHash estimate drops those before the exact check, which
        # costs ~30 us a pair on long answers. Every merge is still decided by exact Jaccard.
        floor = settings.near_dup_threshold - screen_margin(settings.num_perm)
        pairs = pairs[estimated_jaccard(sig, pairs) >= floor]
        n_screened = len(pairs)
        for a, b in pairs.tolist():
            pi, pj = usable[a], usable[b]
            if uf.find(pi) == uf.find(pj):
                continue  # already connected: the edge cannot change the clusters
            if _jaccard(shingles(pi), shingles(pj)) >= settings.near_dup_threshold:
                n_verified += 1
                uf.union(pi, pj)
    clusters: dict[int, list[int]] = {}
    for p in range(len(reps)):
        clusters.setdefault(uf.find(p), []).append(p)

    # 6. canonicals, merges, outcomes
    entry_cols: dict[str, list[Any]] = {f.name: [] for f in CLEAN_ENTRY}
    merge_rows: list[tuple[int, int, str, float]] = []  # (canonical row, merged row, kind, sim)
    canon_rows: list[tuple[int, list[int]]] = []
    unique = ("indexed", "unique", None)
    for cluster in clusters.values():
        if len(cluster) == 1 and len(members_of[reps[cluster[0]]]) == 1:  # most entries
            outcome[reps[cluster[0]]] = unique
            canon_rows.append((reps[cluster[0]], []))
            continue
        canon_p = min(cluster, key=lambda p: rank(reps[p]))
        canon = reps[canon_p]
        merged: list[tuple[int, int]] = []  # (row, position of its representative)
        for p in cluster:
            merged.extend((m, p) for m in members_of[reps[p]] if m != canon)
        merged.sort(key=lambda mp: rank(mp[0]))
        for m, p in merged:
            if hashes[m] == hashes[canon]:
                merge_rows.append((canon, m, "exact", 1.0))
                outcome[m] = ("duplicate", "exact_duplicate", ids[canon])
            else:
                sim = _jaccard(shingles(p), shingles(canon_p))
                merge_rows.append((canon, m, "near", sim))
                outcome[m] = ("duplicate", "near_duplicate", ids[canon])
        outcome[canon] = ("indexed", "canonical", f"{len(merged)} merged")
        canon_rows.append((canon, [m for m, _ in merged]))

    canon_rows.sort()
    for canon, merged_rows in canon_rows:
        questions = similar[canon]
        if merged_rows:
            questions = list(questions)
            seen = {titles[canon].casefold(), *(q.casefold() for q in questions)}
            for m in merged_rows:
                for q in (titles[m], *similar[m]):
                    key = q.casefold()
                    if q and key not in seen:
                        seen.add(key)
                        questions.append(q)
        entry_cols["entry_id"].append(ids[canon])
        entry_cols["title"].append(titles[canon])
        entry_cols["answer"].append(answers[canon])
        entry_cols["similar_questions"].append(questions)
        entry_cols["category"].append(categories[canon])
        entry_cols["tags"].append(col["tags"][canon])
        entry_cols["status"].append("published")
        for name in ("updated_at", "effective_from", "expires_at", "lang", "metadata"):
            entry_cols[name].append(col[name][canon])
        entry_cols["content_hash"].append(hashes[canon])
        entry_cols["row_id"].append(row_ids[canon])
        entry_cols["merged_ids"].append([ids[m] for m in merged_rows])

    merge_rows.sort(key=lambda r: (r[0], r[1]))
    merges = _table(
        {
            "kind": [r[2] for r in merge_rows],
            "canonical_id": [ids[r[0]] for r in merge_rows],
            "merged_id": [ids[r[1]] for r in merge_rows],
            "row_id": [row_ids[r[1]] for r in merge_rows],
            "similarity": [r[3] for r in merge_rows],
            "canonical_title": [titles[r[0]] for r in merge_rows],
            "merged_title": [titles[r[1]] for r in merge_rows],
        },
        DEDUP_MERGE,
    )
    stale = _table(
        {
            "entry_id": [ids[r[0]] for r in stale_rows],
            "title": [titles[r[0]] for r in stale_rows],
            "reason": [r[1] for r in stale_rows],
            "evidence": [r[2] for r in stale_rows],
            "stale_since": [r[3] for r in stale_rows],
        },
        STALE_ENTRY,
    )
    if any(o is None for o in outcome):  # pragma: no cover - a bug, not a data problem
        lost = [row_ids[i] for i, o in enumerate(outcome) if o is None][:5]
        raise AccountingError(f"clean: rows without an outcome: {lost}")
    decided = [o for o in outcome if o is not None]
    outcomes = _table(
        {
            "row_id": row_ids,
            "entry_id": ids,
            "outcome": [o[0] for o in decided],
            "reason": [o[1] for o in decided],
            "detail": [o[2] for o in decided],
        },
        ROW_OUTCOME,
    )

    counts = {"read": n, "indexed": 0, "duplicate": 0, "stale": 0, "unpublished": 0}
    for o in decided:
        counts[o[0]] += 1
    counts["duplicate_exact"] = sum(1 for r in merge_rows if r[2] == "exact")
    counts["duplicate_near"] = sum(1 for r in merge_rows if r[2] == "near")
    counts["not_yet_effective"] = sum(1 for o in decided if o[1] == "not_yet_effective")
    counts["near_candidate_pairs"] = n_candidates
    counts["near_screened_pairs"] = n_screened
    counts["near_verified_pairs"] = n_verified
    if counts["indexed"] + counts["duplicate"] + counts["stale"] + counts["unpublished"] != n:
        raise AccountingError(f"clean: outcomes {counts} do not sum to {n} rows")
    log.info(
        "clean: read=%d indexed=%d duplicate=%d (exact=%d near=%d) stale=%d unpublished=%d "
        "(not_yet_effective=%d) lsh_candidates=%d screened=%d verified=%d",
        n,
        counts["indexed"],
        counts["duplicate"],
        counts["duplicate_exact"],
        counts["duplicate_near"],
        counts["stale"],
        counts["unpublished"],
        counts["not_yet_effective"],
        n_candidates,
        n_screened,
        n_verified,
    )
    return CleanResult(
        entries=_table(entry_cols, CLEAN_ENTRY),
        merges=merges,
        stale=stale,
        outcomes=outcomes,
        counts=counts,
    )
