#!/usr/bin/env python
"""Benchmark of kb-weekly-mining's core on one big week of SIMULATED logs.

    python bench/bench_mining.py --searches 10000000 --click-rate 0.2 [--workdir DIR]
        [--out bench/results-mining.json] [--keep]
        [--source segments [--segment-interval 300] [--segment-processes 2]]

1. generate (child process): a pool of made-up search results (``simulate.simulated_pool``),
   then ``--searches`` search events in the week and ~``click-rate`` clicks per search
   (``simulate.synthesize_events``: numpy, Zipf-like query popularity, position-biased clicks),
   plus 10 % as many in the week before (so the KS shift statistic has something to compare),
   appended straight into ``logs.duckdb`` in 1M-event batches; with ``--source segments``
   written instead as Parquet log segments the way serving processes roll them (sorted by
   time, one file per process per interval: 2 processes x 5 minutes = ~4,400 files a kind).
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


def generate_segments(
    segments: Path, searches: int, click_rate: float, interval_s: int, processes: int
) -> dict:
    """The same events as ``generate``, written as Parquet log segments the way serving
    processes roll them: events sorted by time, one file per process per ``interval_s``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from kbflow.mining.simulate import simulated_pool, synthesize_events
    from kbflow.store.segments import write_segments

    t0 = time.perf_counter()
    pool = simulated_pool(50_000, 100_000, seed=1)
    tables: dict[str, list] = {"search": [], "click": []}
    for week, n, seed in ((PREV, searches // 10, 2), (WEEK, searches, 3)):
        for s, c in synthesize_events(pool, week, n, click_rate=click_rate, seed=seed):
            tables["search"].append(s)
            tables["click"].append(c)
    files = 0
    counts = {}
    for kind, parts in tables.items():
        table = pa.concat_tables(parts)
        table = table.take(pc.sort_indices(table, [("ts", "ascending")]))
        counts[kind] = table.num_rows
        secs = pc.cast(table.column("ts"), pa.int64()).to_numpy() // 1_000_000
        bucket = secs // interval_s
        edges = np.flatnonzero(np.diff(bucket)) + 1
        starts = np.concatenate([[0], edges])
        ends = np.concatenate([edges, [table.num_rows]])
        for lo, hi in zip(starts, ends, strict=True):
            part = table.slice(int(lo), int(hi - lo))
            for proc in range(processes):
                rows = part.take(pa.array(np.arange(proc, part.num_rows, processes)))
                if rows.num_rows:
                    stem = f"bench-{proc}-{int(bucket[lo])}"
                    files += len(write_segments(str(segments), stem, {kind: rows}))
        del tables[kind][:]
    size = sum(f.stat().st_size for f in segments.rglob("*.parquet"))
    return {
        "generate_s": round(time.perf_counter() - t0, 1),
        "events_searches": counts["search"],
        "events_clicks": counts["click"],
        "segment_files": files,
        "segment_interval_s": interval_s,
        "segment_processes": processes,
        "segments_mb": round(size / 2**20),
        "generate_peak_rss_mb": round(peak_rss_mb()),
    }


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


def mine(logs: Path, out: Path, segments: Path | None = None) -> dict:
    from kbflow.mining.export import export_week, render_week_report
    from kbflow.mining.kb import live_kb
    from kbflow.mining.mine import mine_week
    from kbflow.settings import MiningSettings

    settings = MiningSettings()
    t0 = time.perf_counter()
    # with the review queue's suggestions, as the weekly flow mines (no live version here:
    # every qualifying query is suggested, gap topics are grouped by characters)
    kb = live_kb(logs.parent / "indexes", logs.parent / "runs")
    summary = mine_week(logs, WEEK, settings, segments=str(segments) if segments else None,
                        kb=kb)  # fmt: skip
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
        "suggestions": summary["suggestions"],
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
    ap.add_argument(
        "--source",
        choices=["logs", "segments"],
        default="logs",
        help="events in logs.duckdb (default) or in Parquet log segments, as `kbflow serve` "
        "writes them (logs.duckdb then holds only the review tables)",
    )
    ap.add_argument(
        "--segment-interval",
        type=int,
        default=300,
        help="with --source segments: seconds per segment file (logs.roll_interval_s)",
    )
    ap.add_argument(
        "--segment-processes", type=int, default=2, help="with --source segments: writers"
    )
    ap.add_argument("--phase", choices=["generate", "mine"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kbflow-bench-mining-"))
    workdir.mkdir(parents=True, exist_ok=True)
    logs = workdir / "logs.duckdb"
    segments = workdir / "segments" if args.source == "segments" else None
    if args.phase == "generate":
        if segments is not None:
            got = generate_segments(
                segments,
                args.searches,
                args.click_rate,
                args.segment_interval,
                args.segment_processes,
            )
        else:
            got = generate(logs, args.searches, args.click_rate)
        print(json.dumps(got))
        return 0
    if args.phase == "mine":
        print(json.dumps(mine(logs, workdir / "reports" / "weekly" / WEEK, segments)))
        return 0

    result: dict = {
        "searches": args.searches,
        "click_rate": args.click_rate,
        "source": args.source,
        "command": " ".join(["python bench/bench_mining.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
    }
    base = [sys.executable, __file__, "--searches", str(args.searches),
            "--click-rate", str(args.click_rate), "--workdir", str(workdir),
            "--source", args.source, "--segment-interval", str(args.segment_interval),
            "--segment-processes", str(args.segment_processes)]  # fmt: skip
    if not (segments.exists() if segments else logs.exists()):
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
