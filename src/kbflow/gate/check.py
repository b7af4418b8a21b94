"""Quality gate: a new index version must answer at least as well as the one it replaces.

Two query sets, both scored on the new version and on the live one:

- **golden**: the KB's ``golden.jsonl`` when it has one (answerable queries only; hit@k by
  entry id);
- **self-check**: the KB's own similar questions, each held out of the index in turn (the
  question and every near copy of it within its entry are hidden while it is the query, so it
  must be found through the entry's other passages). Always available when entries have
  similar questions; built from the new version and replayed on the live one.

The run is blocked when hit@3 on either set falls under ``gate.min_hit_at_3`` or drops by more
than ``gate.max_drop`` against the live version (compared on the queries both versions can
answer: a query about an entry the live version does not have counts only for the floor).
Queries the live version put in its top 3 and the new one does not are returned side by side.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kbflow.embed.adapter import adapter_key, make_version_embedder, queries_reuse_passages
from kbflow.embed.base import Embedder
from kbflow.gate.alignment import AnswerEncoder, check_alignment
from kbflow.gate.memo import LiveVersion, Memo, QueryKey, RankMemo
from kbflow.gate.rank import QueryEncoder, ranked_entries
from kbflow.gate.replay import ReplayQuery, replay_check
from kbflow.index.bm25 import tokenize
from kbflow.index.version import LoadedVersion, near_copy_rows, self_check_rows
from kbflow.settings import EmbedSettings, GateSettings
from kbflow.store.golden import GoldenQuery

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckQuery:
    query: str
    expected: tuple[str, ...]
    held_out: bool
    """Hide the query's near copies within its expected entry (self-check)."""


def self_check_queries(version: LoadedVersion, limit: int) -> list[CheckQuery]:
    """Similar questions of entries that have other passages, one query each (at most
    ``limit``, the same ones every night for entries that did not change: see ``stable``)."""
    return [
        CheckQuery(version.texts[r], (version.entry_of_row[r],), True)
        for r in self_check_rows(version, limit=limit, stable=True)
    ]


def golden_check_queries(golden: list[GoldenQuery], limit: int) -> list[CheckQuery]:
    """Answerable golden queries, at most ``limit`` (a seeded sample, the same every run)."""
    queries = [CheckQuery(q.query, q.expected, False) for q in golden if q.expected]
    if len(queries) > limit:
        keep = np.random.default_rng(0).choice(len(queries), size=limit, replace=False)
        queries = [queries[i] for i in sorted(keep.tolist())]
    return queries


@dataclass
class Ranked:
    rank: int | None
    """1-based rank of the best expected entry; None = not among the candidates."""
    top: list[tuple[str, str]]
    """(entry id, title) of the top 3."""


def rank_queries(
    version: LoadedVersion,
    queries: list[CheckQuery],
    vectors: np.ndarray | None,
    candidates: int = 50,
) -> list[Ranked | None]:
    """Rank each query's expected entry in ``version`` (fused with the version's own weight).

    None for a query this version cannot be asked: its expected entries are not in the
    version, or (held out) hiding its near copies leaves the entry nothing to be found by.
    """
    pos = {e: i for i, e in enumerate(version.entry_ids)}
    out: list[Ranked | None] = []
    for i, q in enumerate(queries):
        targets = [pos[e] for e in q.expected if e in pos]
        if not targets:
            out.append(None)
            continue
        tokens = tokenize(q.query)
        exclude = None
        if q.held_out:
            exclude = near_copy_rows(version, targets[0], q.query, tokens)
            if len(exclude) >= len(version.entry_rows[targets[0]]):
                out.append(None)
                continue
        qv = vectors[i] if vectors is not None else None
        ranked = ranked_entries(version, tokens, qv, candidates, exclude)
        rank = next((n + 1 for n, e in enumerate(ranked) if e in targets), None)
        top = [
            (version.entry_ids[e], version.titles[int(version.entry_rows[e][0])])
            for e in ranked[:3]
        ]
        out.append(Ranked(rank, top))
    return out


def metrics(ranks: list[Ranked | None]) -> dict[str, Any]:
    asked = [r for r in ranks if r is not None]
    n = len(asked)
    if not n:
        return {"n": 0, "hit@1": None, "hit@3": None, "mrr": None}
    return {
        "n": n,
        "hit@1": round(sum(1 for r in asked if r.rank == 1) / n, 4),
        "hit@3": round(sum(1 for r in asked if r.rank and r.rank <= 3) / n, 4),
        "mrr": round(sum(1 / r.rank for r in asked if r.rank) / n, 4),
    }


