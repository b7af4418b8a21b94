"""Near-duplicate candidates: MinHash signatures over character shingles and LSH banding.

The same signatures and buckets as datasketch 2.0's ``MinHash``/``MinHashLSH`` (bands x rows from
the settings), computed in bulk with numpy; candidates far below the threshold by their MinHash
estimate are screened out (a true pair is lost with probability < 1e-9) and the rest verified by
exact Jaccard. Deterministic and independent of the input order."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from kbflow.errors import ConfigError

#: datasketch's default seed; signatures are the ones ``MinHash(seed=1)`` would compute.
MINHASH_SEED = 1


_M64 = (1 << 64) - 1


_GRAM_MULT = 0x9E3779B97F4A7C15  # odd 64-bit constant (golden ratio) for the polynomial hash


_CHUNK_DOCS = 4096


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


_PAIR_CHUNK = 1 << 20  # pairs generated per step, so memory stays bounded whatever the buckets


def _band_keys(block: np.ndarray) -> np.ndarray:
    """A 64-bit key per row of one band (rows x r uint32); equal bands give equal keys."""
    key = np.zeros(len(block), dtype=np.uint64)
    for col in range(block.shape[1]):
        key = key * np.uint64(_GRAM_MULT) + block[:, col].astype(np.uint64)
    return key


def _buckets(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows grouped by equal key: ``order`` (row positions sorted by key), each bucket's start
    in ``order`` and its size."""
    order = np.argsort(key, kind="stable")
    ks = key[order]
    starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]]) if len(ks) else np.empty(0, np.int64)
    sizes = np.diff(np.r_[starts, len(key)])
    return order, starts, sizes


