"""The workbench's pure parts: filters, pages, the next open suggestion, evidence parsing, and
the bind and token rules."""

from __future__ import annotations

import json

import pytest

from kbflow.errors import ConfigError
from kbflow.workbench.security import Guard, check_bind, host_name, is_loopback, same_origin
from kbflow.workbench.views import QueueFilter, next_open, parse_evidence, queue_page


def rows(n: int) -> list[dict]:
    return [
        {"suggestion_id": f"s{i}", "kind": "gap" if i % 2 else "confusion", "week": "2026-W47",
         "category": "物流" if i % 3 == 0 else None, "decision": "accept" if i == 2 else None}
        for i in range(n)
    ]  # fmt: skip


def test_filter_params_round_trip_and_bad_values():
    f = QueueFilter.from_params({"kind": "gap", "status": "all", "page": "3", "category": "物流"})
    assert f.query() == "kind=gap&category=%E7%89%A9%E6%B5%81&status=all&page=3"
    assert QueueFilter.from_params({}).query() == ""
    for bad in ({"status": "closed"}, {"page": "0"}, {"page": "-1"}, {"kind": "x" * 201}):
        with pytest.raises(ConfigError):
            QueueFilter.from_params(bad)


def test_pages_and_counts():
    p = queue_page(rows(250), QueueFilter(status="all", page=3), page_size=100)
    assert (p.page, p.pages, p.first, len(p.rows), p.matching) == (3, 3, 201, 50, 250)
    assert (p.n_open, p.n_decided) == (249, 1)
    p = queue_page(rows(250), QueueFilter(kind="gap", category="物流"), page_size=100)
    assert {r["suggestion_id"] for r in p.rows} == {f"s{i}" for i in range(3, 250, 6)}
    empty = queue_page([], QueueFilter())
    assert (empty.first, empty.pages, empty.rows) == (0, 1, [])


def test_next_open_follows_the_queue_order_and_wraps():
    r = rows(6)  # s2 is decided
    assert next_open(r, QueueFilter(), "s1") == "s3"
    assert next_open(r, QueueFilter(), "s5") == "s0"
    assert next_open(r, QueueFilter(kind="gap"), "s5") == "s1"
    assert next_open(r[:1], QueueFilter(), "s0") is None


def test_evidence_pairs_facts_and_anything_else():
    detail = {"a": {"entry_id": "x", "answer": "7天"}, "b": {"entry_id": "y", "answer": "15天"},
              "facts": [{"kind": "duration", "value_a": "7天", "value_b": "15天"}], "score": 0.912345}  # fmt: skip
    e = parse_evidence("contradiction", json.dumps(detail))
    assert e.pair is not None and (e.pair[0]["answer"], e.pair[1]["answer"]) == ("7天", "15天")
    assert e.facts[0]["value_b"] == "15天" and e.items == [("score", "0.9123")]
    e = parse_evidence("gap", json.dumps({"nearest_score": 0.2, "n_handoff": 3, "a": {"k": 1}}))
    assert e.pair is None and ("a", '{"k": 1}') in e.items
    assert parse_evidence("gap", "not json").items == [("detail", "not json")]
    assert parse_evidence("gap", None).items == []


def test_bind_rule_token_and_origins():
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("localhost", None)
    for host in ("0.0.0.0", "::", "10.1.2.3", "kb.example"):
        with pytest.raises(ConfigError, match="without a token"):
            check_bind(host, None)
        check_bind(host, "a" * 16)
    assert is_loopback("[::1]") and is_loopback("127.8.0.1") and not is_loopback("evil.example")
    assert host_name("[::1]:8700") == "::1" and host_name("127.0.0.1:80") == "127.0.0.1"
    assert same_origin("http://127.0.0.1:8700", "127.0.0.1:8700")
    assert not same_origin("http://127.0.0.1:9999", "127.0.0.1:8700")
    assert not same_origin("null", "127.0.0.1:8700")
    g = Guard("a" * 20)
    assert g.token_ok("a" * 20) and not g.token_ok("a" * 19)
    assert g.session_ok(g.session_value()) and "a" * 20 not in g.session_value()
    assert g.csrf_ok("browser", g.csrf_token("browser"))
    assert not g.csrf_ok("other", g.csrf_token("browser")) and not g.csrf_ok("", "")
    assert not Guard(None).token_ok("")
    assert Guard("a" * 20).csrf_token("b") != g.csrf_token("b")  # a key per process
