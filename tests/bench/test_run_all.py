"""bench/run_all.py (what `make bench` runs) at a tiny size: parts run as children, their JSON
lands in the results folder, and RESULTS.md is rendered from it with each figure's command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ROOT / "examples" / "kb_zh" / "export").is_dir():
        pytest.skip("examples/kb_zh/export is absent")
    import run_all

    tmp = tmp_path_factory.mktemp("run_all")
    with (
        pytest.MonkeyPatch.context() as mp
    ):  # children inherit it; gate/review are tested elsewhere
        mp.setenv("KBFLOW_GATE__ENABLED", "false")
        mp.setenv("KBFLOW_REVIEW__ENABLED", "false")
        rc = run_all.main(
            ["--parts", "stages,search", "--sizes", "100,150", "--cpu-only-above", "120",
             "--embed-sample", "5", "--code", "worktree", "--workdir", str(tmp / "work"),
             "--results-dir", str(tmp)]
        )  # fmt: skip
    assert rc == 0
    return tmp


def test_each_part_writes_its_json(results: Path) -> None:
    full = json.loads((results / "results-100.json").read_text(encoding="utf-8"))
    assert full["first_run"]["status"] == "published" and full["rerun"]["status"] == "unchanged"
    assert full["embed_mode"] == "sample" and full["embed_sample"] == 5
    cpu = json.loads((results / "results-150.json").read_text(encoding="utf-8"))
    assert cpu["stop_after"] == "chunk" and cpu["rerun"] is None
    assert [s["stage"] for s in cpu["first_run"]["stages"]][-1] == "chunk"
    assert cpu["first_run"]["unique_texts"] > 0
    search = json.loads((results / "results-search-100.json").read_text(encoding="utf-8"))
    assert search["in_process"]["n"] == 400


def test_results_md_has_every_section_and_command(results: Path) -> None:
    md = (results / "RESULTS.md").read_text(encoding="utf-8")
    for heading in ("## Machine", "## Nightly stages per size", "### 100 entries",
                    "### 150 entries", "## Incremental reruns", "## Search latency"):  # fmt: skip
        assert heading in md, heading
    assert "python bench/bench_stages.py --entries 100 " in md
    assert "--stop-after chunk" in md
    # the CPU-only size gets the rest of its run extrapolated from the full size, marked
    assert "**Extrapolated** rest of the 150-entry first run, from the 100-entry run" in md
    assert "embed **(extrapolated)**" in md
    assert "in-process `Searcher.search`" in md
    # parts that did not run say how to run them instead of showing numbers
    assert "_No results yet: `python bench/run_all.py --parts incremental`._" in md
    assert "Code measured: working tree" in md


def test_report_only_renders_the_same_figures(results: Path) -> None:
    import run_all

    before = (results / "RESULTS.md").read_text(encoding="utf-8")
    assert run_all.main(["--report-only", "--results-dir", str(results)]) == 0
    after = (results / "RESULTS.md").read_text(encoding="utf-8")
    strip = [x for x in before.splitlines() if not x.startswith("Rendered ")]
    assert strip == [x for x in after.splitlines() if not x.startswith("Rendered ")]


def test_freeze_code_extracts_head_and_puts_it_first(tmp_path: Path) -> None:
    import run_all

    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    with pytest.MonkeyPatch.context() as mp:
        # setenv (not delenv) so the context restores both variables afterwards: freeze_code
        # writes os.environ directly, and a leaked PYTHONPATH would point every later test's
        # subprocesses at the frozen copy of HEAD
        mp.setenv("PYTHONPATH", "")
        mp.setenv("KBFLOW_BENCH_CODE", "")
        label = run_all.freeze_code(tmp_path)
        snap = Path(os.environ["PYTHONPATH"].split(os.pathsep)[0])
        assert label.startswith("git ") and os.environ["KBFLOW_BENCH_CODE"] == label
        tracked = subprocess.run(
            ["git", "ls-tree", "-r", "--name-only", "HEAD", "src/kbflow"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        assert tracked and all((snap.parent / p).exists() for p in tracked)
        assert (snap.parent / "sql").is_dir()
        out = subprocess.run(
            [sys.executable, "-c", "import kbflow; print(kbflow.__file__)"],
            capture_output=True, text=True, cwd=tmp_path, env=os.environ.copy(),
        )  # fmt: skip
        assert out.stdout.strip() == str(snap / "kbflow" / "__init__.py")


def test_the_fleet_section_renders_the_benchmarks_json(tmp_path: Path) -> None:
    import run_all

    assert "_No results yet: `python bench/bench_fleet.py" in "\n".join(
        run_all.section_fleet(tmp_path)
    )
    run = {
        "workers": 1, "wall_s": 80.0, "states": {"published": 2, "failed": 1},
        "run_seconds_sum": 40.0,
        "limits": {"embed": {"most_at_once": 1, "waited_s": 3.0}, "cpu": {"most_at_once": 1, "waited_s": 1.0}},
    }  # fmt: skip
    (tmp_path / "results-fleet.json").write_text(json.dumps({
        "command": "python bench/bench_fleet.py --kbs 3", "kbs": 3,
        "limits": {"embed": 1, "cpu": 2}, "defaults": {"adapter.mode": "off"},
        "runs": [run, {**run, "workers": 2, "wall_s": 50.0}], "speedup": 1.6,
    }), encoding="utf-8")  # fmt: skip
    md = "\n".join(run_all.section_fleet(tmp_path))
    assert "`python bench/bench_fleet.py --kbs 3`" in md
    assert "| 2 | 50.0 | 2 / 0 / 1 | 40.0 | 3.0 | 1 (limit 1) / 1 (limit 2) |" in md
    assert "1.6x" in md