def live_ranks(
    live: LiveVersion, name: str, queries: list[CheckQuery], encode: QueryEncoder
) -> tuple[list[Ranked | None], bool]:
    """The live version's ranks for ``queries``: from its memo where it was asked them as a
    candidate, ``None`` where it lacks every expected entry, and ranked (loading it) for the
    rest. Also whether the ranked ones were scored keyword-only."""
    have = set(live.entry_ids)
    out: list[Ranked | None] = [None] * len(queries)
    todo: list[int] = []
    for i, q in enumerate(queries):
        got = live.memo.ranks.get(_key(name, q))
        if got is not None:
            out[i] = Ranked(got.rank, list(got.top)) if got.asked else None
        elif any(e in have for e in q.expected):
            todo.append(i)
    keyword_only = False
    if todo:
        version = live.loaded()
        asked = [queries[i] for i in todo]
        vecs = encode(version, [q.query for q in asked])
        keyword_only = vecs is None
        for i, r in zip(todo, rank_queries(version, asked, vecs), strict=True):
            out[i] = r
    return out, keyword_only


def _key(name: str, q: CheckQuery) -> QueryKey:
    return (name, q.query, q.expected, q.held_out)


def gate_version(
    new: LoadedVersion,
    live: LoadedVersion | LiveVersion | None,
    golden: list[GoldenQuery],
    settings: GateSettings,
    encode: QueryEncoder,
    encode_answers: AnswerEncoder | None = None,
    replay: list[ReplayQuery] | None = None,
) -> dict[str, Any]:
    """Score ``new`` (and ``live``) on the golden and self-check sets, on answer alignment
    (``kbflow.gate.alignment``, when ``encode_answers`` is given) and on logged traffic
    (``kbflow.gate.replay``, ``replay``: its ``ReplayQuery`` list, with a live version), and
    decide.

    ``live`` given as a ``LiveVersion`` answers from its memo what it can and is loaded only
    for the rest. Returns ``{"passed", "reasons", "checks": {set: {"new", "live",
    "new_common", "live_common"}}, "failing": [...], "alignment": {...}, "live_version",
    "memo"}``, ``memo`` being what this gate found about ``new`` (``kbflow.gate.memo``, for the
    stage to keep in its folder). Pure apart from the encoders.
    """
    if isinstance(live, LoadedVersion):
        live = LiveVersion(live.folder, live)
    memo = Memo()
    sets = {
        "golden": golden_check_queries(golden, settings.max_golden_queries),
        "self_check": self_check_queries(new, settings.self_check_queries),
    }
    reasons: list[str] = []
    checks: dict[str, Any] = {}
    failing: list[dict[str, Any]] = []
    notes: list[str] = []
    for name, queries in sets.items():
        if not queries:
            continue
        texts = [q.query for q in queries]
        new_vecs = encode(new, texts)
        new_ranks = rank_queries(new, queries, new_vecs)
        for q, r in zip(queries, new_ranks, strict=True):
            memo.ranks[_key(name, q)] = (
                RankMemo(True, r.rank, r.top) if r is not None else RankMemo(False)
            )
        res: dict[str, Any] = {"new": metrics(new_ranks)}
        if new_vecs is None:
            notes.append(f"{name}: new version scored keyword-only (no query embedder)")
        floor = settings.min_hit_at_3
        hit3 = res["new"]["hit@3"]
        if hit3 is not None and hit3 < floor:
            reasons.append(f"{name} hit@3 {hit3:.3f} is under the floor {floor:.3f}")
        if live is not None:
            old_ranks, keyword_only = live_ranks(live, name, queries, encode)
            if keyword_only:
                notes.append(f"{name}: live version scored keyword-only (no query embedder)")
            both = [
                i
                for i in range(len(queries))
                if new_ranks[i] is not None and old_ranks[i] is not None
            ]
            res["live"] = metrics(old_ranks)
            res["new_common"] = metrics([new_ranks[i] for i in both])
            res["live_common"] = metrics([old_ranks[i] for i in both])
            a, b = res["live_common"]["hit@3"], res["new_common"]["hit@3"]
            if a is not None and b is not None and a - b > settings.max_drop:
                reasons.append(
                    f"{name} hit@3 dropped from {a:.3f} to {b:.3f} against live version "
                    f"{live.version} on {len(both)} common queries (allowed drop {settings.max_drop:.3f})"
                )
            for i in both:
                nr, lr = new_ranks[i], old_ranks[i]
                assert nr is not None and lr is not None
                if (lr.rank or 99) <= 3 and (nr.rank or 99) > 3:
                    failing.append(_side_by_side(name, queries[i], lr, nr))
        checks[name] = res
    failing.sort(key=lambda f: (f["set"], f["query"]))
    aligned: dict[str, Any] | None = None
    if encode_answers is not None and settings.alignment_entries > 0:
        aligned = check_alignment(
            new,
            live,
            encode_answers,
            settings.alignment_entries,
            settings.max_alignment_drop,
            settings.failing_shown,
        )
        memo.alignment = aligned.pop("memo")
        if aligned["reason"]:
            reasons.append(aligned["reason"])
        notes += aligned.pop("notes")
    replayed: dict[str, Any] | None = None
    if replay and live is not None:
        replayed = replay_check(new, live.loaded(), replay, encode, settings)
        if replayed["reason"]:
            reasons.append(replayed["reason"])
        notes += replayed.pop("notes")
    return {
        "passed": not reasons,
        "alignment": aligned,
        "replay": replayed,
        "reasons": reasons,
        "checks": checks,
        "failing": failing[: settings.failing_shown],
        "failing_total": len(failing),
        "live_version": live.version if live is not None else None,
        "notes": notes,
        "memo": memo,
        "live_loaded": live.was_loaded if live is not None else False,
    }