def _bucket_pairs(
    order: np.ndarray, starts: np.ndarray, sizes: np.ndarray, limit: float
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every pair ``(i, j)``, ``i < j``, within each bucket of 2 to ``limit`` members, in chunks
    of about ``_PAIR_CHUNK`` pairs: all buckets of one size at once, as a (buckets x size) matrix
    of members and the column pairs of its upper triangle."""
    for size in np.unique(sizes[(sizes > 1) & (sizes <= limit)]).tolist():
        first = starts[sizes == size]
        left, right = np.triu_indices(size, 1)
        step = max(1, _PAIR_CHUNK // len(left))
        for lo in range(0, len(first), step):
            members = order[first[lo : lo + step, None] + np.arange(size)]
            i, j = members[:, left].ravel(), members[:, right].ravel()
            yield np.minimum(i, j).astype(np.int64), np.maximum(i, j).astype(np.int64)


def screened_candidates(
    sig: np.ndarray,
    bands: int,
    rows: int,
    *,
    floor: float | None = None,
    max_bucket: int | None = None,
    tiebreak: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """LSH candidate pairs of MinHash signatures, screened as they are generated.

    Returns ``(pairs, candidates)``: ``pairs`` an ``(m, 2)`` int64 array of ``(i, j)``, ``i < j``,
    sorted and unique, of the candidates whose MinHash estimate (``estimated_jaccard``) is at
    least ``floor`` (every candidate when ``floor`` is None); ``candidates`` how many distinct
    pairs were generated (each is screened once).

    Two rows are candidates when their hash values agree on all ``rows`` values of one of
    ``bands`` bands (band ``b`` = columns ``b*rows`` to ``(b+1)*rows - 1``), as in
    ``datasketch.MinHashLSH``. Without ``max_bucket`` that is every such pair, which grows with
    the square of the largest bucket. With it, a bucket of more than ``max_bucket`` rows is not
    expanded into all its pairs but split: its rows are grouped again by each later band, so a
    pair is generated when it shares two bands; a group sharing two bands that is still larger
    than ``max_bucket`` (near copies of one text, mostly) has each of its rows paired with its
    leader, the smallest ``tiebreak`` (default the row position), which the clusters then
    connect. A pair that shares any bucket of at most ``max_bucket`` rows is generated there as
    before; one whose every shared bucket is large is missed only if it shares a single band:
    for 25 bands x 5 rows, 6e-4 of the candidate pairs at Jaccard 0.8 and 9e-6 at 0.85.

    Memory is bounded by the signatures, two small arrays per band and ``_PAIR_CHUNK`` pairs
    at a time, plus the pairs kept. Raises ``ConfigError`` when ``bands * rows`` exceeds the
    signature width.
    """
    n, width = sig.shape
    if bands < 1 or rows < 1 or bands * rows > width:
        raise ConfigError(f"clean: {bands} LSH bands x {rows} rows do not fit {width} permutations")
    cap = math.inf if max_bucket is None else max(2, int(max_bucket))
    if tiebreak is None:
        tiebreak = np.arange(n)
    # Per band and row: its bucket's number (``bucket``), and the same number only where the
    # bucket has 2..cap rows, a number of its own (negative) elsewhere (``small``): two rows
    # share a small bucket in a band exactly when their ``small`` values are equal there.
    bucket = np.empty((bands, n), dtype=np.int32)
    small = np.empty((bands, n), dtype=np.int32)
    own = -1 - np.arange(n, dtype=np.int32)
    grouped = []
    for band in range(bands):
        order, starts, sizes = _buckets(_band_keys(sig[:, band * rows : (band + 1) * rows]))
        bucket[band, order] = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
        size_of = np.repeat(sizes, sizes)
        small[band, order] = np.where(
            (size_of > 1) & (size_of <= cap), bucket[band, order], own[order]
        )
        shared = sizes > 1  # only buckets of two rows or more are ever read again
        grouped.append((order.astype(np.int32), starts[shared], sizes[shared]))

    kept: list[np.ndarray] = [np.empty(0, dtype=np.int64)]
    count = 0

    def screened(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        if floor is not None and len(i):
            ok = estimated_jaccard(sig, np.stack([i, j], axis=1)) >= floor
            i, j = i[ok], j[ok]
        return i * n + j

    # Screening is numpy work that releases the GIL: it runs on a second thread while the next
    # chunk of pairs is generated (at most two chunks in flight, so memory stays bounded).
    pool = ThreadPoolExecutor(max_workers=1) if (os.cpu_count() or 1) > 1 else None
    pending: list[Future[np.ndarray]] = []

    def screen(i: np.ndarray, j: np.ndarray) -> None:
        if pool is None:
            kept.append(screened(i, j))
            return
        if len(pending) >= 2:
            kept.append(pending.pop(0).result())
        pending.append(pool.submit(screened, i, j))

    def shares_small(i: np.ndarray, j: np.ndarray, upto: int) -> np.ndarray:
        hit = np.zeros(len(i), dtype=bool)
        for b in range(upto):
            row = small[b]
            hit |= row[i] == row[j]
        return hit

    try:
        # Pairs in small buckets, each generated once: in the first band where they share one.
        for band, (order, starts, sizes) in enumerate(grouped):
            for i, j in _bucket_pairs(order, starts, sizes, cap):
                first = ~shares_small(i, j, band)
                count += int(first.sum())
                screen(i[first], j[first])

        # Large buckets, split by later bands. A pair met here is dropped when it shares a small
        # bucket (generated above); the others may be met in several splits, so they are made
        # unique before they are counted and screened.
        split: list[np.ndarray] = [np.empty(0, dtype=np.int64)]

        def keep_split(i: np.ndarray, j: np.ndarray) -> None:
            other = ~shares_small(i, j, bands)
            split.append(i[other].astype(np.int64) * n + j[other])

        def split_group(members: np.ndarray, first_band: int) -> None:
            for band in range(first_band + 1, bands):
                order, starts, sizes = _buckets(bucket[band, members])
                for i, j in _bucket_pairs(order, starts, sizes, cap):
                    i, j = members[i], members[j]
                    keep_split(np.minimum(i, j), np.maximum(i, j))
                for s in np.flatnonzero(sizes > cap).tolist():  # 10 shared hash values, still large
                    group = members[order[starts[s] : starts[s] + sizes[s]]]
                    leader = group[np.argmin(tiebreak[group])]
                    rest = group[group != leader]
                    keep_split(np.minimum(rest, leader), np.maximum(rest, leader))

        if cap < n:
            for band, (order, starts, sizes) in enumerate(grouped):
                for s in np.flatnonzero(sizes > cap).tolist():
                    split_group(order[starts[s] : starts[s] + sizes[s]], band)
        extra = np.unique(np.concatenate(split))
        count += len(extra)
        screen(extra // n, extra % n)
        kept.extend(f.result() for f in pending)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    codes = np.unique(np.concatenate(kept))  # pair (i, j), i < j, as i * n + j
    return np.stack([codes // n, codes % n], axis=1), count


def lsh_candidate_pairs(
    sig: np.ndarray, bands: int, rows: int, max_bucket: int | None = None
) -> np.ndarray:
    """Every LSH candidate pair (``screened_candidates`` without a screen): an ``(m, 2)`` int64
    array of ``(i, j)``, ``i < j``, sorted and unique. Without ``max_bucket`` these are exactly
    the pairs ``datasketch.MinHashLSH(num_perm, params=(bands, rows))`` returns from ``query``
    (its buckets are the raw bytes of the same column ranges; a unit test checks that the two
    agree; the 64-bit band keys here would need ~4e9 distinct band values to collide)."""
    return screened_candidates(sig, bands, rows, max_bucket=max_bucket)[0]


#: Chance that the MinHash screen drops a pair whose true Jaccard is at the threshold. LSH
#: itself misses such a pair far more often (25 bands x 5 rows at Jaccard 0.8: 5e-5).
SCREEN_MISS_PROBABILITY = 1e-9


def screen_floor(threshold: float, num_perm: int) -> float:
    """The lowest MinHash estimate a pair may have and still be verified by exact Jaccard.

    The estimate is the share of ``num_perm`` hash values two signatures agree on, each
    agreeing with probability equal to their Jaccard: a binomial count. The floor is the
    largest ``k / num_perm`` such that a pair exactly at ``threshold`` agrees on fewer than
    ``k`` values with probability at most ``SCREEN_MISS_PROBABILITY`` (a pair above the
    threshold even less often). 0.570 for 0.8 and 128 permutations; Hoeffding's bound, used
    before, gave 0.516 and sent twice as many pairs to the exact check.
    """
    k = 0
    below = 0.0  # P[count < k]
    while k < num_perm:
        nxt = below + math.comb(num_perm, k) * threshold**k * (1 - threshold) ** (num_perm - k)
        if nxt > SCREEN_MISS_PROBABILITY:
            break
        below, k = nxt, k + 1
    return k / num_perm


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
