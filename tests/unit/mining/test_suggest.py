"""The review queue: suggestions mined from hand-built events against a real live version,
decisions, resurfacing, and the patch export (real DuckDB files, CSV, XLSX; no Prefect)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from kbflow.contracts import table_from_rows
from kbflow.errors import ConfigError, DecisionConflict, UnknownSuggestion
from kbflow.mining.cluster import OTHER, assign_gap_clusters
from kbflow.mining.kb import (
    CONTRADICTIONS,
    DUPLICATE_PAIRS,
    KB_ENTRIES,
    STALE_ENTRIES,
    LiveKb,
    live_kb,
)
from kbflow.mining.mine import mine_week
from kbflow.mining.suggest import decide, export_patch, patch_rows, review_queue
from kbflow.publish.pointer import publish_version
from kbflow.settings import MiningSettings
from kbflow.store.decisions import QUESTION_KINDS, accepted_changes
from kbflow.store.spool import SpoolWriter

from ..helpers import tiny_version

W47 = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)  # Monday 10:00 Asia/Shanghai
W48 = W47 + timedelta(days=7)


class Traffic:
    """Searches and clicks written the way ``kbflow serve`` writes them (spool -> segments)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.writer = SpoolWriter(home / "logs" / "spool", self.segments, roll_interval_s=3600)
        self.n = 0

    @property
    def segments(self) -> str:
        return str(self.home / "logs" / "segments")

    def ask(self, query, results, scores, click=None, sessions=1, start=W47):
        for _ in range(sessions):
            self.n += 1
            ts = start + timedelta(minutes=self.n)
            row = {
                "query_id": f"q{self.n}-{start.date()}",
                "ts": ts,
                "session_id": f"s{self.n}",
                "user_id": f"u{self.n % 4}",
                "query": query,
                "version": "v1",
                "result_ids": results,
                "result_scores": scores,
                "top1_score": scores[0],
                "latency_ms": 12.0,
                "fallback_level": 0,
                "handoff": False,
                "threshold": 0.3,
            }
            self.writer.log_row("search", row)
            if click:
                self.writer.log_click(row["query_id"], click, results.index(click) + 1,
                                      session_id=row["session_id"], ts=ts + timedelta(seconds=4))  # fmt: skip

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    tiny_version(home / "indexes", "v1")
    publish_version(home / "indexes", "v1", keep=5)
    return home


def mine(home: Path, week: str) -> dict:
    kb = live_kb(home / "indexes", home / "runs")
    return mine_week(home / "logs.duckdb", week, MiningSettings(), segments=str(home / "logs" /
                     "segments"), kb=kb)  # fmt: skip


def week47(home: Path, scale: int = 1) -> None:
    t = Traffic(home)
    top = ["track-order", "change-address", "refund-time"]
    # a new wording users keep clicking track-order for (3 sessions; two spellings fold to one)
    t.ask("Parcel not here yet?", top, [0.61, 0.4, 0.3], click="track-order", sessions=2 * scale)
    t.ask("parcel not here yet", top, [0.61, 0.4, 0.3], click="track-order", sessions=1 * scale)
    # already one of track-order's similar questions ("where's my package"), folded: not new
    t.ask("Wheres my package!!", top, [0.9, 0.4, 0.3], click="track-order", sessions=3)
    # once only: not enough evidence
    t.ask("courier lost it", top, [0.5, 0.4, 0.3], click="track-order", sessions=1)
    # a close call: users click the second entry, which scored 0.02 under the first
    t.ask("promo or invoice?", ["coupon", "invoice"], [0.50, 0.48], click="invoice", sessions=2)
    t.close()


def test_suggestions_with_evidence_and_the_queue(home: Path):
    week47(home)
    summary = mine(home, "2026-W47")
    assert summary["suggestions"] == 2
    queue = review_queue(home / "logs.duckdb")
    by_kind = {r["kind"]: r for r in queue}
    s = by_kind["similar_question"]
    assert (s["entry_id"], s["n_sessions"], s["n_searches"]) == ("track-order", 3, 3)
    assert s["text"] == "Parcel not here yet?"  # the most asked spelling
    assert sorted(s["example_queries"]) == ["Parcel not here yet?", "parcel not here yet"]
    c = by_kind["confusion"]
    assert (c["entry_id"], c["other_entry_id"], c["n_sessions"]) == ("invoice", "coupon", 2)
    assert c["score_gap"] == pytest.approx(0.02)
    assert [r["impact"] for r in queue] == sorted((r["impact"] for r in queue), reverse=True)
    assert all(r["decision"] is None for r in queue)
    assert mine(home, "2026-W47")["suggestions"] == 2  # a rerun replaces the week


