"""Clean stage: validated raw rows in (``RAW_ROW``), publishable canonical entries out.

Order of decisions, each input row getting exactly one outcome (``ROW_OUTCOME``):

1. normalise title, answer, similar questions and category (``normalize_text``);
2. status draft/archived (anything but published) -> ``unpublished``;
3. not yet effective -> ``unpublished``; expired (``expires_at`` or a deadline phrase) ->
   ``stale``;
4. exact duplicates (same content hash of the normalised title and answer) -> one canonical;
5. near duplicates among those canonicals: MinHash over character shingles, ``MinHashLSH``
   for candidates, every candidate verified by exact Jaccard, clusters by union-find;
6. the canonical of a cluster is the newest ``updated_at``, then the longest answer, then the
   smallest id; it absorbs the others' titles and similar questions.

Everything is deterministic and independent of the input row order.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
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

__all__ = ["CleanResult", "clean_rows", "minhash_signatures", "shingle_hash32"]

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
    not_yet_effective (a part of unpublished), near_candidate_pairs, near_verified_pairs.
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
    from datasketch import MinHash

    perms = MinHash(num_perm=num_perm, seed=MINHASH_SEED).permutations
    if getattr(perms, "dtype", None) != np.uint32:
        raise ConfigError("datasketch's default MinHash scheme is no longer affine32")
    return np.asarray(perms)


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


def _band_colliders(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Mask of rows sharing at least one band with another row (a superset: band keys are
    64-bit hashes of the band, so a hash collision only adds a row)."""
    flagged = np.zeros(len(sig), dtype=bool)
    for band in range(bands):
        key = np.zeros(len(sig), dtype=np.uint64)
        for col in range(band * rows, (band + 1) * rows):
            key = key * np.uint64(_GRAM_MULT) + sig[:, col].astype(np.uint64)
        order = np.argsort(key, kind="stable")
        ks = key[order]
        same = ks[1:] == ks[:-1]
        flagged[order[1:][same]] = True
        flagged[order[:-1][same]] = True
    return flagged


def _lsh_candidate_pairs(sig: np.ndarray, settings: CleanSettings) -> Iterator[tuple[int, int]]:
    """Candidate pairs ``(i, j)``, ``i < j``, from ``MinHashLSH`` with the settings' bands/rows.

    Only rows that share a band with some other row go into the index: a row whose bands are
    all unique can be nobody's candidate, and skipping it spares building ~bands singleton
    buckets per row (the bulk of the insert time). The pairs are exactly those the full index
    would return.
    """
    from datasketch import MinHash, MinHashLSH

    bands, rows = settings.lsh_bands, settings.lsh_rows
    try:
        lsh = MinHashLSH(num_perm=settings.num_perm, params=(bands, rows))
    except ValueError as exc:
        raise ConfigError(f"clean: unusable LSH parameters ({bands} bands x {rows} rows): {exc}") from exc
    idx = np.flatnonzero(_band_colliders(sig, bands, rows)).tolist()
    if not idx:
        return
    perms = _permutations(settings.num_perm)
    sketches = [
        MinHash(
            seed=MINHASH_SEED,
            hashfunc=shingle_hash32,
            hashvalues=sig[i],
            permutations=perms,
            scheme="affine32",
        )
        for i in idx
    ]
    with lsh.insertion_session() as session:
        for i, m in zip(idx, sketches, strict=True):
            session.insert(i, m, check_duplication=False)
    for i, m in zip(idx, sketches, strict=True):
        for j in lsh.query(m):
            if j > i:
                yield i, j


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
            # The smaller root wins: the resulting partition never depends on input order.
            self.parent[max(ra, rb)] = min(ra, rb)


def _grams(text: str, k: int) -> set[str]:
    if len(text) <= k:
        return {text} if text else set()
    return {text[i : i + k] for i in range(len(text) - k + 1)}


