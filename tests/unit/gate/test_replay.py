"""The gate's replay of logged traffic: real versions (real model, FAISS, BM25), real events
spooled and rolled into Parquet segments, read back with DuckDB."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kbflow.gate.check import gate_version
from kbflow.gate.replay import load_replay_queries, replay_check
from kbflow.index.version import LoadedVersion
from kbflow.publish.pointer import publish_version
from kbflow.search.searcher import Searcher
from kbflow.settings import GateSettings, SearchSettings
from kbflow.store.spool import SpoolWriter

from ..helpers import EN_KB, build_test_version, entry

FILLER = [
    entry("password", "How do I reset my password?", "Tap Forgot password on the sign-in page.",
          ["forgot my password", "can't log in", "reset login"]),
    entry("abroad", "Do you ship internationally?", "We ship to 40 countries; see Shipping.",
          ["ship to canada", "international delivery", "overseas shipping"]),
    entry("cancel-sub", "How do I cancel my membership?", "Settings > Membership > Cancel.",
          ["stop membership", "end subscription", "unsubscribe from plus"]),
    entry("gift-card", "How do I redeem a gift card?", "Enter the code at checkout.",
          ["use gift card", "gift card balance", "redeem voucher card"]),
    entry("warranty", "What does the warranty cover?", "One year against manufacturing defects.",
          ["broken after a month", "is it under warranty", "repair covered"]),
    entry("size-guide", "Which size should I order?", "Each product page has a size chart.",
          ["size chart", "shoes too small", "what size am i"]),
]  # fmt: skip
KB = EN_KB + FILLER
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def swapped(kb: list[dict[str, Any]], a: str, b: str) -> list[dict[str, Any]]:
    """A join bug: entries ``a`` and ``b`` trade their content (ids stay), so questions about
    one now find the other's id."""
    out = copy.deepcopy(kb)
    ea = next(e for e in out if e["entry_id"] == a)
    eb = next(e for e in out if e["entry_id"] == b)
    for field in ("title", "answer", "similar_questions"):
        ea[field], eb[field] = eb[field], ea[field]
    return out


@pytest.fixture(scope="module")
def versions(tmp_path_factory, local_embedder) -> dict[str, LoadedVersion]:
    root = tmp_path_factory.mktemp("replay")
    reworded = copy.deepcopy(KB)
    reworded[0]["answer"] = "A refund is back on your card 5-7 business days after the return."
    kbs = {
        "live": KB,
        "reworded": reworded,
        "swapped": swapped(KB, "track-order", "coupon"),
        "no-invoice": [e for e in KB if e["entry_id"] != "invoice"],
    }
    built = {
        name: LoadedVersion(build_test_version(root, f"v{i}", kb, local_embedder))
        for i, (name, kb) in enumerate(kbs.items(), 1)
    }
    publish_version(root / "indexes", "v1", keep=10)  # "live"
    return built


@pytest.fixture(scope="module")
def logged(tmp_path_factory, versions, local_embedder) -> tuple[Path, str]:
    """A week of traffic on the live version: every similar question asked by 1-3 sessions;
    users click the entry it belongs to when it is in their top 3."""
    root = tmp_path_factory.mktemp("replay-logs")
    segments = str(root / "segments")
    indexes = versions["live"].folder.parent
    searcher = Searcher(indexes, SearchSettings(), lambda info: local_embedder)
    assert searcher.version().version == "v1"
    with SpoolWriter(root / "spool", segments, roll_interval_s=3600) as w:
        n = 0
        asked = [(e, q) for e in KB for q in e["similar_questions"]]
        for i, (e, q) in enumerate(asked):
            for _ in range(1 + i % 3):  # 1, 2 or 3 sessions
                n += 1
                ts = NOW - timedelta(days=1, minutes=n)
                res = searcher.search(q, 3)
                qid = w.log_search(res, session_id=f"s{n}", ts=ts)
                shown = [h.entry_id for h in res.results]
                if e["entry_id"] in shown:
                    w.log_click(qid, e["entry_id"], shown.index(e["entry_id"]) + 1,
                                session_id=f"s{n}", ts=ts + timedelta(seconds=5))  # fmt: skip
        # an old search, outside the replay window
        w.log_search(searcher.search("ancient question", 3), ts=NOW - timedelta(days=30))
    return root / "logs.duckdb", segments


def encoder(local_embedder):
    return lambda version, texts: local_embedder.embed_queries(texts)


