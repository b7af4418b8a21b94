"""The gate catches a broken KB with or without a golden file beside the export (issue: a join
bug that pairs each entry's questions with another entry's answer), lets reworded answers
through, and uses the data home's golden set.

The bundled Chinese sample, real flows, real model (multilingual-e5-small): the base data home
publishes the sample from a copy without ``golden.jsonl`` beside it, and each test runs one
nightly in its own copy of that home.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kbflow_flows.nightly import kb_nightly

from ..conftest import EXAMPLES

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from eval_alignment import copy_export, misalign, reword  # noqa: E402

ZH = EXAMPLES / "kb_zh"
RUN_DATE = "2026-11-24"


def gate_of(home: Path, out: dict) -> dict:
    return json.loads((home / "runs" / out["run_id"] / "gate" / "_SUCCESS.json").read_text())


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("align")
    export = root / "kb" / "export"  # no golden.jsonl beside it
    shutil.copytree(ZH / "export", export)
    home = root / "home"
    out = kb_nightly(source=str(export), run_date=RUN_DATE, home=str(home))
    assert out["status"] == "published"
    gate = gate_of(home, out)
    # no golden set anywhere: the run says so, in its gate result, manifest and report
    assert gate["golden"] is None and any("no golden set" in n for n in gate["notes"])
    assert gate["alignment"]["new"] >= 0.7 and gate["alignment"]["live"] is None
    assert "no golden set" in Path(out["report"]).read_text(encoding="utf-8")
    return root


def copy_home(base: Path, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(base / "home", home)
    return home


def test_answers_paired_with_other_entries_questions_are_blocked_without_a_golden_file(
    base: Path, tmp_path: Path
):
    home = copy_home(base, tmp_path)
    export = tmp_path / "kb" / "export"
    assert copy_export(ZH / "export", export, misalign(1.0)) > 200
    out = kb_nightly(source=str(export), run_date=RUN_DATE, home=str(home))
    assert out["status"] == "blocked"
    gate = gate_of(home, out)
    assert gate["golden"] is None
    a = gate["alignment"]
    assert a["drop"] > 0.5 and any("answer alignment dropped" in r for r in gate["reasons"])
    # the self-check alone would have let it through: questions still find "their" entry
    assert not any(r.startswith("self_check") for r in gate["reasons"])
    # the report lists entries whose answer no longer matches, beside the live answer
    assert a["misaligned_total"] > 50 and a["misaligned"][0]["live_answer"]
    report = Path(out["report"]).read_text(encoding="utf-8")
    assert "Answer alignment" in report and a["misaligned"][0]["entry"] in report


def test_the_same_copy_is_blocked_with_a_golden_file_beside_it(base: Path, tmp_path: Path):
    home = copy_home(base, tmp_path)
    export = tmp_path / "kb" / "export"
    copy_export(ZH / "export", export, misalign(1.0))
    shutil.copy(ZH / "golden.jsonl", tmp_path / "kb" / "golden.jsonl")
    out = kb_nightly(source=str(export), run_date=RUN_DATE, home=str(home))
    assert out["status"] == "blocked"
    gate = gate_of(home, out)
    # the run brought a golden file: it is now the data home's, version 1, and gated this run
    assert gate["golden"]["version"] == 1 and gate["golden"]["by"].startswith("run ")
    assert "golden" in gate["checks"]
    assert any("answer alignment dropped" in r for r in gate["reasons"])


def test_reworded_answers_publish_and_an_imported_golden_set_is_used(base: Path, tmp_path: Path):
    home = copy_home(base, tmp_path)
    imported = subprocess.run(
        [sys.executable, "-m", "kbflow.cli", "golden", "import", str(ZH / "golden.jsonl"),
         "--home", str(home), "--by", "reviewer-li"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "golden set v1 stored" in imported.stdout
    export = tmp_path / "kb" / "export"  # no golden beside it: the data home's set is used
    assert copy_export(ZH / "export", export, reword(0.1)) > 25
    out = kb_nightly(source=str(export), run_date=RUN_DATE, home=str(home))
    assert out["status"] == "published", gate_of(home, out)["reasons"]
    gate = gate_of(home, out)
    assert gate["golden"]["version"] == 1 and gate["golden"]["by"] == "reviewer-li"
    assert gate["checks"]["golden"]["new"]["n"] > 100
    assert gate["alignment"]["drop"] <= 0.05
    shown = subprocess.run(
        [sys.executable, "-m", "kbflow.cli", "golden", "show", "--home", str(home), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(shown.stdout)["by"] == "reviewer-li"
