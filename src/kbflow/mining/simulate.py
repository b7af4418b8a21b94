"""SIMULATED search and click logs, for demos, tests and benchmarks. Not real user data.

``simulate_week`` runs real searches through a ``Searcher`` on the live index: the KB's golden
queries (in scope and out of scope) and simple paraphrases of them (typo injection, particle
insertion), grouped into sessions spread over one ISO week, and a click model decides what
each simulated user clicks: relevant results far more often than others, higher positions more
often (position bias), and some sessions abandon without clicking. Events go through a
``LogWriter`` with timestamps inside the week. Every simulated session and user id starts with
``sim-`` so simulated rows can never be mistaken for real ones.

``simulate_split_traffic`` turns one split of a golden file into one week of traffic, for the
review loop's measurement (``bench/bench_review_loop.py``): each query asked as it is written, in
1 to 5 sessions of its own users (a skewed draw: real traffic repeats its popular questions),
and users who click the right entry when it is shown in their top 3, never anything else.

``synthesize_events`` is the scale path (benchmarks): it samples events from a pool of search
results (real ones, or made up) with numpy, without searching, as Arrow batches.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypedDict

import numpy as np
import pyarrow as pa

from kbflow.mining.weeks import week_bounds
from kbflow.store.golden import GoldenQuery
from kbflow.store.logs import CLICK_EVENT, SEARCH_EVENT, LogWriter

log = logging.getLogger(__name__)


SIM_PREFIX = "sim-"


PARTICLES_BEFORE = ("请问", "那个", "你好，", "麻烦问下")


PARTICLES_AFTER = ("啊", "呀", "呢", "吗", "哈", "？", "啊？")


@dataclass(frozen=True)
class ClickModel:
    """Probability that a simulated user clicks a result shown at rank ``i`` (0-based):
    ``position_bias[i] * (p_relevant if relevant else p_irrelevant)``; a session abandons
    (no clicks at all) with ``p_abandon``."""

    position_bias: tuple[float, ...] = (1.0, 0.55, 0.3)
    p_relevant: float = 0.75
    p_irrelevant: float = 0.06
    p_abandon: float = 0.15

    def clicks(self, result_ids: list[str], relevant: set[str], rng: random.Random) -> list[int]:
        """0-based positions clicked."""
        out = []
        for i, entry in enumerate(result_ids[: len(self.position_bias)]):
            p = self.position_bias[i] * (
                self.p_relevant if entry in relevant else self.p_irrelevant
            )
            if rng.random() < p:
                out.append(i)
        return out


def paraphrase(query: str, rng: random.Random) -> str:
    """A simple paraphrase: a typo (dropped, doubled or swapped character) and/or a particle."""
    q = query
    if len(q) > 3 and rng.random() < 0.5:
        i = rng.randrange(1, len(q) - 1)
        match rng.randrange(3):
            case 0:
                q = q[:i] + q[i + 1 :]
            case 1:
                q = q[:i] + q[i] + q[i:]
            case _:
                q = q[: i - 1] + q[i] + q[i - 1] + q[i + 1 :]
    if rng.random() < 0.6:
        if rng.random() < 0.5:
            q = rng.choice(PARTICLES_BEFORE) + q
        else:
            q = q.rstrip("？?。") + rng.choice(PARTICLES_AFTER)
    return q if q != query else q + rng.choice(PARTICLES_AFTER)


def simulate_week(
    searcher: Any,
    writer: LogWriter,
    golden: list[GoldenQuery],
    week: str,
    sessions: int = 200,
    seed: int = 0,
    click_model: ClickModel | None = None,
    tz: str = "Asia/Shanghai",
    paraphrase_rate: float = 0.5,
) -> dict[str, int]:
    """Run ``sessions`` simulated sessions of real searches through ``searcher`` (a
    ``kbflow.search.Searcher``) and log them with ``writer``; returns counts. Deterministic in
    ``seed`` except for latencies."""
    if not golden:
        raise ValueError("no golden queries to simulate from")
    rng = random.Random(seed)
    model = click_model or ClickModel()
    start, end = week_bounds(week, tz)
    span = (end - start).total_seconds()
    users = [f"{SIM_PREFIX}user-{i:04d}" for i in range(max(1, sessions // 2))]
    n_search = n_click = 0
    for s in range(sessions):
        session = f"{SIM_PREFIX}{week}-s{s:05d}"
        user = rng.choice(users)
        # leave 10 minutes of room at the end so a session never crosses into next week
        ts = start + timedelta(seconds=rng.uniform(0, span - 600))
        abandon = rng.random() < model.p_abandon
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            chosen = rng.choice(golden)
            query, expected = chosen.query, list(chosen.expected)
            if rng.random() < paraphrase_rate:
                query = paraphrase(query, rng)
            res = searcher.search(query)
            qid = writer.log_search(res, session, user, ts)
            n_search += 1
            if not abandon and not res.handoff:
                ids = [h.entry_id for h in res.results]
                for pos in model.clicks(ids, set(expected), rng):
                    writer.log_click(
                        qid, ids[pos], pos + 1, session, user, ts + timedelta(seconds=3 + pos)
                    )
                    n_click += 1
            ts = ts + timedelta(seconds=rng.uniform(10, 90))
    log.info(
        "simulate: week %s, %d sessions, %d searches, %d clicks (SIMULATED)",
        week,
        sessions,
        n_search,
        n_click,
    )
    return {"sessions": sessions, "searches": n_search, "clicks": n_click}


#: The split traffic's click model: the right entry (any expected entry) is clicked when it is
#: shown at rank 1, 2 or 3 with probability 1.0, 0.6, 0.35 (position bias: users read from the
#: top, and a right answer lower down is often missed); any other entry, a result past rank 3
#: and a hand-off (no answers shown) never. No session abandons on purpose.
TOP3_CLICK_MODEL = ClickModel(
    position_bias=(1.0, 0.6, 0.35), p_relevant=1.0, p_irrelevant=0.0, p_abandon=0.0
)


class SplitTraffic(TypedDict):
    """Counts of one simulated week of split traffic (``simulate_split_traffic``)."""

    queries: int
    """golden queries asked (each in at least one session)"""
    out_of_scope: int
    """of those, queries with no expected entry (they never click)"""
    sessions: int
    """= searches: one search per session, one session per simulated user"""
    clicks: int
    repeated: int
    """queries asked in 2 or more sessions"""
    clicked_in_2_sessions: int
    """queries whose right entry (one and the same) was clicked in 2 or more sessions: the
    evidence the default suggestion rule (``mining.suggest_min_sessions`` = 2) needs"""
    handoffs: int
    """searches answered with a hand-off (nothing shown, nothing clicked)"""
    sessions_per_query: dict[int, int]
    """how many queries were asked in k sessions, for k = 1 .. ``max_sessions``"""


def session_weights(max_sessions: int = 5, skew: float = 1.5) -> list[float]:
    """P(a query is asked in k sessions), k = 1 .. ``max_sessions``, proportional to
    ``1 / k**skew``: at the defaults 0.568, 0.201, 0.109, 0.071, 0.051 (mean 1.84 sessions; 43%
    of queries asked more than once), a Zipf-like tail as in real search logs, where a few
    questions are asked again and again and most once."""
    if max_sessions < 1:
        raise ValueError("max_sessions must be at least 1")
    raw = [1.0 / k**skew for k in range(1, max_sessions + 1)]
    return [w / sum(raw) for w in raw]


def simulate_split_traffic(
    searcher: Any,
    writer: LogWriter,
    queries: list[GoldenQuery],
    week: str,
    seed: int = 0,
    click_model: ClickModel = TOP3_CLICK_MODEL,
    max_sessions: int = 5,
    skew: float = 1.5,
    tz: str = "Asia/Shanghai",
) -> SplitTraffic:
    """One week of SIMULATED traffic made of ``queries`` (a split of a golden file): each query,
    as written, is asked in k distinct sessions, k drawn per query from ``session_weights``
    (``max_sessions``, ``skew``); each session is its own user (ids ``sim-...``), one real search
    through ``searcher`` (a ``kbflow.search.Searcher``, top ``search.default_k`` results) at a
    uniform time inside ``week`` (``tz``), logged with ``writer``. Clicks follow
    ``click_model`` with the query's expected entries as the relevant ones (by default
    ``TOP3_CLICK_MODEL``: the right entry in the top 3, position-biased, never another entry);
    out-of-scope queries (no expected entry) and hand-offs never click. Deterministic in
    ``seed`` (the draws and the clicks; latencies are measured). Returns the counts.
    ``ValueError`` when ``queries`` is empty."""
    if not queries:
        raise ValueError("no golden queries to simulate from")
    weights = session_weights(max_sessions, skew)
    rng = random.Random(seed)
    start, end = week_bounds(week, tz)
    span = (end - start).total_seconds()
    per_k = dict.fromkeys(range(1, max_sessions + 1), 0)
    n_session = n_click = n_repeated = n_evidence = n_handoff = n_oos = 0
    for i, q in enumerate(queries):
        k = rng.choices(range(1, max_sessions + 1), weights)[0]
        per_k[k] += 1
        n_repeated += k >= 2
        n_oos += not q.expected
        clicked: dict[str, int] = {}
        for j in range(k):
            session = f"{SIM_PREFIX}{week}-q{i:06d}-s{j}"
            user = f"{SIM_PREFIX}user-{week}-q{i:06d}-s{j}"
            # 10 minutes of room at the end so a session never crosses into next week
            ts = start + timedelta(seconds=rng.uniform(0, span - 600))
            res = searcher.search(q.query)
            qid = writer.log_search(res, session, user, ts)
            n_session += 1
            n_handoff += bool(res.handoff)
            if res.handoff or not q.expected:
                continue
            ids = [h.entry_id for h in res.results]
            for pos in click_model.clicks(ids, set(q.expected), rng):
                writer.log_click(
                    qid, ids[pos], pos + 1, session, user, ts + timedelta(seconds=3 + pos)
                )
                clicked[ids[pos]] = clicked.get(ids[pos], 0) + 1
                n_click += 1
        n_evidence += max(clicked.values(), default=0) >= 2
    log.info(
        "simulate: week %s, %d split queries (%d out of scope) in %d sessions, %d clicks; "
        "%d asked twice or more, %d with a click in 2+ sessions (SIMULATED)",
        week,
        len(queries),
        n_oos,
        n_session,
        n_click,
        n_repeated,
        n_evidence,
    )
    return {
        "queries": len(queries),
        "out_of_scope": n_oos,
        "sessions": n_session,
        "clicks": n_click,
        "repeated": n_repeated,
        "clicked_in_2_sessions": n_evidence,
        "handoffs": n_handoff,
        "sessions_per_query": per_k,
    }


def synthesize_events(
    pool: list[dict[str, Any]],
    week: str,
    n_searches: int,
    click_rate: float = 0.2,
    seed: int = 0,
    chunk: int = 1_000_000,
    tz: str = "Asia/Shanghai",
    n_users: int = 200_000,
) -> Iterator[tuple[pa.Table, pa.Table]]:
    """SIMULATED events at scale: ``n_searches`` searches sampled (Zipf-like) from ``pool``
    (dicts with ``query``, ``version``, ``result_ids``, ``result_scores``, ``handoff``,
    ``threshold``, ``fallback_level``), lognormal latencies, and about ``click_rate`` clicks per
    search with position bias; yielded as ``(SEARCH_EVENT, CLICK_EVENT)`` tables of ``chunk``
    searches."""
    rng = np.random.default_rng(seed)
    start, end = week_bounds(week, tz)
    span_us = int((end - start).total_seconds() * 1e6)
    start_us = int(start.timestamp() * 1e6)
    weights = 1.0 / np.arange(1, len(pool) + 1) ** 0.8
    weights /= weights.sum()
    queries = pa.array([p["query"] for p in pool], pa.string())
    ids = pa.array([p["result_ids"] for p in pool], pa.list_(pa.string()))
    scores = pa.array([p["result_scores"] for p in pool], pa.list_(pa.float64()))
    top1 = pa.array(
        [p["result_scores"][0] if p["result_scores"] else None for p in pool], pa.float64()
    )
    handoff = pa.array([bool(p["handoff"]) for p in pool], pa.bool_())
    threshold = pa.array([p.get("threshold") for p in pool], pa.float64())
    version = pa.array([p.get("version") for p in pool], pa.string())
    n_results = np.array([len(p["result_ids"]) for p in pool])
    done = 0
    while done < n_searches:
        n = min(chunk, n_searches - done)
        pick = pa.array(rng.choice(len(pool), size=n, p=weights))
        ts = np.sort(rng.integers(start_us, start_us + span_us, size=n))
        qid = np.char.add(f"syn-{week}-", (np.arange(done, done + n)).astype(str))
        user = rng.integers(0, n_users, size=n)
        level = rng.choice(3, size=n, p=(0.95, 0.04, 0.01)).astype(np.int32)
        searches = pa.Table.from_arrays(
            [
                pa.array(qid, pa.string()),
                pa.array(ts, pa.timestamp("us", tz="UTC")),
                pa.array(
                    np.char.add(f"{SIM_PREFIX}s", (user * 7 + ts // 3_600_000_000 % 7).astype(str))
                ),
                pa.array(np.char.add(f"{SIM_PREFIX}u", user.astype(str))),
                queries.take(pick),
                version.take(pick),
                ids.take(pick),
                scores.take(pick),
                top1.take(pick),
                pa.array(np.round(rng.lognormal(3.6, 0.5, size=n), 2)),
                pa.array(level),
                handoff.take(pick),
                threshold.take(pick),
            ],
            schema=SEARCH_EVENT,
        )
        # clicks: a subset of searches with results, at a position drawn with position bias
        has = n_results[pick.to_numpy()] > 0
        clicked = np.flatnonzero(has & (rng.random(n) < click_rate))
        pos = np.minimum(
            rng.choice(3, size=clicked.size, p=(0.65, 0.25, 0.10)),
            n_results[pick.to_numpy()[clicked]] - 1,
        )
        rid = ids.take(pa.array(pick.to_numpy()[clicked]))
        flat_offsets = rid.offsets.to_numpy()[:-1] + pos
        entry = rid.values.take(pa.array(flat_offsets))
        clicks = pa.Table.from_arrays(
            [
                pa.array(qid[clicked], pa.string()),
                pa.array(ts[clicked] + 5_000_000, pa.timestamp("us", tz="UTC")),
                searches.column("session_id").take(pa.array(clicked)).combine_chunks(),
                searches.column("user_id").take(pa.array(clicked)).combine_chunks(),
                entry,
                pa.array((pos + 1).astype(np.int32)),
            ],
            schema=CLICK_EVENT,
        )
        done += n
        yield searches, clicks


def simulated_pool(n_queries: int, n_entries: int, seed: int = 0) -> list[dict[str, Any]]:
    """A made-up pool of search results (SIMULATED): query texts built from a small vocabulary
    of topic words so that some recur with variations, scores in [0, 1]."""
    rng = random.Random(seed)
    topics = [
        "退款",
        "发票",
        "物流",
        "优惠券",
        "会员",
        "积分",
        "退货",
        "换货",
        "地址",
        "密码",
        "支付",
        "订单",
    ]
    verbs = ["怎么", "如何", "为什么", "能不能", "在哪里", "多久"]
    tails = ["申请", "修改", "取消", "查询", "到账", "开具", "使用", "找回", "失败", "不了"]
    pool = []
    for i in range(n_queries):
        q = (
            rng.choice(verbs)
            + rng.choice(topics)
            + rng.choice(tails)
            + rng.choice(("", "啊", "呢", "吗", f" {i}"))
        )
        k = rng.choice((0, 3, 3, 3, 5))
        ids = [f"faq-{rng.randrange(n_entries):06d}" for _ in range(k)]
        top = rng.random()
        sc = sorted((top * rng.uniform(0.5, 1.0) for _ in range(k - 1)), reverse=True)
        scores = [top, *sc] if k else []
        pool.append(
            {
                "query": q,
                "version": "v-sim",
                "result_ids": ids,
                "result_scores": scores,
                "handoff": not ids or top < 0.35,
                "threshold": 0.35,
                "fallback_level": 0,
            }
        )
    return pool
