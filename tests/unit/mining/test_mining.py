"""Weekly mining on hand-built events with known answers (real DuckDB file, no Prefect)."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kbflow.errors import ConfigError
from kbflow.mining.cluster import cluster_texts, normalize_query
from kbflow.mining.export import excel_safe, export_week, render_week_report
from kbflow.mining.mine import mine_week
from kbflow.mining.weeks import default_week, week_bounds
from kbflow.settings import MiningSettings
from kbflow.store.logs import CLICK_EVENT, SEARCH_EVENT, append_events, connect_logs

WEEK = "2026-W47"  # Mon 2026-11-16 00:00 Asia/Shanghai = 2026-11-15 16:00 UTC
START = datetime(2026, 11, 15, 16, 0, tzinfo=UTC)
TOPIC_INVOICE = [
    "怎么修改发票抬头",
    "发票抬头怎么修改啊",
    "请问怎么修改发票抬头？",
    "怎摸修改发票抬头",
    "修改 发票抬头 怎么弄",
]
TOPIC_POINTS = ["积分可以兑换现金吗", "积分能兑换现金吗?", "请问积分可以换现金吗"]
SCRIPT = "<script>alert(1)</script>"


class Builder:
    def __init__(self) -> None:
        self.searches: list[dict] = []
        self.clicks: list[dict] = []

    def search(self, query, results, top1, ts, latency=10.0, level=0, handoff=False, clicks=()):
        qid = f"q{len(self.searches)}"
        self.searches.append(
            {
                "query_id": qid,
                "ts": ts,
                "session_id": f"s{len(self.searches) % 7}",
                "user_id": f"u{len(self.searches) % 5}",
                "query": query,
                "version": "v1",
                "result_ids": results,
                "result_scores": [top1] * len(results) if top1 is not None else [],
                "top1_score": top1,
                "latency_ms": latency,
                "fallback_level": level,
                "handoff": handoff,
                "threshold": 0.4,
            }
        )
        for entry in clicks:
            self.clicks.append(
                {
                    "query_id": qid,
                    "ts": ts + timedelta(seconds=5),
                    "session_id": "s",
                    "user_id": "u",
                    "entry_id": entry,
                    "position": results.index(entry) + 1,
                }
            )

    def write(self, path: Path) -> None:
        with connect_logs(path) as con:
            append_events(
                con,
                pa.Table.from_pylist(self.searches, schema=SEARCH_EVENT),
                pa.Table.from_pylist(self.clicks, schema=CLICK_EVENT),
            )
        self.searches, self.clicks = [], []


def build_week(path: Path) -> None:
    """100 searches in W47 with latencies 1..100 ms, 60 in W46 (all scoring 0.95), 1 just
    before W47 starts (must not count)."""
    b = Builder()
    latencies = iter(range(1, 101))

    def at(i: int) -> datetime:
        return START + timedelta(hours=1, minutes=i)

    i = 0
    for n in range(30):  # answer A: 30 top-1 impressions, 1 click -> CTR 3.3 %, flagged
        b.search(
            "如何申请退货",
            ["A", "X", "Y"],
            0.6,
            at(i),
            next(latencies),
            clicks=["A"] if n == 0 else (),
        )
        i += 1
    for n in range(30):  # answer B: 30 impressions at rank 2, 10 clicks; 20 keyword-only
        b.search(
            "退款多久到账", ["X", "B", "Y"], 0.7, at(i), next(latencies),
            level=1 if n < 20 else 0, clicks=["B"] if n < 10 else (),
        )  # fmt: skip
        i += 1
    for _ in range(5):  # answer C: 5 impressions, no click: too few to flag
        b.search("优惠券叠加", ["C", "X"], 0.8, at(i), next(latencies), clicks=["X"])
        i += 1
    for n, q in enumerate(TOPIC_INVOICE):  # gap topic 1: handed off, 2 with the canned answer
        b.search(q, [] if n < 2 else ["Z"], None if n < 2 else 0.2, at(i), next(latencies),
                 level=2 if n < 2 else 0, handoff=True)  # fmt: skip
        i += 1
    for q in TOPIC_POINTS:  # gap topic 2: low score, not handed off
        b.search(q, ["P"], 0.3, at(i), next(latencies))
        i += 1
    b.search(SCRIPT, ["A"], 0.1, at(i), next(latencies), handoff=True)
    i += 1
    b.search("=1+1", ["A"], 0.1, at(i), next(latencies), handoff=True)
    i += 1
    for _ in range(100 - i):  # fillers, clicked
        b.search("物流查询", ["D"], 0.8, at(i), next(latencies), clicks=["D"])
        i += 1
    for n in range(60):  # previous week, all 0.95
        b.search("物流查询", ["D"], 0.95, START - timedelta(days=3, minutes=n), 5.0, clicks=["D"])
    b.search("如何申请退货", ["A"], 0.6, START - timedelta(seconds=1), 5.0, clicks=["A"])
    b.write(path)


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    path = tmp_path / "logs.duckdb"
    build_week(path)
    return path


def rows(path: Path, sql: str, *params) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def test_week_bounds_are_monday_midnight_in_shanghai():
    assert week_bounds(WEEK) == (START, START + timedelta(days=7))
    assert default_week(datetime(2026, 11, 23, 0, 0, tzinfo=UTC)) == WEEK  # Mon 08:00 local
    assert default_week(datetime(2026, 11, 22, 15, 0, tzinfo=UTC)) == "2026-W46"  # Sun 23:00
    for bad in ("2026-47", "2026-W54", "", "W47"):
        with pytest.raises(ConfigError):
            week_bounds(bad)


def test_normalize_and_cluster_texts():
    assert normalize_query("  发票？ Ｈello!  ") == "发票hello"
    labels = cluster_texts([normalize_query(q) for q in TOPIC_INVOICE + TOPIC_POINTS])
    assert len(set(labels[: len(TOPIC_INVOICE)])) == 1
    assert len(set(labels[len(TOPIC_INVOICE) :])) == 1
    assert labels[0] != labels[-1]


def test_answer_ctr_flags(logs: Path):
    mine_week(logs, WEEK)
    got = {
        e: (imp, top1, clicks, flagged)
        for e, imp, top1, clicks, flagged in rows(
            logs,
            "select entry_id, impressions, top1_impressions, clicks, flagged "
            "from review_low_click_answers where week = ?",
            WEEK,
        )
    }
    assert got["A"] == (32, 32, 1, True)  # 30 + the two odd queries; the pre-week click excluded
    assert got["B"] == (30, 0, 10, False)
    assert got["C"] == (5, 5, 0, False)  # CTR 0 but under min_impressions
    assert got["D"][3] is False
    (samples,) = rows(
        logs, "select sample_queries from review_low_click_answers where entry_id = 'A'"
    )[0]
    assert samples[0] == "如何申请退货"


def test_gap_clusters_group_paraphrases(logs: Path):
    mine_week(logs, WEEK)
    clusters = rows(
        logs,
        "select cluster_id, size, n_handoff, n_low_score, example_queries, nearest_entry_id "
        "from review_kb_gaps where week = ? order by size desc",
        WEEK,
    )
    by_query = {q: c for c, _, _, _, examples, _ in clusters for q in examples}
    invoice = {by_query[q] for q in TOPIC_INVOICE}
    points = {by_query[q] for q in TOPIC_POINTS}
    assert len(invoice) == 1 and len(points) == 1 and invoice != points
    inv = next(c for c in clusters if c[0] in invoice)
    assert inv[1] == 5 and inv[2] == 5 and inv[5] == "Z"
    pts = next(c for c in clusters if c[0] in points)
    assert pts[1] == 3 and pts[2] == 0 and pts[3] == 3 and pts[5] == "P"
    # answered-and-clicked fillers are not gaps
    assert "物流查询" not in by_query


def test_weekly_metrics_percentiles_and_alerts(logs: Path):
    summary = mine_week(logs, WEEK)
    m = summary["metrics"]
    assert m["n_queries"] == 100
    assert m["p50_ms"] == pytest.approx(50.5)
    assert m["p95_ms"] == pytest.approx(95.05)
    assert m["p99_ms"] == pytest.approx(99.01)
    assert m["fallback_l1_rate"] == pytest.approx(0.20)
    assert m["fallback_l2_rate"] == pytest.approx(0.02)
    assert m["handoff_rate"] == pytest.approx(0.07)
    assert sum(m["top1_histogram"]) == 98 and len(m["top1_histogram"]) == 20
    assert len(m["top1_deciles"]) == 9 and m["top1_deciles"] == sorted(m["top1_deciles"])
    # every score this week is below 0.95; last week: 60 at 0.95 and one at 0.6
    assert m["ks_stat"] == pytest.approx(60 / 61)
    assert summary["alerts"] == ["fallback_rate", "top1_score_shift"]
    strict = MiningSettings(p95_alert_ms=90, handoff_alert_rate=0.05, fallback_alert_rate=0.5)
    assert mine_week(logs, WEEK, strict)["alerts"] == [
        "p95_latency",
        "handoff_rate",
        "top1_score_shift",
    ]
    # W46 has no week before it: no KS statistic and no shift alert
    prev = mine_week(logs, "2026-W46")["metrics"]
    assert prev["n_queries"] == 61 and prev["ks_stat"] is None and not prev["alert_score_shift"]


def test_rerun_replaces_only_that_week(logs: Path):
    mine_week(logs, "2026-W46")
    mine_week(logs, WEEK)
    before_46 = rows(logs, "select * from review_low_click_answers where week = '2026-W46'")
    b = Builder()
    b.search("新问题", ["NEW"], 0.9, START + timedelta(days=1), 20.0)
    b.searches[0]["query_id"] = "extra"
    b.write(logs)
    mine_week(logs, WEEK)
    assert rows(logs, "select * from review_low_click_answers where week = '2026-W46'") == before_46
    assert rows(
        logs, "select count(*), max(n_queries) from review_weekly_metrics where week = ?", WEEK
    ) == [(1, 101)]
    assert rows(
        logs,
        "select count(*) from review_low_click_answers where week = ? and entry_id = 'NEW'",
        WEEK,
    ) == [(1,)]
    assert rows(logs, "select count(distinct week) from review_weekly_metrics") == [(2,)]


def test_export_is_excel_safe_and_parquet_round_trips(logs: Path, tmp_path: Path):
    mine_week(logs, WEEK)
    out = tmp_path / "reports" / "weekly" / WEEK
    paths = export_week(logs, WEEK, out)
    assert set(paths) == {
        f"{t}.{x}"
        for t in ("low_click_answers", "kb_gaps", "weekly_metrics")
        + ("semantic_duplicates", "contradictions")  # the KB review tables (kbflow.review)
        for x in ("csv", "parquet")
    }
    with open(out / "kb_gaps.csv", encoding="utf-8-sig", newline="") as fh:
        gaps = list(csv.DictReader(fh))
    labels = [r["label"] for r in gaps]
    # "=1+1" was asked alone: it is one of the "other" row's examples, a JSON list cell
    other = next(r for r in gaps if r["cluster_id"] == "-1")
    assert "=1+1" in json.loads(other["example_queries"])
    text = [r[k] for r in gaps for k in ("label", "example_queries", "nearest_entry_id")]
    assert not any(c[:1] in "=+-@" for c in text if c)
    assert pq.read_table(out / "kb_gaps.parquet").num_rows == len(labels)
    assert excel_safe("-2+3") == "'-2+3" and excel_safe("@SUM(A1)") == "'@SUM(A1)"
    assert excel_safe(-2) == "-2" and excel_safe("退款") == "退款"


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.srcs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.srcs += [v for k, v in attrs if k in ("src", "href") and v]

    def handle_data(self, data):
        self.text.append(data)


def test_report_is_self_contained_and_escapes_queries(logs: Path, tmp_path: Path):
    mine_week(logs, WEEK)
    path = render_week_report(logs, WEEK, tmp_path)
    text = path.read_text(encoding="utf-8")
    p = Collect()
    p.feed(text)
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "script" not in p.tags and p.srcs == []
    assert SCRIPT in "".join(p.text)  # shown as text
    assert text.count("<svg") == 4  # latency, histogram, fallback, gap topics
    assert "fallback rate: ALERT" in "".join(p.text)