def _jaccard(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 0.0
    inter = len(a & b)
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


def _field_date(value: str | None, column: str, what: str) -> date | None:
    try:
        return parse_date(value)
    except ValueError as exc:
        raise ContractError(f"clean: {what}: unparseable {column} {value!r}") from exc


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

    Pure and deterministic: shuffling the input rows changes neither which rows merge nor
    which is canonical. Raises ``ContractError`` when a column is missing or a date field
    cannot be parsed, ``ConfigError`` for LSH parameters datasketch rejects.
    """
    missing = [name for name in RAW_ROW.names if name not in rows.column_names]
    if missing:
        raise ContractError(f"clean: input lacks columns {missing}")
    n = rows.num_rows
    col = {name: rows.column(name).to_pylist() for name in RAW_ROW.names}
    ids: list[str] = col["id"]
    row_ids: list[int] = col["row_id"]

    import time as _t; print('T0', round(_t.perf_counter(),2))
    titles = [normalize_text(t) for t in col["title"]]
    answers = [normalize_text(a) for a in col["answer"]]
    similar = [_clean_similar(q, titles[i]) for i, q in enumerate(col["similar_questions"])]
    categories = [normalize_text(c) or None for c in col["category"]]

    import time as _t; print('T1', round(_t.perf_counter(),2))
    outcome: list[tuple[str, str, str | None] | None] = [None] * n
    stale_rows: list[tuple[int, str, str, str]] = []  # (row, reason, evidence, stale_since)
    live: list[int] = []
    for i in range(n):
        what = f"row {row_ids[i]} (id {ids[i]!r})"
        status = (col["status"][i] or "published").strip().lower()
        if status != "published":
            outcome[i] = ("unpublished", f"status:{status}", None)
            continue
        text = f"{titles[i]}\n{answers[i]}"
        effective = _field_date(col["effective_from"][i], "effective_from", what)
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
        expires = _field_date(col["expires_at"][i], "expires_at", what)
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

    import time as _t; print('T2', round(_t.perf_counter(),2))
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

    import time as _t; print('T3', round(_t.perf_counter(),2))
    # 5. near duplicates among the representatives
    k = settings.shingle_size
    stexts = [shingle_text(f"{titles[i]}\n{answers[i][:ANSWER_PREFIX_CHARS]}") for i in reps]
    usable = [p for p, t in enumerate(stexts) if t]
    uf = _UnionFind(len(reps))
    shingle_sets: dict[int, set[str]] = {}

    def shingles(p: int) -> set[str]:
        s = shingle_sets.get(p)
        if s is None:
            s = shingle_sets[p] = _grams(stexts[p], k)
        return s

    n_candidates = n_verified = 0
    if len(usable) > 1:
        import time as _t; print('T4', round(_t.perf_counter(),2))
        sig = minhash_signatures([stexts[p] for p in usable], k, settings.num_perm)
        import time as _t; print('T5', round(_t.perf_counter(),2))
        for a, b in _lsh_candidate_pairs(sig, settings):
            n_candidates += 1
            pi, pj = usable[a], usable[b]
            if uf.find(pi) == uf.find(pj):
                continue  # already connected: the edge cannot change the clusters
            if _jaccard(shingles(pi), shingles(pj)) >= settings.near_dup_threshold:
                n_verified += 1
                uf.union(pi, pj)
    import time as _t; print('T6', round(_t.perf_counter(),2))
    clusters: dict[int, list[int]] = {}
    for p in range(len(reps)):
        clusters.setdefault(uf.find(p), []).append(p)

    # 6. canonicals, merges, outcomes
    entry_cols: dict[str, list[Any]] = {f.name: [] for f in CLEAN_ENTRY}
    merge_rows: list[tuple[int, int, str, float]] = []  # (canonical row, merged row, kind, sim)
    canon_rows: list[tuple[int, list[int]]] = []
    for cluster in clusters.values():
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
        outcome[canon] = (
            ("indexed", "canonical", f"{len(merged)} merged") if merged else ("indexed", "unique", None)
        )
        canon_rows.append((canon, [m for m, _ in merged]))

    import time as _t; print('T7', round(_t.perf_counter(),2))
    canon_rows.sort()
    for canon, merged_rows in canon_rows:
        questions = list(similar[canon])
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

    import time as _t; print('T8', round(_t.perf_counter(),2))
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

    import time as _t; print('T9', round(_t.perf_counter(),2))
    counts = {"read": n, "indexed": 0, "duplicate": 0, "stale": 0, "unpublished": 0}
    for o in decided:
        counts[o[0]] += 1
    counts["duplicate_exact"] = sum(1 for r in merge_rows if r[2] == "exact")
    counts["duplicate_near"] = sum(1 for r in merge_rows if r[2] == "near")
    counts["not_yet_effective"] = sum(1 for o in decided if o[1] == "not_yet_effective")
    counts["near_candidate_pairs"] = n_candidates
    counts["near_verified_pairs"] = n_verified
    if counts["indexed"] + counts["duplicate"] + counts["stale"] + counts["unpublished"] != n:
        raise AccountingError(f"clean: outcomes {counts} do not sum to {n} rows")  # pragma: no cover
    log.info(
        "clean: read=%d indexed=%d duplicate=%d (exact=%d near=%d) stale=%d unpublished=%d "
        "(not_yet_effective=%d) lsh_candidates=%d verified=%d",
        n,
        counts["indexed"],
        counts["duplicate"],
        counts["duplicate_exact"],
        counts["duplicate_near"],
        counts["stale"],
        counts["unpublished"],
        counts["not_yet_effective"],
        n_candidates,
        n_verified,
    )
    return CleanResult(
        entries=_table(entry_cols, CLEAN_ENTRY),
        merges=merges,
        stale=stale,
        outcomes=outcomes,
        counts=counts,
    )