def _side_by_side(name: str, q: CheckQuery, live: Ranked, new: Ranked) -> dict[str, Any]:
    return {
        "set": name,
        "query": q.query,
        "expected": list(q.expected),
        "live_rank": live.rank,
        "new_rank": new.rank,
        "live_top": [f"{e} {t}" for e, t in live.top],
        "new_top": [f"{e} {t}" for e, t in new.top],
    }


class VersionAnswerEncoder:
    """Document vectors of answer texts for any version, with its own model, through the
    embedding cache (``embeddings/<model_key>/``): answers that did not change are embedded
    once, ever. ``None`` (keyword only) when the version's model cannot be loaded here."""

    def __init__(self, queries: VersionQueryEncoder, cache_root: Path) -> None:
        self.queries = queries
        self.cache_root = cache_root

    def __call__(self, version: LoadedVersion, texts: list[str]) -> np.ndarray | None:
        from kbflow.embed.base import text_hash
        from kbflow.embed.cache import EmbeddingCache, embed_missing

        emb = self.queries.embedder(version.embedding)
        if emb is None:
            return None
        cache = EmbeddingCache(self.cache_root, emb.info.key, emb.info.dim)
        hashes = [text_hash(t) for t in texts]
        try:
            embed_missing(texts, hashes, emb, cache)
            return cache.get(hashes)
        except Exception as exc:  # noqa: BLE001 - reported as keyword-only scoring
            log.warning("gate: answer embedding failed for %s (%s)", emb.info.key, exc)
            return None


class VersionQueryEncoder:
    """Query vectors for any version, each with its own model (one embedder per model key).

    For models that embed queries and documents alike, a query that is already a passage of
    the version (a self-check question) reuses its stored vector. A version whose model cannot
    be loaded here is scored keyword-only (``None``), and the gate says so in its notes.
    """

    def __init__(self, embed: EmbedSettings) -> None:
        self.embed = embed
        self._embedders: dict[str, Embedder | None] = {}

    def embedder(self, info: dict[str, Any]) -> Embedder | None:
        """The version's model (one per model key, shared with the answer encoder); None when
        it cannot be loaded here."""
        key = adapter_key(info)
        if key not in self._embedders:
            try:
                self._embedders[key] = make_version_embedder(self.embed, info)
            except Exception as exc:  # noqa: BLE001 - reported as keyword-only scoring
                log.warning("gate: cannot load the query embedder for %s (%s)", key, exc)
                self._embedders[key] = None
        return self._embedders[key]

    def __call__(self, version: LoadedVersion, texts: list[str]) -> np.ndarray | None:
        info = version.embedding
        reuse = queries_reuse_passages(info)
        rows: list[int | None] = [None] * len(texts)
        if reuse:
            rows = version.texts.find(texts)
        missing = [i for i, r in enumerate(rows) if r is None]
        out = np.zeros((len(texts), version.vectors.shape[1]), np.float32)
        found = [i for i, r in enumerate(rows) if r is not None]
        if found:
            at = np.asarray([r for r in rows if r is not None], dtype=np.int64)
            out[found] = np.asarray(version.vectors[at])
        if missing:
            emb = self.embedder(info)
            if emb is None:
                return None
            try:
                out[missing] = emb.embed_queries([texts[i] for i in missing])
            except Exception as exc:  # noqa: BLE001 - reported as keyword-only scoring
                log.warning("gate: query embedding failed for %s (%s)", info["model_key"], exc)
                return None
        return out
