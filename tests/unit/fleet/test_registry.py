"""The KB registry (``kbflow.fleet.registry``): what is refused, which KBs are due, and every
KB's status read from its data home (``kbflow.fleet.status``)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kbflow.errors import ConfigError
from kbflow.fleet.registry import load_registry
from kbflow.fleet.status import fleet_status, kb_status, status_table


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """
timezone: Asia/Shanghai
limits: {embed: 1, cpu: 2}
defaults: {embed.batch_size: 32}
kbs:
  - {name: a, source: exports/a, home: homes/a}
  - {name: b, source: s3://bucket/b/, home: homes/b, schedule: "30 3 * * 1", settings: {embed.batch_size: 8}}
  - {name: c, source: exports/c, home: homes/c, enabled: false}
"""


def test_a_registry_resolves_paths_merges_settings_and_names_the_limits(tmp_path: Path) -> None:
    reg = load_registry(_write(tmp_path, GOOD))
    a, b, c = reg.kbs
    assert a.source == str(tmp_path / "exports" / "a") and a.home == tmp_path / "homes" / "a"
    assert b.source == "s3://bucket/b/"  # URLs are kept as written
    assert a.schedule == "0 2 * * *" and b.schedule == "30 3 * * 1"
    assert a.settings == {"embed.batch_size": 32} and b.settings == {"embed.batch_size": 8}
    assert reg.limit_names == {"embed": "kbflow-embed", "cpu": "kbflow-cpu"}
    assert a.overrides(reg.limit_names) == {
        "embed.batch_size": 32, "limits.embed": "kbflow-embed", "limits.cpu": "kbflow-cpu",
    }  # fmt: skip
    assert [kb.name for kb in reg.select(None)] == ["a", "b"]  # disabled KBs run only by name
    assert [kb.name for kb in reg.select(["c"])] == ["c"]
    with pytest.raises(ConfigError, match="no KB named zz"):
        reg.select(["zz"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kbs: []", "non-empty list under 'kbs'"),
        ("- a\n- b", "non-empty list under 'kbs'"),
        ("kbs: [{name: a, source: x, home: h}]\nextra: 1", "unknown key.*extra"),
        ("kbs: [{name: a, source: x}]", "'home' is required"),
        ("kbs: [{name: a, home: h}]", "'source' is required"),
        ("kbs: [{name: 'a b', source: x, home: h}]", "name must be"),
        ("kbs: [{name: a, source: x, home: h, shedule: '0 2 * * *'}]", "unknown key.*shedule"),
        ("kbs: [{name: a, source: x, home: h, schedule: 'every night'}]", "not a cron"),
        ("kbs: [{name: a, source: x, home: h, settings: {embed.batch_size: -1}}]",
         "KB 'a': invalid setting embed.batch_size"),
        ("kbs: [{name: a, source: x, home: h, settings: {home: elsewhere}}]", "not in settings"),
        ("kbs: [{name: a, source: x, home: h, settings: {adapter.mode: off}}]", "quote the word"),
        ("kbs: [{name: a, source: x, home: h}, {name: a, source: y, home: g}]", "two KBs are named 'a'"),
        ("kbs: [{name: a, source: x, home: h}, {name: b, source: y, home: h}]", "share a data home"),
        ("kbs: [{name: a, source: x, home: h}, {name: b, source: y, home: h/inner}]", "share a data home"),
        ("timezone: Mars/Olympus\nkbs: [{name: a, source: x, home: h}]", "unknown timezone"),
        ("limits: {gpu: 1}\nkbs: [{name: a, source: x, home: h}]", "unknown limit 'gpu'"),
        ("limits: {embed: 0}\nkbs: [{name: a, source: x, home: h}]", "whole number >= 1"),
        ("kbs: [{name: a, source: x, home: h}]\n  bad: [", "not valid YAML"),
    ],
)  # fmt: skip
def test_a_bad_registry_is_refused_whole_with_what_to_fix(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_registry(_write(tmp_path, text))


def test_a_missing_registry_says_where_to_read() -> None:
    with pytest.raises(ConfigError, match="does not exist.*Many KBs"):
        load_registry("/nonexistent/fleet.yaml")


def _run(home: Path, run_id: str, summary: dict | None) -> None:
    folder = home / "runs" / run_id
    folder.mkdir(parents=True)
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")


def test_due_follows_each_kbs_schedule_in_the_registrys_timezone(tmp_path: Path) -> None:
    reg = load_registry(_write(tmp_path, GOOD))
    a, b, _ = reg.kbs
    # 2026-12-07 01:00 UTC = 09:00 in Shanghai, a Monday: a fired at 02:00, b at 03:30
    now = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    assert [kb.name for kb in reg.due(now, {"a": None, "b": None})] == ["a", "b"]  # never ran
    ran_after = datetime(2026, 12, 6, 19, 45, tzinfo=UTC)  # 03:45 Shanghai, after both fired
    assert reg.due(now, {"a": ran_after, "b": ran_after}) == []
    ran_before = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)  # 01:00 Shanghai: before both
    assert [kb.name for kb in reg.due(now, {"a": ran_before, "b": ran_before})] == ["a", "b"]
    between = datetime(2026, 12, 6, 18, 30, tzinfo=UTC)  # 02:30: a ran today, b not yet
    assert [kb.name for kb in reg.due(now, {"a": between, "b": between})] == ["b"]
    # a week of missed nights is one catch-up run, not seven
    week_ago = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    assert [kb.name for kb in reg.due(now, {"a": week_ago, "b": week_ago})] == ["a", "b"]


def test_status_reads_each_home_never_run_published_failed_running_interrupted(
    tmp_path: Path,
) -> None:
    reg = load_registry(_write(tmp_path, GOOD))
    a, b, c = reg.kbs
    now = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    assert kb_status(a, reg, now)["state"] == "never run"
    assert kb_status(a, reg, now)["due"] is True
    # a published run: the live version's manifest gives its quality and size
    indexes = a.home / "indexes"
    (indexes / "v1").mkdir(parents=True)
    (indexes / "v1" / "manifest.json").write_text(json.dumps({
        "published_at": "2026-12-06T18:10:00+00:00", "counts": {"entries": 12},
        "gate": {"checks": {"golden": {"new": {"n": 40, "hit@1": 0.8, "hit@3": 0.95, "mrr": 0.87}}}},
    }), encoding="utf-8")  # fmt: skip
    (indexes / "CURRENT").write_text("v1", encoding="utf-8")
    _run(
        a.home,
        "20261206T180000-aaaaaa",
        {"status": "published", "timings": {"embed": 3.0, "index": 1.5}},
    )
    row = kb_status(a, reg, now)
    assert (row["state"], row["version"], row["entries"], row["seconds"], row["due"]) == (
        "published", "v1", 12, 4.5, False,
    )  # fmt: skip
    assert row["quality"] == {"set": "golden", "n": 40, "hit@1": 0.8, "hit@3": 0.95, "mrr": 0.87}
    # a later failed run: the KB reads failed with its message, the live version still listed
    _run(a.home, "20261206T190000-bbbbbb", {"status": "failed", "message": "export unreadable"})
    row = kb_status(a, reg, now)
    assert (row["state"], row["version"], row["message"]) == ("failed", "v1", "export unreadable")
    # a run without a summary: running while its lock holder lives, else interrupted
    _run(b.home, "20261206T190000-cccccc", None)
    (b.home / ".run.lock").write_text(f"pid {os.getpid()} since now", encoding="utf-8")
    assert kb_status(b, reg, now)["state"] == "running"
    (b.home / ".run.lock").write_text("pid 999999999 since then", encoding="utf-8")
    assert kb_status(b, reg, now)["state"] == "interrupted"
    # the fleet's rows, worst first; a flow run that crashed before kbflow wrote anything
    rows = fleet_status(
        reg, {"c": {"flow_run_id": "x", "flow_state": "Crashed", "error": "worker died"}}, now
    )
    assert [(r["kb"], r["state"]) for r in rows] == [
        ("a", "failed"), ("c", "failed"), ("b", "interrupted"),
    ]  # fmt: skip
    assert rows[1]["message"] == "worker died"
    table = status_table(rows)
    assert table.splitlines()[0].split()[:3] == ["KB", "STATE", "VERSION"]
    assert "0.950 golden" in table
