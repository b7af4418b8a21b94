"""Backfill planning without Prefect: request parsing, week ranges, the date of an export
(from the catalog), the ledger of units, and one backfill at a time per data home."""

from __future__ import annotations

import json
import threading
import time
from datetime import date, datetime
from pathlib import Path

import pytest

from kbflow.backfill.request import params_hash, parse_request, parse_weeks
from kbflow.backfill.units import (
    backfill_lock,
    export_dates,
    export_unit,
    finish_unit,
    plan_exports,
    prepare_export_run,
    record_unit,
    skipped_unit,
    week_unit,
    with_ledger,
)
from kbflow.errors import ConfigError
from kbflow.store import catalog
from kbflow.store.home import DataHome
from kbflow.store.sql import load_sql


def test_weeks_expand_in_order_across_a_year_end() -> None:
    assert parse_weeks("2026-W40..2026-W43") == [
        "2026-W40", "2026-W41", "2026-W42", "2026-W43"]  # fmt: skip
    # 2026 has 53 ISO weeks (31 Dec 2026 is a Thursday)
    assert parse_weeks("2026-W52..2027-W01") == ["2026-W52", "2026-W53", "2027-W01"]
    assert parse_weeks("2026-W47, 2026-W45,2026-W47") == ["2026-W47", "2026-W45"]
    for bad in ("2026-W47..2026-W40", "2026-47", "2025-W53", "last week"):
        with pytest.raises(ConfigError):
            parse_weeks(bad)


def test_a_backfill_request_does_exactly_one_thing() -> None:
    r = parse_request(exports_from="2026-11-20")
    assert (r.kind, r.exports_from, r.exports_to) == (
        "exports",
        date(2026, 11, 20),
        date(2026, 11, 20),
    )
    assert parse_request(reembed=True, dim=256).kind == "reembed"
    assert parse_request(weeks="2026-W46..2026-W47").weeks == ("2026-W46", "2026-W47")
    for kw in (
        {},
        {"exports_from": "2026-11-20", "weeks": "2026-W47"},
        {"exports_from": "2026-11-22", "exports_to": "2026-11-20"},
        {"exports_from": "2026-13-01"},
        {"reembed": True},
        {"weeks": "2026-W47", "dim": 128},
        {"reembed": True, "dim": 0},
    ):
        with pytest.raises(ConfigError):
            parse_request(**kw)  # type: ignore[arg-type]


def _land(home: DataHome, snap: str, seen_at: datetime) -> None:
    """A landed export as pull_stage leaves it: raw/<snap>/ with its marker, a catalog row."""
    (home.raw / snap).mkdir()
    (home.raw / snap / "_COMPLETE").write_text("{}")
    files = [{"name": "faq.jsonl", "sha256": snap * 4, "size": 1, "format": "jsonl"}]
    with catalog.connect(home.catalog_path) as con:
        con.execute(
            load_sql("catalog/insert_export"),
            {"snapshot_id": snap, "snapshot_sha256": snap * 4, "source": f"/exports/{snap}",
             "n_files": 1, "files": json.dumps(files), "seen_at": seen_at},
        )  # fmt: skip


def _nightly(
    home: DataHome, run_id: str, snap: str | None, day: date, flow: str = "kb-nightly"
) -> None:
    catalog.open_run(home.catalog_path, run_id, flow, day)
    catalog.close_run(home.catalog_path, run_id, "published", {}, snapshot_id=snap)


