"""A failed or blocked kb-nightly run POSTs its notice to a real local webhook server, the
report says it was sent, and the webhook URL (it carries a token) is written nowhere."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import duckdb
import pytest
from kbflow_flows.nightly import kb_nightly

from kbflow.errors import ValidationFailed
from kbflow.store.versions import current_version

from ..conftest import EXAMPLES
from ..webhook import TOKEN, webhook_server

RUN_DATE = "2026-11-24"


def _no_token_anywhere(home: Path, logs: str) -> None:
    assert TOKEN not in logs
    for path in home.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".html", ".jsonl"):
            assert TOKEN not in path.read_text(encoding="utf-8", errors="replace"), path
    con = duckdb.connect(str(home / "catalog.duckdb"), read_only=True)
    try:
        rows = con.execute("select summary::varchar, message from runs").fetchall()
        rows += con.execute("select manifest::varchar, '' from versions").fetchall()
    finally:
        con.close()
    assert rows and not [r for r in rows if TOKEN in "".join(str(x) for x in r)]


def _summary(home: Path, run_id: str) -> dict:
    return json.loads((home / "runs" / run_id / "summary.json").read_text(encoding="utf-8"))


def test_failed_run_sends_its_notice_after_a_5xx_and_the_report_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "export"
    source.mkdir()
    # no answer column at all: a batch-level validation failure, the run stops before publishing
    (source / "faq.jsonl").write_text(
        '{"id": "a1", "title": "如何退款？"}\n{"id": "a2", "title": "发票怎么开？"}\n',
        encoding="utf-8",
    )
    home = tmp_path / "home"
    caplog.set_level(logging.DEBUG)
    with webhook_server([503]) as hook:
        monkeypatch.setenv("KBFLOW_NOTIFY__WEBHOOK_URL", hook.url)
        state = kb_nightly(source=str(source), run_date=RUN_DATE, home=str(home),
                           run_id="20261124T020000-fail01", return_state=True)  # fmt: skip
    assert state.is_failed()
    assert isinstance(state.result(raise_on_failure=False), ValidationFailed)
    assert [r["answered"] for r in hook.received] == [503, 200]  # retried once, then delivered
    notice = hook.received[-1]["json"]
    assert notice["event"] == "kb-nightly.failed" and notice["run_id"] == "20261124T020000-fail01"
    assert "required column" in notice["message"] and notice["live_version"] is None
    summary = _summary(home, "20261124T020000-fail01")
    assert summary["status"] == "failed"
    assert summary["notice"] == {"sent": True, "url": f"http://127.0.0.1:{hook.port}/…",
                                 "status": 200, "attempts": 2}  # fmt: skip
    html = Path(summary["report"]).read_text(encoding="utf-8")
    assert "failure notice" in html and f"sent to http://127.0.0.1:{hook.port}/…" in html
    _no_token_anywhere(home, caplog.text)


def test_blocked_run_sends_its_notice_and_nothing_goes_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "export"
    source.mkdir()
    faq = (EXAMPLES / "kb_zh" / "export" / "faq.jsonl").read_text(encoding="utf-8")
    (source / "faq.jsonl").write_text("\n".join(faq.splitlines()[:40]) + "\n", encoding="utf-8")
    home = tmp_path / "home"
    caplog.set_level(logging.DEBUG)
    with webhook_server() as hook:
        monkeypatch.setenv("KBFLOW_NOTIFY__WEBHOOK_URL", hook.url)
        # a floor no real KB reaches: the gate blocks the version
        out = kb_nightly(source=str(source), run_date=RUN_DATE, home=str(home),
                         overrides={"gate.min_hit_at_3": 1.0})  # fmt: skip
    assert out["status"] == "blocked" and current_version(home / "indexes") is None
    (received,) = hook.received
    notice = received["json"]
    assert notice["event"] == "kb-nightly.blocked" and notice["version"] == out["version"]
    assert "hit@3" in notice["message"] and "blocked by the quality gate" in notice["text"]
    assert out["notice"]["sent"] and _summary(home, out["run_id"])["notice"] == out["notice"]
    html = Path(out["report"]).read_text(encoding="utf-8")
    assert f"sent to http://127.0.0.1:{hook.port}/…" in html
    _no_token_anywhere(home, caplog.text)
