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
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from kbflow.clean.expiry import DatePhrases, date_phrases, names_a_year, parse_date
from kbflow.clean.minhash import (
    _jaccard,
    _shingle_codes,
    _UnionFind,
    minhash_signatures,
    screen_floor,
    screened_candidates,
)
from kbflow.clean.normalize import hash_normalized, normalize_text, shingle_text
from kbflow.contracts import (
    CLEAN_ENTRY,
    DEDUP_MERGE,
    RAW_ROW,
    ROW_OUTCOME,
    STALE_ENTRY,
    take_chunked,
)
from kbflow.errors import AccountingError, ContractError
from kbflow.settings import CleanSettings

log = logging.getLogger(__name__)


#: Characters of the answer that go into the near-duplicate fingerprint: long answers that
#: share their first 2,000 characters are the same entry for dedup purposes.
ANSWER_PREFIX_CHARS = 2000


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
    near_verified_pairs (pairs that passed and joined two clusters), blank_similar_questions
    (empty or whitespace-only similar questions dropped: never embedded).
    """

    entries: pa.Table
    merges: pa.Table
    stale: pa.Table
    outcomes: pa.Table
    counts: dict[str, int]
    stable_until: date | None = None
    """The first later run date on which a date decision (effective from, expires at, a date
    phrase) would go the other way; None when none ever would. The same rows cleaned on any
    day from the run date up to the day before give the same result."""


NO_PHRASES = DatePhrases(None, None, None)


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


def _clean_similar(
    questions: list[str | None] | None, title: str, blank: list[int] | None = None
) -> list[str]:
    """Normalised similar questions: empty ones and the title dropped, case-insensitive
    de-duplication, first occurrence kept. Blank ones (empty or whitespace only after
    normalisation: nothing to embed, and SGLang refuses them) are counted in ``blank[0]``."""
    seen = {title.casefold()}
    out: list[str] = []
    for q in questions or ():
        nq = normalize_text(q)
        key = nq.casefold()
        if not nq.strip():
            if blank is not None and q is not None:
                blank[0] += 1
        elif key not in seen:
            seen.add(key)
            out.append(nq)
    return out


_SIGNATURE_SLICE = 65_536

#: Columns only copied from a canonical row to its entry (never read as Python lists), and all
#: the columns copied unchanged (the dates are read as well).
_COPIED_ONLY = ("tags", "lang", "metadata")
_PASSTHROUGH = (*_COPIED_ONLY, "updated_at", "effective_from", "expires_at")


class _Phases:
    """Progress of a long clean: one log line per phase with its seconds (a million entries
    take minutes)."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.last = time.perf_counter()

    def done(self, what: str) -> None:
        now = time.perf_counter()
        log.info("clean: %s (%d rows, %.1f s)", what, self.rows, now - self.last)
        self.last = now


