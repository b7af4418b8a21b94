"""Replay of real traffic: the live version's users' own queries, asked again of the candidate.

Golden sets and self-checks are what the team wrote; the search log is what users ask. Each
nightly takes up to ``gate.replay_queries`` distinct queries of the last ``gate.replay_days``
days of the log (``logs.duckdb`` and the Parquet segments; the most asked first) and ranks
them on the candidate and on the live version. Click evidence says what the right answer was:
for a query whose users clicked entry E (the most clicked), E is *kept* when it is in the
candidate's top 3 and *lost* when it was in the live version's top 3 and is not in the
candidate's. An entry the candidate no longer has (deleted, expired) is reported as *gone*, not
as a loss: the KB changed on purpose. Above ``gate.max_replay_loss`` of the queries with click
evidence (at least ``gate.replay_min_evidence`` of them) the gate blocks; the report shows each
loss side by side, and how many top-1 answers changed at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kbflow.gate.rank import QueryEncoder, ranked_entries
from kbflow.index.bm25 import tokenize
from kbflow.index.version import LoadedVersion
from kbflow.settings import GateSettings
from kbflow.store.logs import connect_logs
from kbflow.store.segments import attach_log_views, is_url
from kbflow.store.sql import fetch_table

#: The clicked entry must rank within this many.
WITHIN = 3


@dataclass(frozen=True)
class ReplayQuery:
    query: str
    searches: int
    sessions: int
    clicked: tuple[str, ...]
    """Entries users clicked for this query, most clicked first."""
    clicks: tuple[int, ...]


def load_replay_queries(
    logs_path: Path,
    segments: str | None,
    limit: int,
    days: int,
    now: datetime | None = None,
) -> list[ReplayQuery]:
    """The ``limit`` most asked distinct queries of the last ``days`` days of the log, with
    their clicks. Empty when there is no log yet. Raises ``LogLockedError`` when another
    process holds ``logs.duckdb`` past the retry budget."""
    if limit <= 0:
        return []
    has_segments = segments is not None and (is_url(segments) or Path(segments).is_dir())
    if not logs_path.exists() and not has_segments:
        return []
    end = now or datetime.now(UTC)
    start = end - timedelta(days=days)
    # read-only: a weekly mining run writing its review tables meanwhile is not disturbed;
    # no logs.duckdb yet (serving writes segments only): an empty one in memory
    source = logs_path if logs_path.exists() else Path(":memory:")
    with connect_logs(source, read_only=logs_path.exists(), retry_s=30.0) as con:
        attach_log_views(con, segments if has_segments else None, start, end)
        table = fetch_table(
            con, "gate/select_replay_queries", {"start_at": start, "end_at": end, "limit": limit}
        )
    return [
        ReplayQuery(
            r["query"],
            int(r["n_searches"]),
            int(r["n_sessions"]),
            tuple(r["clicked"]),
            tuple(int(c) for c in r["click_counts"]),
        )
        for r in table.to_pylist()
    ]


def _tops(
    version: LoadedVersion, queries: list[ReplayQuery], encode: QueryEncoder
) -> tuple[list[list[str]], bool]:
    vectors = encode(version, [q.query for q in queries])
    tops = []
    for i, q in enumerate(queries):
        v = vectors[i] if vectors is not None else None
        ranked = ranked_entries(version, tokenize(q.query), v)
        tops.append([version.entry_ids[e] for e in ranked[:WITHIN]])
    return tops, vectors is not None


def replay_check(
    new: LoadedVersion,
    live: LoadedVersion,
    queries: list[ReplayQuery],
    encode: QueryEncoder,
    settings: GateSettings,
) -> dict[str, Any]:
    """Rank ``queries`` on both versions and judge the losses (see the module docstring).

    Returns ``{"queries", "searches", "evidence", "kept", "lost", "gone", "loss_rate",
    "changed_top1", "changed_top1_searches", "losses": [...], "reason", "notes"}``."""
    new_tops, new_dense = _tops(new, queries, encode)
    live_tops, live_dense = _tops(live, queries, encode)
    notes = []
    if not new_dense or not live_dense:
        notes.append("replay: a version was ranked keyword-only (no query embedder)")
    have = set(new.entry_ids)
    evidence = kept = gone = 0
    changed = changed_searches = 0
    losses: list[dict[str, Any]] = []
    for q, nt, lt in zip(queries, new_tops, live_tops, strict=True):
        if nt[:1] != lt[:1]:
            changed += 1
            changed_searches += q.searches
        if not q.clicked:
            continue
        clicked = q.clicked[0]
        if clicked not in have:
            gone += 1
            continue
        if clicked not in lt:
            continue  # the live version did not show it either: no evidence either way
        evidence += 1
        if clicked in nt:
            kept += 1
            continue
        losses.append(
            {
                "query": q.query,
                "searches": q.searches,
                "sessions": q.sessions,
                "clicked": clicked,
                "clicks": q.clicks[0],
                "live_rank": lt.index(clicked) + 1,
                "live_top": lt,
                "new_top": nt,
            }
        )
    loss_rate = round(len(losses) / evidence, 4) if evidence else None
    reason = None
    if loss_rate is not None and evidence >= settings.replay_min_evidence:
        if loss_rate > settings.max_replay_loss:
            reason = (
                f"replay: {len(losses)} of {evidence} logged queries ({loss_rate:.1%}) lose the "
                f"answer users clicked from the top {WITHIN} (allowed {settings.max_replay_loss:.1%})"
            )
    elif queries:
        notes.append(
            f"replay: {evidence} queries with click evidence, fewer than "
            f"{settings.replay_min_evidence}: reported, not judged"
        )
    losses.sort(key=lambda x: (-x["searches"], x["query"]))
    shown = losses[: settings.failing_shown]
    if shown:
        live_label, new_label = _labeller(live), _labeller(new)
        for loss in shown:
            loss["live_top"] = [live_label(e) for e in loss["live_top"]]
            loss["new_top"] = [new_label(e) for e in loss["new_top"]]
    return {
        "queries": len(queries),
        "searches": sum(q.searches for q in queries),
        "evidence": evidence,
        "kept": kept,
        "lost": len(losses),
        "gone": gone,
        "loss_rate": loss_rate,
        "changed_top1": changed,
        "changed_top1_searches": changed_searches,
        "losses": shown,
        "reason": reason,
        "notes": notes,
    }


def _labeller(version: LoadedVersion) -> Any:
    pos = {e: i for i, e in enumerate(version.entry_ids)}
    return lambda e: f"{e} {version.titles[int(version.entry_rows[pos[e]][0])]}"
