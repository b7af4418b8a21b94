"""A rerun of the same export reuses the prepared input (validate, clean, chunk) of the run that
made it, and only while nothing it read has changed: the export, the settings, the reviewers'
overlay, and no date decision crossed (``kbflow.run.reuse_prepared``). Real stages on the
bundled Chinese sample."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from kbflow.chunk.stage import chunk_stage
from kbflow.clean.dedup import clean_rows
from kbflow.clean.expiry import date_phrases, find_expiry, find_not_yet_effective
from kbflow.clean.stage import clean_stage
from kbflow.contracts import RAW_ROW, table_from_rows
from kbflow.pull.stage import pull_stage
from kbflow.run import PREPARED, record_prepared, reuse_prepared, start_run
from kbflow.runner import read_marker
from kbflow.settings import CleanSettings, load_settings
from kbflow.store.home import DataHome, new_run_id
from kbflow.validate.stage import validate_stage

EXPORT = Path(__file__).resolve().parents[2] / "examples" / "kb_zh" / "export"
DAY = date(2026, 11, 24)


def prepare(home: DataHome, settings: Any, run_date: date, source: Path = EXPORT) -> dict:
    """One run up to chunk, as flows/nightly.py orders it."""
    run_id = new_run_id()
    start_run(home, run_id, run_date)
    pulled = pull_stage(home, run_id, str(source))
    prepared = reuse_prepared(home, run_id, pulled, run_date, settings)
    reused = prepared["reused_from"]
    validate_stage(home, run_id, pulled, settings)
    clean_stage(home, run_id, run_date, settings)
    chunked = chunk_stage(home, run_id, settings)
    if not reused:
        record_prepared(home, run_id, prepared["key"], run_date)
    return {"run_id": run_id, "reused": reused, "chunked": chunked}


@pytest.fixture
def kb(tmp_path: Path) -> tuple[DataHome, Any]:
    settings = load_settings(str(tmp_path / "home"))
    return DataHome.at(settings.home), settings


def test_a_rerun_of_the_same_export_reuses_the_prepared_input(kb):
    home, settings = kb
    first = prepare(home, settings, DAY)
    assert first["reused"] is None
    cleaned = read_marker(home, first["run_id"], "clean")
    # the sample has a policy valid until 2026-12-31 (pol-034 expired 2025, pol-023 runs to 2027)
    assert cleaned["stable_until"] is not None and cleaned["stable_until"] > DAY.isoformat()
    next_day = prepare(home, settings, DAY + timedelta(days=1))
    assert next_day["reused"] == first["run_id"]
    assert next_day["chunked"] == first["chunked"]
    for stage in ("validate", "clean", "chunk"):
        a, b = home.stage_dir(first["run_id"], stage), home.stage_dir(next_day["run_id"], stage)
        assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
        for f in a.glob("*.parquet"):  # hard links: the same files, nothing copied
            assert os.stat(f).st_ino == os.stat(b / f.name).st_ino
    # a third run reuses the first (the second only linked it), still dated from the first
    third = prepare(home, settings, DAY + timedelta(days=2))
    assert third["reused"] in {first["run_id"], next_day["run_id"]}
    got = json.loads((home.run_dir(third["run_id"]) / PREPARED).read_text())
    assert got["run_date"] == DAY.isoformat()


def test_nothing_is_reused_once_a_date_decision_changes(kb):
    home, settings = kb
    first = prepare(home, settings, DAY)
    until = date.fromisoformat(read_marker(home, first["run_id"], "clean")["stable_until"])
    on_the_eve = prepare(home, settings, until - timedelta(days=1))
    assert on_the_eve["reused"] == first["run_id"]
    on_the_day = prepare(home, settings, until)
    assert on_the_day["reused"] is None
    before = read_marker(home, first["run_id"], "clean")
    after = read_marker(home, on_the_day["run_id"], "clean")
    # the decision did go the other way: the sample's "from 2027-01-01" rules took effect
    assert after["indexed"] > before["indexed"] and after["unpublished"] < before["unpublished"]
    # an earlier run date (a backfill of a past day) never reuses a later run's input
    assert prepare(home, settings, DAY - timedelta(days=1))["reused"] is None


def test_another_export_or_other_settings_are_prepared_again(kb, tmp_path):
    home, settings = kb
    prepare(home, settings, DAY)
    edited = tmp_path / "edited"
    edited.mkdir()
    for f in EXPORT.iterdir():
        (edited / f.name).write_bytes(f.read_bytes())
    faq = edited / "faq.jsonl"
    faq.write_text(faq.read_text(encoding="utf-8").replace("退款", "退钱", 1), encoding="utf-8")
    assert prepare(home, settings, DAY, edited)["reused"] is None
    other = load_settings(str(settings.home), {"chunk.max_tokens": 200})
    assert prepare(home, other, DAY)["reused"] is None
    assert prepare(home, settings, DAY)["reused"] is not None  # the first is still reusable


def test_a_resumed_run_is_left_alone(kb):
    home, settings = kb
    prepare(home, settings, DAY)
    run_id = new_run_id()
    start_run(home, run_id, DAY)
    pulled = pull_stage(home, run_id, str(EXPORT))
    validate_stage(home, run_id, pulled, settings)  # the run got this far before it stopped
    assert reuse_prepared(home, run_id, pulled, DAY, settings)["reused_from"] is None


def test_date_phrases_say_when_their_answer_changes():
    deadline = "补贴政策有效期至2026年12月31日。"
    got = date_phrases(deadline, DAY)
    assert got.expired is None and got.changes_on == date(2027, 1, 1)
    assert find_expiry(deadline, date(2026, 12, 31)) is None
    assert find_expiry(deadline, date(2027, 1, 1)) is not None
    starts = "新规自2027年1月1日起实施。"
    got = date_phrases(starts, DAY)
    assert got.not_yet_effective is not None and got.changes_on == date(2027, 1, 1)
    assert find_not_yet_effective(starts, date(2027, 1, 1)) is None
    past = "补贴政策有效期至2025年12月31日。"
    assert (
        date_phrases(past, DAY).expired is not None and date_phrases(past, DAY).changes_on is None
    )


def _row(i: int, **fields: Any) -> dict[str, Any]:
    base = {name: None for name in RAW_ROW.names}
    base |= {"row_id": i, "id": f"e{i}", "title": f"问题{i}号", "answer": f"答案内容第{i}条。"}
    base |= {"similar_questions": [], "status": "published", "source_file": "f", "source_line": i}
    return base | fields


def test_clean_rows_report_the_first_day_a_decision_changes():
    rows = table_from_rows(
        [
            _row(1, expires_at="2026-12-20"),
            _row(2, effective_from="2026-12-10"),
            _row(3, answer="活动有效期至2026年12月05日。"),
            _row(4, expires_at="2026-01-01"),  # expired for good
        ],
        RAW_ROW,
    )
    res = clean_rows(rows, DAY, CleanSettings())
    assert res.stable_until == date(2026, 12, 6)
    # every decision holds the day before, and one changes on that day
    same = clean_rows(rows, date(2026, 12, 5), CleanSettings())
    assert same.counts == res.counts
    assert (
        clean_rows(rows, date(2026, 12, 6), CleanSettings()).counts["stale"] > res.counts["stale"]
    )
    assert clean_rows(table_from_rows([_row(4, expires_at="2026-01-01")], RAW_ROW), DAY,
                      CleanSettings()).stable_until is None  # fmt: skip