def test_decisions_are_appended_and_decided_ones_resurface_only_on_growth(home: Path):
    week47(home)
    mine(home, "2026-W47")
    queue = {r["kind"]: r for r in review_queue(home / "logs.duckdb")}
    sim, conf = queue["similar_question"], queue["confusion"]
    logs = home / "logs.duckdb"
    with pytest.raises(ConfigError, match="must change"):
        decide(logs, sim["suggestion_id"], "edit", "ana")
    with pytest.raises(ConfigError, match="no suggestion"):
        decide(logs, "nope", "accept", "ana")
    decide(logs, sim["suggestion_id"], "defer", "ana", "ask the logistics team")
    decide(logs, sim["suggestion_id"], "accept", "ana")
    decide(logs, conf["suggestion_id"], "reject", "bo", "different products")
    now = {r["kind"]: r for r in review_queue(logs)}
    assert now["similar_question"]["decision"] == "accept"
    assert now["confusion"]["decision"] == "reject" and now["confusion"]["comment"]
    assert review_queue(logs, open_only=True) == []
    assert mine(home, "2026-W47")["suggestions"] == 2  # a rerun of the decided week keeps them
    # next week, the same evidence: decided suggestions do not come back
    t = Traffic(home)
    top = ["track-order", "change-address", "refund-time"]
    t.ask("parcel not here yet", top, [0.61, 0.4, 0.3], click="track-order", sessions=3, start=W48)
    t.ask("promo or invoice?", ["coupon", "invoice"], [0.5, 0.48], click="invoice", sessions=3,
          start=W48)  # fmt: skip
    t.close()
    assert mine(home, "2026-W48")["suggestions"] == 0
    # ... unless the evidence grows past the factor (2x the 2 sessions the rejection saw)
    t = Traffic(home)
    t.ask("promo or invoice?", ["coupon", "invoice"], [0.5, 0.48], click="invoice", sessions=2,
          start=W48 + timedelta(days=1))  # fmt: skip
    t.close()
    assert mine(home, "2026-W48")["suggestions"] == 1