def _table(columns: dict[str, list[Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pydict({f.name: columns[f.name] for f in schema}, schema=schema)


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
    timer = _Phases(n)
    # Columns the decisions read, as Python lists; the ones only copied to the entries
    # (``_PASSTHROUGH``) stay in Arrow and are taken for the canonical rows at the end.
    col = {
        name: rows.column(name).to_pylist()
        for name in RAW_ROW.names
        if name not in ("source_file", "source_line", *_COPIED_ONLY)
    }
    ids: list[str] = col["id"]
    row_ids: list[int] = col["row_id"]

    titles = [normalize_text(t) for t in col.pop("title")]
    answers = [normalize_text(a) for a in col.pop("answer")]
    blank = [0]
    similar = [
        _clean_similar(q, titles[i], blank) for i, q in enumerate(col.pop("similar_questions"))
    ]
    category_of: dict[str | None, str | None] = {}  # few distinct categories
    categories = [
        category_of[c] if c in category_of else category_of.setdefault(c, normalize_text(c) or None)
        for c in col["category"]
    ]

    outcome: list[tuple[str, str, str | None] | None] = [None] * n
    stale_rows: list[tuple[int, str, str, str]] = []  # (row, reason, evidence, stale_since)
    timer.done("normalised")
    live: list[int] = []
    changes: list[date] = []  # days on which a date decision below would go the other way
    for i in range(n):
        status = (col["status"][i] or "").strip().lower() or "published"
        if status != "published":
            outcome[i] = ("unpublished", f"status:{status}", None)
            continue
        effective = _field_date(col["effective_from"][i], "effective_from", row_ids[i], ids[i])
        if effective is not None and effective > run_date:
            changes.append(effective)
            evidence = f"effective_from={col['effective_from'][i]}"
            outcome[i] = ("unpublished", "not_yet_effective", evidence)
            stale_rows.append((i, "effective_from", evidence, effective.isoformat()))
            continue
        # A year cannot span the line break joining title and answer: most rows name none and
        # skip the joined text and both phrase scans.
        dated = settings.expiry_phrases and (names_a_year(titles[i]) or names_a_year(answers[i]))
        phrases = date_phrases(f"{titles[i]}\n{answers[i]}", run_date) if dated else NO_PHRASES
        if phrases.changes_on is not None:
            changes.append(phrases.changes_on)
        hit = phrases.not_yet_effective
        if hit is not None:
            outcome[i] = ("unpublished", "not_yet_effective", hit.evidence)
            stale_rows.append((i, "effective_from", hit.evidence, hit.stale_since))
            continue
        expires = _field_date(col["expires_at"][i], "expires_at", row_ids[i], ids[i])
        if expires is not None and expires >= run_date:
            changes.append(expires + timedelta(days=1))
        if expires is not None and expires < run_date:
            evidence = f"expires_at={col['expires_at'][i]}"
            outcome[i] = ("stale", "expired:expires_at", evidence)
            stale_rows.append((i, "expires_at", evidence, expires.isoformat()))
            continue
        hit = phrases.expired
        if hit is not None:
            outcome[i] = ("stale", "expired:date_phrase", hit.evidence)
            stale_rows.append((i, "date_phrase", hit.evidence, hit.stale_since))
            continue
        live.append(i)

    timer.done("dates checked")
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
    # Groups are kept only for content that repeats: one list per row cost ~200 MB at 1M rows.
    first_of: dict[str, int] = {}
    repeated: dict[str, list[int]] = {}
    for i in live:
        j = first_of.setdefault(hashes[i], i)
        if j != i:
            repeated.setdefault(hashes[i], [j]).append(i)
    members_of: dict[int, list[int]] = {}  # rows of a representative whose content repeats
    for h, group in repeated.items():
        rep = first_of[h] = min(group, key=rank)
        members_of[rep] = group
    reps = sorted(first_of.values())  # one per distinct content, the best-ranked row
    del first_of, repeated

    timer.done("exact duplicates grouped")
    # 5. near duplicates among the representatives
    k = settings.shingle_size

    def stext(p: int) -> str:
        i = reps[p]
        return shingle_text(f"{titles[i]}\n{answers[i][:ANSWER_PREFIX_CHARS]}")

    # Signatures a slice at a time: the shingle texts of a million entries would hold ~0.8 GB
    # for the whole stage; the few that the exact check needs are made again.
    sig = np.empty((len(reps), settings.num_perm), dtype=np.uint32)
    usable: list[int] = []
    for lo in range(0, len(reps), _SIGNATURE_SLICE):
        texts = [stext(p) for p in range(lo, min(lo + _SIGNATURE_SLICE, len(reps)))]
        keep = [lo + q for q, t in enumerate(texts) if t]
        if keep:
            at = len(usable)
            sig[at : at + len(keep)] = minhash_signatures(
                [t for t in texts if t], k, settings.num_perm
            )
            usable.extend(keep)
    sig = sig[: len(usable)]
    uf = _UnionFind(len(reps))
    shingle_codes: dict[int, np.ndarray] = {}

    def shingles(p: int) -> np.ndarray:
        codes = shingle_codes.get(p)
        if codes is None:
            codes = shingle_codes[p] = _shingle_codes(stext(p), k)
        return codes

    n_candidates = n_screened = n_verified = 0
    if len(usable) > 1:
        # Most LSH candidates are far below the threshold (a 100k KB gives ~0.5M of them, mostly
        # at Jaccard < 0.2); the MinHash estimate drops those as they are generated, before the
        # exact check, which costs ~30 us a pair on long answers. Every merge is still decided by
        # exact Jaccard. Large buckets are split (``settings.lsh_max_bucket``), their leaders
        # picked by content hash so that the input order does not matter.
        floor = screen_floor(settings.near_dup_threshold, settings.num_perm)
        tiebreak = np.array([int(hashes[reps[p]][:16], 16) for p in usable], dtype=np.uint64)
        pairs, n_candidates = screened_candidates(
            sig,
            settings.lsh_bands,
            settings.lsh_rows,
            floor=floor,
            max_bucket=settings.lsh_max_bucket,
            tiebreak=tiebreak,
        )
        del sig
        n_screened = len(pairs)
        timer.done(f"MinHash LSH: {n_candidates} candidate pairs, {len(pairs)} to check")
        for a, b in pairs.tolist():
            pi, pj = usable[a], usable[b]
            if uf.find(pi) == uf.find(pj):
                continue  # already connected: the edge cannot change the clusters
            if _jaccard(shingles(pi), shingles(pj)) >= settings.near_dup_threshold:
                n_verified += 1
                uf.union(pi, pj)
    timer.done(f"near duplicates checked ({n_verified} pairs merged)")
    clusters: dict[int, list[int]] = {}
    for p in range(len(reps)):
        clusters.setdefault(uf.find(p), []).append(p)

    # 6. canonicals, merges, outcomes
    entry_cols: dict[str, list[Any]] = {f.name: [] for f in CLEAN_ENTRY}
    merge_rows: list[tuple[int, int, str, float]] = []  # (canonical row, merged row, kind, sim)
    canon_rows: list[tuple[int, list[int]]] = []
    unique = ("indexed", "unique", None)
    for cluster in clusters.values():
        if len(cluster) == 1 and reps[cluster[0]] not in members_of:  # most entries
            outcome[reps[cluster[0]]] = unique
            canon_rows.append((reps[cluster[0]], []))
            continue
        canon_p = min(cluster, key=lambda p: rank(reps[p]))
        canon = reps[canon_p]
        merged: list[tuple[int, int]] = []  # (row, position of its representative)
        for p in cluster:
            merged.extend((m, p) for m in members_of.get(reps[p], (reps[p],)) if m != canon)
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
        entry_cols["status"].append("published")
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
    # The entries last, a column at a time, each list dropped once it is in Arrow.
    titles.clear()  # the entries' own strings live on in entry_cols
    answers.clear()
    similar.clear()
    canon_at = pa.array([canon for canon, _ in canon_rows], pa.int64())
    arrays = []
    for f in CLEAN_ENTRY:
        if f.name in _PASSTHROUGH:
            arrays.append(take_chunked(rows.column(f.name), canon_at, f.type))
        else:
            arrays.append(pa.array(entry_cols.pop(f.name), f.type))
    entries = pa.Table.from_arrays(arrays, schema=CLEAN_ENTRY)
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
    counts["blank_similar_questions"] = blank[0]
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
        entries=entries,
        merges=merges,
        stale=stale,
        outcomes=outcomes,
        counts=counts,
        stable_until=min(changes) if changes else None,
    )
