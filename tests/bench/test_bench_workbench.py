"""bench/bench_workbench.py at a tiny size, as it is run (a child process, JSON out), so it
cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_workbench_benchmark_tiny(tmp_path: Path) -> None:
    out = tmp_path / "workbench.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_workbench.py"), "--suggestions", "240",
         "--repeat", "2", "--workdir", str(tmp_path / "w"), "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text(encoding="utf-8"))
    assert (res["suggestions"], res["decisions"]) == (240, 24)
    assert set(res["pages"]) == {"list_first_page", "list_filtered", "list_page_20",
                                 "detail_contradiction"}  # fmt: skip
    for page in res["pages"].values():
        assert 0 < page["median_queue_ms"] <= page["median_server_ms"] <= page["median_client_ms"]
        assert page["bytes"] > 1000
    assert res["floor_ok"] is True