def test_replay_reads_the_window_with_click_evidence(logged):
    logs, segments = logged
    queries = load_replay_queries(logs, segments, limit=1000, days=7, now=NOW)
    assert len(queries) == sum(len(e["similar_questions"]) for e in KB)  # not the old one
    assert all(q.searches >= 1 for q in queries)
    assert queries[0].searches == 3 and queries == sorted(queries, key=lambda q: -q.searches)
    by_query = {q.query: q for q in queries}
    assert by_query["track my shipment"].clicked[:1] == ("track-order",)
    assert load_replay_queries(logs, segments, limit=5, days=7, now=NOW)[:5] == queries[:5]
    assert load_replay_queries(logs, None, limit=10, days=7, now=NOW) == []  # nothing stored


def test_a_join_bug_loses_clicked_answers_and_blocks(versions, logged, local_embedder):
    logs, segments = logged
    queries = load_replay_queries(logs, segments, limit=1000, days=7, now=NOW)
    settings = GateSettings(replay_min_evidence=10)
    got = replay_check(versions["swapped"], versions["live"], queries, encoder(local_embedder),
                       settings)  # fmt: skip
    assert got["evidence"] >= 10 and got["lost"] >= 4
    assert {x["clicked"] for x in got["losses"]} <= {"track-order", "coupon"}
    loss = got["losses"][0]
    assert loss["live_top"][0].startswith(loss["clicked"])
    assert not any(t.startswith(loss["clicked"]) for t in loss["new_top"])
    assert got["reason"] and "lose the answer users clicked" in got["reason"]
    # through the gate: blocked, and the reason is the replay's
    live, new = versions["live"], versions["swapped"]
    res = gate_version(new, live, [], settings.model_copy(update={"alignment_entries": 0,
                       "self_check_queries": 0}), encoder(local_embedder), replay=queries)  # fmt: skip
    assert not res["passed"] and any("replay" in r for r in res["reasons"])
    assert res["replay"]["lost"] == got["lost"]


def test_a_reworded_answer_passes_and_a_deleted_entry_is_gone_not_lost(
    versions, logged, local_embedder
):
    logs, segments = logged
    queries = load_replay_queries(logs, segments, limit=1000, days=7, now=NOW)
    settings = GateSettings(replay_min_evidence=10)
    ok = replay_check(versions["reworded"], versions["live"], queries, encoder(local_embedder),
                      settings)  # fmt: skip
    assert ok["lost"] == 0 and ok["reason"] is None and ok["evidence"] >= 10
    gone = replay_check(versions["no-invoice"], versions["live"], queries,
                        encoder(local_embedder), settings)  # fmt: skip
    assert gone["gone"] >= 3 and gone["lost"] == 0 and gone["reason"] is None
    few = replay_check(versions["swapped"], versions["live"], queries[:3], encoder(local_embedder),
                       settings)  # fmt: skip
    assert few["reason"] is None  # too little evidence to judge


def test_the_report_shows_losses_side_by_side(versions, logged, local_embedder):
    from kbflow.report.nightly import replay_section

    from ..helpers import assert_report_markup_is_ours

    logs, segments = logged
    queries = load_replay_queries(logs, segments, limit=1000, days=7, now=NOW)
    got = replay_check(versions["swapped"], versions["live"], queries, encoder(local_embedder),
                       GateSettings(replay_min_evidence=10))  # fmt: skip
    got["losses"][0]["query"] = "<script>alert(1)</script>"
    html = replay_section(got, "v1")
    assert_report_markup_is_ours(html)
    assert "&lt;script&gt;" in html and f"lose it (loss rate {got['loss_rate']:.1%})" in html
    assert html.count("</tr>") == got["lost"] + 1  # header + one row per loss shown


def test_the_gate_stage_replays_the_data_homes_log(tmp_path: Path):
    from types import SimpleNamespace

    from kbflow.gate.stage import _replay_queries
    from kbflow.settings import Settings
    from kbflow.store.home import DataHome

    home = DataHome.at(tmp_path / "home")
    settings = Settings(home=home.root)
    got, note = _replay_queries(home, settings, "v1", "v2")
    assert got == [] and note and "no search in the last 7 days" in note
    hit = SimpleNamespace(entry_id="track-order", score=0.9)
    res = SimpleNamespace(query="where is my parcel", version="v1", results=[hit], top_score=0.9,
                          latency_ms=3.0, fallback_level=0, handoff=False, threshold=0.3)  # fmt: skip
    with SpoolWriter(home.spool_dir, str(home.segments_dir)) as w:  # what kbflow serve writes
        w.log_click(w.log_search(res, session_id="s1"), "track-order", 1, session_id="s1")
    got, note = _replay_queries(home, settings, "v1", "v2")
    assert note is None and [(q.query, q.clicked) for q in got] == [
        ("where is my parcel", ("track-order",))
    ]
    assert _replay_queries(home, settings, None, "v2") == ([], None)  # nothing live: no replay
    off = Settings(home=home.root, gate={"replay_queries": 0})
    assert _replay_queries(home, off, "v1", "v2") == ([], None)
