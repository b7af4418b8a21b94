"""The review queue: suggestions mined from hand-built events against a real live version,
decisions, resurfacing, and the patch export (real DuckDB files, CSV, XLSX; no Prefect)."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kbflow.errors import ConfigError
from kbflow.mining.mine import mine_week
from kbflow.mining.suggest import decide, export_patch, review_queue
from kbflow.publish.pointer import publish_version
from kbflow.settings import MiningSettings
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
    return mine_week(home / "logs.duckdb", week, MiningSettings(), segments=str(home / "logs" /
                     "segments"), indexes_dir=home / "indexes")  # fmt: skip


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
