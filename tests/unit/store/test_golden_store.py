"""The KB's golden set in the data home: imports are versioned with who and when, a run uses the
latest, stores a newer file it brings, and ignores an older one."""

from __future__ import annotations

import json
import os
from pathlib import Path

from kbflow.settings import Settings
from kbflow.store.golden import GoldenStore, run_golden, run_golden_set
from kbflow.store.home import DataHome


def golden_file(path: Path, *queries: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"query": q, "expected": ["faq-1"]}, ensure_ascii=False) for q in queries]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_imports_are_versioned_and_the_same_file_twice_stores_nothing(tmp_path: Path):
    store = GoldenStore(DataHome.at(tmp_path / "home"))
    assert store.latest() is None
    first = store.import_file(golden_file(tmp_path / "a.jsonl", "怎么退货"), by="li")
    assert (first.version, first.by, first.queries, first.answerable) == (1, "li", 1, 1)
    assert store.import_file(tmp_path / "a.jsonl", by="wang").version == 1
    second = store.import_file(golden_file(tmp_path / "b.jsonl", "怎么退货", "退款多久"))
    assert second.version == 2 and [s.version for s in store.history()] == [1, 2]
    assert Path(second.path).read_text(encoding="utf-8") == (tmp_path / "b.jsonl").read_text()


def test_a_run_uses_the_home_set_and_stores_only_a_newer_file_beside_its_export(tmp_path: Path):
    home = DataHome.at(tmp_path / "home")
    settings = Settings()
    export = tmp_path / "kb" / "export"
    export.mkdir(parents=True)
    # nothing anywhere: no queries, and the run records that it had none
    assert run_golden(home, "r1", str(export), settings) == []
    assert run_golden_set(home, "r1") is None
    # imported earlier, nothing beside the export: the home's set
    GoldenStore(home).import_file(golden_file(tmp_path / "g.jsonl", "a", "b"), by="li")
    assert [q.query for q in run_golden(home, "r2", str(export), settings)] == ["a", "b"]
    assert run_golden_set(home, "r2")["by"] == "li"
    # an older file beside the export is not used; a newer one is stored, then used
    beside = golden_file(tmp_path / "kb" / "golden.jsonl", "old")
    os.utime(beside, (1_000_000_000, 1_000_000_000))
    assert [q.query for q in run_golden(home, "r3", str(export), settings)] == ["a", "b"]
    golden_file(beside, "new")
    assert [q.query for q in run_golden(home, "r4", str(export), settings)] == ["new"]
    used = run_golden_set(home, "r4")
    assert used["version"] == 2 and used["by"] == "run r4"
    # a resumed run keeps what it froze, whatever was imported since
    GoldenStore(home).import_file(golden_file(tmp_path / "h.jsonl", "later"))
    assert [q.query for q in run_golden(home, "r4", str(export), settings)] == ["new"]
