"""A golden split as one week of SIMULATED traffic (``simulate_split_traffic``), on a real index
(the English test KB, the real MiniLM model, real FAISS) and a real ``logs.duckdb``: sessions per
query, the top-3 click model and determinism are checked on what was logged."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from kbflow.cli.main import main
from kbflow.mining.simulate import (
    SIM_PREFIX,
    TOP3_CLICK_MODEL,
    session_weights,
    simulate_split_traffic,
)
from kbflow.mining.weeks import week_bounds
from kbflow.publish.pointer import publish_version
from kbflow.search.searcher import Searcher
from kbflow.settings import SearchSettings
from kbflow.store.golden import GoldenQuery
from kbflow.store.logs import LogWriter

from ..helpers import EN_KB, build_test_version

WEEK = "2026-W48"

# paraphrases of the test KB's entries (each asked for its entry), and out-of-scope questions
ASKED = {
    "refund-time": ["money back when", "refund is late", "days until my refund", "refund delay"],
    "track-order": ["where is my parcel", "package not arrived", "order tracking", "lost parcel"],
    "change-address": ["fix my delivery address", "new address for order", "address typo"],
    "coupon": ["voucher does not work", "promo code error", "discount not applied"],
    "invoice": ["company receipt", "get a vat invoice", "invoice download", "tax receipt"],
}
OUT_OF_SCOPE = ["weather on mars", "best pizza recipe", "who won the football", "sing a song"]


def split_queries(copies: int = 3) -> list[GoldenQuery]:
    """About 70 queries (each text asked ``copies`` times as separate golden rows, as real
    golden files repeat common wordings), in scope and out of scope."""
    rows = [GoldenQuery(q, (e,), "valid") for e, qs in ASKED.items() for q in qs]
    rows += [GoldenQuery(q, (), "valid") for q in OUT_OF_SCOPE]
    return rows * copies


@pytest.fixture(scope="module")
def home(tmp_path_factory, local_embedder) -> Path:
    root = tmp_path_factory.mktemp("split")
    build_test_version(root, "v1", EN_KB, local_embedder)
    publish_version(root / "indexes", "v1", keep=5)
    return root


def simulate(home: Path, logs: Path, local_embedder, seed: int, queries=None) -> dict:
    searcher = Searcher(home / "indexes", SearchSettings(), lambda info: local_embedder)
    with LogWriter(logs, batch_size=100, flush_s=0.5) as writer:
        return dict(
            simulate_split_traffic(
                searcher, writer, split_queries() if queries is None else queries, WEEK, seed=seed
            )
        )


def logged(logs: Path) -> tuple[list[dict], list[dict]]:
    con = duckdb.connect(str(logs), read_only=True)
    try:
        cols = "query_id, ts, session_id, user_id, query, result_ids, handoff"
        searches = con.execute(f"select {cols} from search_events order by session_id").fetchall()
        clicks = con.execute(
            "select query_id, ts, session_id, user_id, entry_id, position from click_events"
        ).fetchall()
    finally:
        con.close()
    s_keys = ["query_id", "ts", "session_id", "user_id", "query", "result_ids", "handoff"]
    c_keys = ["query_id", "ts", "session_id", "user_id", "entry_id", "position"]
    return [dict(zip(s_keys, r, strict=True)) for r in searches], [
        dict(zip(c_keys, r, strict=True)) for r in clicks
    ]


def query_index(session_id: str) -> int:
    """The golden row a session asked: ids are ``sim-<week>-q<index>-s<j>``."""
    return int(session_id.split("-q")[1].split("-s")[0])


@pytest.fixture(scope="module")
def week(home: Path, tmp_path_factory, local_embedder) -> tuple[dict, list[dict], list[dict]]:
    logs = tmp_path_factory.mktemp("logs") / "logs.duckdb"
    got = simulate(home, logs, local_embedder, seed=11)
    return (got, *logged(logs))


def test_session_weights_are_a_skewed_distribution():
    w = session_weights()
    assert len(w) == 5 and sum(w) == pytest.approx(1.0)
    assert all(a > b for a, b in zip(w, w[1:], strict=False))  # popular questions are rarer
    assert w[0] == pytest.approx(0.568, abs=1e-3) and w[4] == pytest.approx(0.051, abs=1e-3)
    assert session_weights(3, skew=0.0) == pytest.approx([1 / 3] * 3)  # no skew: uniform
    with pytest.raises(ValueError):
        session_weights(0)


def test_each_query_is_asked_in_one_to_five_sessions_of_its_own_users(week):
    got, searches, _ = week
    queries = split_queries()
    per_query = Counter(query_index(s["session_id"]) for s in searches)
    assert set(per_query) == set(range(len(queries)))  # every query asked at least once
    assert all(1 <= k <= 5 for k in per_query.values())
    for s in searches:
        assert s["query"] == queries[query_index(s["session_id"])].query  # asked as written
        assert s["session_id"].startswith(SIM_PREFIX) and s["user_id"].startswith(SIM_PREFIX)
    # one search per session, one session per user
    assert len({s["session_id"] for s in searches}) == len(searches) == got["sessions"]
    assert len({s["user_id"] for s in searches}) == len(searches)
    # skewed: more queries asked once than twice, than five times; counts agree with the log
    dist = Counter(per_query.values())
    assert got["sessions_per_query"] == {k: dist.get(k, 0) for k in range(1, 6)}
    assert dist[1] > dist[2] >= dist[5] and dist[1] > len(queries) / 3
    assert got["repeated"] == sum(v for k, v in dist.items() if k >= 2)
    start, end = week_bounds(WEEK, "Asia/Shanghai")
    assert all(start <= s["ts"] < end for s in searches)


def test_clicks_only_on_the_right_entry_in_the_top_three(week):
    got, searches, clicks = week
    queries = split_queries()
    by_qid = {s["query_id"]: s for s in searches}
    assert clicks and len(clicks) == got["clicks"]
    for c in clicks:
        s = by_qid[c["query_id"]]
        q = queries[query_index(s["session_id"])]
        assert c["entry_id"] in q.expected  # never a wrong entry, never out of scope
        assert not s["handoff"]  # a hand-off shows no answers
        assert 1 <= c["position"] <= 3 and s["result_ids"][c["position"] - 1] == c["entry_id"]
        assert (c["session_id"], c["user_id"]) == (s["session_id"], s["user_id"])
        assert c["ts"] > s["ts"]
    # position bias 1.0 at rank 1: a right entry shown first is always clicked
    clicked = {c["query_id"] for c in clicks}
    for s in searches:
        q = queries[query_index(s["session_id"])]
        if not s["handoff"] and s["result_ids"] and s["result_ids"][0] in q.expected:
            assert s["query_id"] in clicked
    assert TOP3_CLICK_MODEL.position_bias == (1.0, 0.6, 0.35)
    # the evidence count: queries whose (one) right entry was clicked in 2+ sessions
    per = Counter((query_index(c["session_id"]), c["entry_id"]) for c in clicks)
    assert got["clicked_in_2_sessions"] == len({i for (i, _), n in per.items() if n >= 2})
    assert got["handoffs"] == sum(s["handoff"] for s in searches)
    assert got["out_of_scope"] == len(OUT_OF_SCOPE) * 3


def test_same_seed_same_week_other_seed_another(home: Path, tmp_path: Path, local_embedder, week):
    queries = split_queries(copies=1)

    def run(name: str, seed: int) -> tuple[list, list]:
        simulate(home, tmp_path / name, local_embedder, seed, queries)
        searches, clicks = logged(tmp_path / name)
        return (
            sorted((s["session_id"], s["ts"], s["query"]) for s in searches),
            sorted((c["session_id"], c["entry_id"], c["position"]) for c in clicks),
        )

    assert run("a.duckdb", 3) == run("b.duckdb", 3)
    assert run("c.duckdb", 4)[0] != run("a.duckdb", 3)[0]


def test_empty_split_is_refused(home: Path, tmp_path: Path, local_embedder):
    with pytest.raises(ValueError, match="no golden queries"):
        simulate(home, tmp_path / "logs.duckdb", local_embedder, 0, queries=[])


def test_cli_split_option(home: Path, tmp_path: Path, capsys):
    golden = tmp_path / "golden.jsonl"
    rows = [{"query": "refund is late", "expected": ["refund-time"], "split": "valid"},
            {"query": "weather on mars", "expected": [], "split": "valid"},
            {"query": "where is my parcel", "expected": ["track-order"], "split": "test"}]  # fmt: skip
    golden.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    base = ["simulate-logs", "--home", str(home), "--week", WEEK, "--golden", str(golden)]
    assert main([*base, "--split", "valid", "--sessions", "5"]) != 0
    assert "do not go together" in capsys.readouterr().err
    assert main([*base, "--split", "nope"]) != 0  # no such split: one line, not a traceback
    capsys.readouterr()
    assert main([*base, "--split", "valid", "--seed", "2", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["week"], got["queries"], got["out_of_scope"]) == (WEEK, 2, 1)
    searches, _ = logged(Path(got["logs"]))
    assert {s["query"] for s in searches} == {"refund is late", "weather on mars"}
    assert len(searches) == got["sessions"]
