#!/usr/bin/env python
"""Benchmark of kb-weekly-mining's core on one big week of SIMULATED logs.

    python bench/bench_mining.py --searches 10000000 --click-rate 0.2 [--workdir DIR]
        [--out bench/results-mining.json] [--keep]

1. generate (child process): a pool of made-up search results (``simulate.simulated_pool``),
   then ``--searches`` search events in the week and ~``click-rate`` clicks per search
   (``simulate.synthesize_events``: numpy, Zipf-like query popularity, position-biased clicks),
   plus 10 % as many in the week before (so the KS shift statistic has something to compare),
   appended straight into ``logs.duckdb`` in 1M-event batches.
2. mine (child process, so its peak RSS is its own): ``mining.mine_week`` (all SQL + gap
   clustering + the review-table transaction), then ``export_week`` (CSV + Parquet) and
   ``render_week_report``; wall seconds per step and the process's peak RSS.

Floors (this machine, 2 cores): mining ≤ 60 s, peak memory ≤ 4 GB (DuckDB's memory_limit is
set to 3 GB by ``MiningSettings``). Prefect is not involved: the flow adds ~1 s per task.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WEEK = "2026-W47"
PREV = "2026-W46"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(logs: Path, searches: int, click_rate: float) -> dict:
    from kbflow.mining.simulate import simulated_pool, synthesize_events
    from kbflow.store.logs import append_events, connect_logs

    t0 = time.perf_counter()
    pool = simulated_pool(50_000, 100_000, seed=1)
    n_s = n_c = 0
    with connect_logs(logs) as con:
        for week, n, seed in ((PREV, searches // 10, 2), (WEEK, searches, 3)):
            for s, c in synthesize_events(pool, week, n, click_rate=click_rate, seed=seed):
                append_events(con, s, c)
                n_s += s.num_rows
                n_c += c.num_rows
    return {
        "generate_s": round(time.perf_counter() - t0, 1),
        "events_searches": n_s,
        "events_clicks": n_c,
        "logs_mb": round(logs.stat().st_size / 2**20),
        "generate_peak_rss_mb": round(peak_rss_mb()),
    }


def mine(logs: Path, out: Path) -> dict:
    from kbflow.mining.export import export_week, render_week_report
    from kbflow.mining.mine import mine_week
    from kbflow.settings import MiningSettings

    settings = MiningSettings()
    t0 = time.perf_counter()
    summary = mine_week(logs, WEEK, settings)
    t1 = time.perf_counter()
    export_week(logs, WEEK, out)
    t2 = time.perf_counter()
    render_week_report(logs, WEEK, out)
    t3 = time.perf_counter()
    return {
        "mine_s": round(t1 - t0, 1),
        "export_s": round(t2 - t1, 1),
        "report_s": round(t3 - t2, 1),
        "total_s": round(t3 - t0, 1),
        "mine_peak_rss_mb": round(peak_rss_mb()),
        "n_queries": summary["metrics"]["n_queries"],
        "n_clicks": summary["metrics"]["n_clicks"],
        "answers": summary["answers"],
        "flagged_answers": summary["flagged_answers"],
        "gap_clusters": summary["gap_clusters"],
        "alerts": summary["alerts"],
        "p95_ms": summary["metrics"]["p95_ms"],
        "ks_stat": summary["metrics"]["ks_stat"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--searches", type=int, default=10_000_000)
    ap.add_argument("--click-rate", type=float, default=0.2)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the generated logs.duckdb")
    ap.add_argument("--phase", choices=["generate", "mine"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kbflow-bench-mining-"))
    workdir.mkdir(parents=True, exist_ok=True)
    logs = workdir / "logs.duckdb"
    if args.phase == "generate":
        print(json.dumps(generate(logs, args.searches, args.click_rate)))
        return 0
    if args.phase == "mine":
        print(json.dumps(mine(logs, workdir / "reports" / "weekly" / WEEK)))
        return 0

    result: dict = {
        "searches": args.searches,
        "click_rate": args.click_rate,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
    }
    base = [sys.executable, __file__, "--searches", str(args.searches),
            "--click-rate", str(args.click_rate), "--workdir", str(workdir)]  # fmt: skip
    if not logs.exists():
        gen = subprocess.run([*base, "--phase", "generate"], capture_output=True, text=True)
        if gen.returncode:
            sys.stderr.write(gen.stderr)
            return gen.returncode
        result.update(json.loads(gen.stdout.strip().splitlines()[-1]))
    res = subprocess.run([*base, "--phase", "mine"], capture_output=True, text=True)
    if res.returncode:
        sys.stderr.write(res.stderr)
        return res.returncode
    result.update(json.loads(res.stdout.strip().splitlines()[-1]))
    result["floor_ok"] = result["mine_s"] <= 60 and result["mine_peak_rss_mb"] <= 4096
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    if not args.keep and not args.workdir:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