def test_an_export_is_dated_by_the_first_nightly_run_that_pulled_it(tmp_path: Path) -> None:
    home = DataHome.at(tmp_path)
    # landed in this order (wall clock), but the runs were for other dates (--run-date)
    _land(home, "aaaa", datetime(2026, 11, 24, 1, 0))
    _land(home, "bbbb", datetime(2026, 11, 24, 2, 0))
    _land(home, "cccc", datetime(2026, 11, 24, 3, 0))
    _land(home, "dddd", datetime(2026, 11, 20, 17, 30))  # no run recorded it (killed)
    _nightly(home, "r1", "aaaa", date(2026, 11, 22))
    _nightly(home, "r2", "bbbb", date(2026, 11, 18))
    _nightly(home, "r3", "cccc", date(2026, 11, 19))
    _nightly(home, "r4", "aaaa", date(2026, 11, 23))  # the same export seen again: still the 22nd
    _nightly(home, "r5", "cccc", date(2026, 11, 1), flow="kb-reembed")  # not a nightly pull
    dated = {s.snapshot_id: (s.export_date, s.dated_by, s.first_run_id)
             for s in export_dates(home)}  # fmt: skip
    assert dated == {
        "aaaa": (date(2026, 11, 22), "run", "r1"),
        "bbbb": (date(2026, 11, 18), "run", "r2"),
        "cccc": (date(2026, 11, 19), "run", "r3"),
        # 17:30 UTC on the 20th is 01:30 on the 21st in Asia/Shanghai
        "dddd": (date(2026, 11, 21), "landed", None),
    }
    planned = plan_exports(home, date(2026, 11, 19), date(2026, 11, 22))
    assert [s.snapshot_id for s in planned] == ["cccc", "dddd", "aaaa"]  # by date, not landing
    unit = export_unit(planned[0], {}, False)
    assert unit["run_date"] == "2026-11-19" and unit["unit"] == "2026-11-19:cccc"
    with pytest.raises(ConfigError, match="no landed export is dated"):
        plan_exports(home, date(2026, 10, 1), date(2026, 10, 31))
    (home.raw / "aaaa" / "_COMPLETE").unlink()  # raw/ lost: never replay half an export
    with pytest.raises(ConfigError, match="missing or incomplete"):
        plan_exports(home, date(2026, 11, 22), date(2026, 11, 22))


def test_a_replayed_run_starts_from_the_landed_copy_with_the_original_golden(
    tmp_path: Path,
) -> None:
    home = DataHome.at(tmp_path)
    _land(home, "aaaa", datetime(2026, 11, 24, 1, 0))
    _nightly(home, "r1", "aaaa", date(2026, 11, 22))
    home.run_dir("r1").mkdir(parents=True)
    (home.run_dir("r1") / "golden.jsonl").write_text('{"query": "q", "expected": ["a"]}\n')
    (snap,) = export_dates(home)
    pulled = prepare_export_run(home, "r9", export_unit(snap, {}, False)["snapshot"])
    marker = json.loads((home.run_dir("r9") / "pull" / "_SUCCESS.json").read_text())
    assert marker == pulled and pulled["root"] == str(home.raw / "aaaa")
    assert pulled["already_landed"] and pulled["replay_of"] == "r1"
    assert pulled["source"] == "/exports/aaaa" and pulled["files"][0]["name"] == "faq.jsonl"
    assert (home.run_dir("r9") / "golden.jsonl").read_text() == (
        home.run_dir("r1") / "golden.jsonl"
    ).read_text()


def test_the_ledger_skips_done_units_only(tmp_path: Path) -> None:
    home = DataHome.at(tmp_path)
    a = week_unit("2026-W46", {})
    b = week_unit("2026-W47", {})
    b_other = week_unit("2026-W47", {"min_impressions": 5})
    assert b["params_hash"] != b_other["params_hash"]
    assert params_hash("weeks", {"x": 1, "y": 2}) == params_hash("weeks", {"y": 2, "x": 1})
    record_unit(home, a, "running", "run-a")
    record_unit(home, b, "running", "run-b")
    assert [u["done"] for u in with_ledger(home, [a, b, b_other])] == [False] * 3
    finish_unit(home, a, "run-a", True, {"week": "2026-W46", "report": "r.html"})
    finish_unit(home, b, "run-b", False, RuntimeError("logs.duckdb is locked"))
    a_, b_, other = with_ledger(home, [a, b, b_other])
    assert (a_["done"], b_["done"], other["done"]) == (True, False, False)
    assert a_["previous"]["run_id"] == "run-a" and a_["previous"]["summary"]["status"] == "mined"
    assert b_["previous"]["status"] == "failed"
    assert "locked" in b_["previous"]["summary"]["message"]
    assert skipped_unit(a_)["outcome"] == "skipped"


def test_a_second_backfill_on_one_home_waits_for_the_first(tmp_path: Path) -> None:
    home = DataHome.at(tmp_path)
    events: list[str] = []

    def second() -> None:
        with backfill_lock(home):
            events.append("second")

    with backfill_lock(home):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        events.append("first done")
    thread.join(5)
    assert events == ["first done", "second"]
