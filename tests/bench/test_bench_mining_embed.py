"""bench/bench_mining.py and bench/bench_embed.py at a tiny size, as the harness calls them
(child processes, JSON out), so neither can rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def test_mining_benchmark_tiny(tmp_path: Path) -> None:
    out = tmp_path / "mining.json"
    r = subprocess.run(
        [sys.executable, str(BENCH / "bench_mining.py"), "--searches", "3000",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text(encoding="utf-8"))
    assert res["searches"] == 3000
    assert res["events_searches"] == 3000 + 300  # the week and 10% in the week before
    assert res["n_queries"] == 3000
    assert res["mine_s"] >= 0 and res["total_s"] >= res["mine_s"]
    assert res["mine_peak_rss_mb"] > 0 and isinstance(res["floor_ok"], bool)


def test_embedding_benchmark_tiny(tmp_path: Path) -> None:
    out = tmp_path / "embed.json"
    r = subprocess.run(
        [sys.executable, str(BENCH / "bench_embed.py"), "--n", "40", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode in (0, 1), r.stderr[-2000:]  # 1: a floor missed (noisy at 40 texts)
    res = json.loads(out.read_text(encoding="utf-8"))
    assert res["n"] == 40
    assert set(res["passages_per_s"]) == {"plain_encode", "local", "openai"}
    assert all(v > 0 for v in res["passages_per_s"].values())
    assert (
        res["ratios"]["local_vs_plain"]
        == res["passages_per_s"]["local"] / res["passages_per_s"]["plain_encode"]
    )
