"""bench/bench_adapter.py's cost measurement at a tiny size, as it is run (a child process,
JSON out), so it cannot rot. (Its per-set mode builds the shared sets twice: minutes each.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_adapter_cost_benchmark_tiny(tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_adapter.py"), "--cost", "150", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text(encoding="utf-8"))["150"]
    assert (res["entries"], res["passages"]) == (150, 600)
    assert res["question_groups"] == 450 and res["fit_s"] > 0
    assert res["peak_rss_mib"] >= res["rss_before_mib"] > 0