def test_accepted_changes_export_as_a_patch(home: Path, tmp_path: Path):
    week47(home)
    mine(home, "2026-W47")
    logs = home / "logs.duckdb"
    queue = {r["kind"]: r for r in review_queue(logs)}
    decide(logs, queue["similar_question"]["suggestion_id"], "accept", "ana")
    decide(logs, queue["confusion"]["suggestion_id"], "edit", "bo",
           text="=HYPERLINK(\"http://x\")", entry_id="coupon")  # fmt: skip
    assert export_patch(logs, tmp_path / "p.jsonl", "jsonl") == 2
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [(r["entry_id"], r["field"], r["new_value"], r["reviewer"]) for r in rows] == [
        ("track-order", "similar_questions", "Parcel not here yet?", "ana"),
        ("coupon", "similar_questions", '=HYPERLINK("http://x")', "bo"),
    ]
    export_patch(logs, tmp_path / "p.csv", "csv")
    raw = (tmp_path / "p.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads it as UTF-8
    cells = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    assert cells[1]["new_value"].startswith("'=")  # never a formula in Excel
    export_patch(logs, tmp_path / "p.xlsx", "xlsx")
    from openpyxl import load_workbook

    ws = load_workbook(tmp_path / "p.xlsx").active
    assert [c.value for c in ws[1]][:4] == ["entry_id", "field", "old_value", "new_value"]
    assert ws["D3"].value == '=HYPERLINK("http://x")' and ws["D3"].data_type == "s"


def test_review_cli_lists_decides_by_prefix_and_exports(home: Path, tmp_path: Path, capsys):
    from kbflow.cli.main import main

    week47(home)
    mine(home, "2026-W47")
    assert main(["review", "list", "--home", str(home), "--json"]) == 0
    queue = json.loads(capsys.readouterr().out)
    sid = next(r["suggestion_id"] for r in queue if r["kind"] == "similar_question")
    assert main(["review", "decide", "--home", str(home), sid[:12], "accept", "--by", "cy"]) == 0
    assert "accept: similar_question track-order" in capsys.readouterr().out
    out = tmp_path / "patch.csv"
    assert main(["review", "export", "--home", str(home), "--out", str(out)]) == 0
    assert "1 accepted changes" in capsys.readouterr().out and out.is_file()
    assert main(["review", "list", "--home", str(home), "--open"]) == 0
    assert "confusion" in capsys.readouterr().out


def live(home: Path, **tables) -> LiveKb:
    """The live version as ``live_kb`` reads it, with the run's KB-side tables given here
    (tiny_version has no run folder)."""
    base = live_kb(home / "indexes", home / "runs")
    entries = table_from_rows(
        [
            {"entry_id": "refund-time", "title": "How long does a refund take?",
             "answer": "Refunds reach your card within 5-7 business days.", "category": "billing",
             "expires_at": "2026-11-30"},
            {"entry_id": "coupon", "title": "Why can't I use my coupon?",
             "answer": "Coupons expire after 30 days.", "category": "promo",
             "expires_at": "2027-01-01"},
            {"entry_id": "invoice", "title": "How do I get an invoice?",
             "answer": "Invoices can be reissued within 15 days.", "category": "billing",
             "expires_at": None},
        ],
        KB_ENTRIES,
    )  # fmt: skip
    return replace(base, entries=entries, **tables)


def test_gap_low_click_and_kb_side_kinds(home: Path):
    t = Traffic(home)
    top = ["refund-time"]
    # a topic the KB cannot answer (low scores, no click), in two wordings, three sessions
    t.ask("can my cat fly with me", ["invoice"], [0.2], sessions=2)
    t.ask("can my cat fly with me?!", ["invoice"], [0.2], sessions=1)
    t.ask("asked once only", ["invoice"], [0.2], sessions=1)  # no topic: "other"
    # refund-time shown 24 times, clicked twice: a low-click answer (and an expiring entry)
    t.ask("refund status", top[:1], [0.8], sessions=22)
    t.ask("refund status", top[:1], [0.8], click="refund-time", sessions=2)
    # an entry the live version dropped as stale, still the top answer of an old version
    t.ask("summer sale", ["old-promo", "coupon"], [0.9, 0.3], click="old-promo", sessions=2)
    t.close()
    kb = live(
        home,
        stale=table_from_rows(
            [{"entry_id": "old-promo", "title": "Summer sale 2026", "reason": "expired",
              "stale_since": "2026-09-01"}], STALE_ENTRIES),
        duplicates=table_from_rows(
            [{"entry_id": "x", "entry_a": "coupon", "entry_b": "invoice", "score": 0.95,
              "matched_a": "coupon", "matched_b": "invoice"},
             {"entry_a": "refund-time", "entry_b": "invoice", "score": 0.93}], DUPLICATE_PAIRS),
        contradictions=table_from_rows(
            [{"entry_a": "coupon", "entry_b": "invoice", "similarity": 0.95, "fact_kind": "duration",
              "value_a": "30 days", "value_b": "15 days", "evidence_a": "expire after 30 days",
              "evidence_b": "within 15 days"}], CONTRADICTIONS),
    )  # fmt: skip
    summary = mine_week(home / "logs.duckdb", "2026-W47", MiningSettings(),
                        segments=str(home / "logs" / "segments"), kb=kb)  # fmt: skip
    queue = review_queue(home / "logs.duckdb")
    assert summary["suggestions"] == len(queue)
    by_kind: dict[str, list[dict]] = {}
    for r in queue:
        by_kind.setdefault(r["kind"], []).append(r)
    # (shown and never clicked is a gap too: "refund status" in its 22 unclicked sessions)
    gaps = {g["text"]: g for g in by_kind["gap"]}
    assert set(gaps) == {"can my cat fly with me", "refund status"}
    gap = gaps["can my cat fly with me"]
    assert (gap["entry_id"], gap["n_sessions"]) == ("", 3)
    assert json.loads(gap["detail"])["nearest_entry_id"] == "invoice"
    assert "asked once only" not in {q for g in gaps.values() for q in g["example_queries"]}
    (low,) = by_kind["low_click"]
    assert (low["entry_id"], low["n_sessions"], low["n_clicks"]) == ("refund-time", 24, 2)
    assert json.loads(low["detail"])["answer"].startswith("Refunds reach")
    assert low["category"] == "billing"
    # the pair with a contradiction is one card with both answers; the other pair a duplicate
    (con,) = by_kind["contradiction"]
    d = json.loads(con["detail"])
    assert (d["a"]["entry_id"], d["b"]["entry_id"]) == ("coupon", "invoice")
    assert d["a"]["answer"] == "Coupons expire after 30 days."
    assert d["facts"][0]["value_a"] == "30 days" and d["facts"][0]["value_b"] == "15 days"
    (dup,) = by_kind["duplicate"]
    assert {dup["entry_id"], dup["other_entry_id"]} == {"refund-time", "invoice"}
    (exp,) = by_kind["expiring"]  # 2026-11-30 is 7 days after the week; 2027-01-01 is not
    assert exp["entry_id"] == "refund-time" and json.loads(exp["detail"])["days_left"] == 7
    (stale,) = by_kind["stale_asked"]
    assert (stale["entry_id"], stale["n_sessions"], stale["text"]) == ("old-promo", 2,
                                                                       "Summer sale 2026")  # fmt: skip
    # accepted KB-side changes export with their field, never reach the overlay
    logs = home / "logs.duckdb"
    decide(logs, low["suggestion_id"], "edit", "ana", text="Refunds take 5-7 days; track it here.")
    decide(logs, gap["suggestion_id"], "accept", "ana")
    decide(logs, con["suggestion_id"], "accept", "bo")
    patch = {r["suggestion_id"]: r for r in patch_rows(logs)}
    rewrite = patch[low["suggestion_id"]]
    assert rewrite["field"] == "answer" and rewrite["old_value"].startswith("Refunds reach")
    assert rewrite["new_value"] == "Refunds take 5-7 days; track it here."
    new = patch[gap["suggestion_id"]]
    assert (new["field"], new["entry_id"], new["new_value"]) == ("new_entry", "", gap["text"])
    fix = patch[con["suggestion_id"]]  # accepted without a rewrite: the answer is to be fixed
    assert (fix["field"], fix["entry_id"], fix["new_value"]) == ("answer", "coupon", "")
    assert accepted_changes(logs, QUESTION_KINDS) == []


def test_decisions_refuse_conflicts_and_double_submits(home: Path):
    week47(home)
    mine(home, "2026-W47")
    logs = home / "logs.duckdb"
    sid = next(r["suggestion_id"] for r in review_queue(logs) if r["kind"] == "similar_question")
    with pytest.raises(UnknownSuggestion):
        decide(logs, sid[:8], "accept", "ana", exact=True)  # the web passes whole ids only
    decide(logs, sid, "defer", "ana", decision_id="form-1")
    with pytest.raises(DecisionConflict, match="submitted twice"):
        decide(logs, sid, "accept", "ana", decision_id="form-1")
    decide(logs, sid, "reject", "ana")
    with pytest.raises(DecisionConflict, match="already decided"):
        decide(logs, sid, "accept", "bo")
    decide(logs, sid, "accept", "bo", change=True)  # a reviewer changing their mind, explicitly
    n = (
        duckdb.connect(str(logs), read_only=True)
        .execute("select count(*) from review_decisions")
        .fetchone()
    )
    assert n == (3,)


def test_gap_topics_by_meaning_with_the_version_encoder():
    """Paraphrases sharing no characters group by their vectors; single queries go to "other"."""
    queries = ["猫能托运吗", "可以带宠物上飞机吗", "能用比特币付款吗", "今天天气怎么样"]
    vectors = {
        "猫能托运吗": [1.0, 0.1, 0.0],
        "可以带宠物上飞机吗": [0.95, 0.2, 0.0],
        "能用比特币付款吗": [0.0, 1.0, 0.1],
        "今天天气怎么样": [0.0, 0.0, 1.0],
    }
    gap = pa.table({"query": queries, "n_events": [5, 4, 1, 1]})  # the last two: asked once
    table, left_out, method = assign_gap_clusters(
        gap, MiningSettings(), lambda texts: np.array([vectors[t] for t in texts]), 0.9
    )
    got = dict(
        zip(table.column("query").to_pylist(), table.column("cluster_id").to_pylist(), strict=True)
    )
    assert method == "vectors" and left_out == 0
    assert got["猫能托运吗"] == got["可以带宠物上飞机吗"] == 0
    assert got["能用比特币付款吗"] == got["今天天气怎么样"] == OTHER
    # an encoder that fails: clustered by characters, said so
    _, _, method = assign_gap_clusters(gap, MiningSettings(), lambda texts: 1 / 0, 0.9)
    assert method == "characters"


def test_the_cli_offers_every_kind():
    from kbflow.cli.review import SUGGESTION_KINDS
    from kbflow.mining.suggest import KINDS

    assert SUGGESTION_KINDS == KINDS
