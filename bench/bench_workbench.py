#!/usr/bin/env python
"""Benchmark of the reviewers' workbench (``kbflow review serve``) on a big review queue.

    python bench/bench_workbench.py [--suggestions 10000] [--repeat 9] [--workdir DIR]
        [--out bench/results-workbench.json]

1. build: a ``logs.duckdb`` holding ``--suggestions`` suggestions written through
   ``write_suggestions`` (four weeks; every kind the mining writes, Chinese text, kind-specific
   ``detail`` JSON: both answers of contradictions and duplicates, a gap's nearest entry, ...;
   ~10 % already decided, appended with the core's decision statement).
2. serve: ``kbflow review serve`` (the real CLI, uvicorn) on a free loopback port.
3. measure: after one warm-up each, ``--repeat`` GETs of the queue's first page, a filtered
   page (one kind and one category, all statuses), a later page, and one suggestion's page;
   the server's own time from its ``Server-Timing`` header (``total``: the whole request in the
   app; ``queue``: reading the queue) and the client's wall time; medians and maxima. Also
   ``review_queue`` itself in this process (the query the pages run), median of ``--repeat``.

Floor (this machine, 2 cores shared): listing (the first page) under 1 s server time at 10,000
suggestions. Exit 1 when it is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from kbflow.mining.suggest import review_queue, write_suggestions
from kbflow.settings import MiningSettings
from kbflow.store.logs import connect_logs
from kbflow.store.sql import load_sql

FLOOR_LIST_MS = 1000.0
WEEKS = ["2026-W44", "2026-W45", "2026-W46", "2026-W47"]
KINDS = ["similar_question", "confusion", "gap", "low_click", "duplicate", "contradiction",
         "expiring", "stale_asked"]  # fmt: skip
CATEGORIES = ["物流", "退款", "发票", "优惠券", "账户", "售后", None]
PHRASES = ["我的快递怎么还没到", "退款几天能到账", "优惠券为什么用不了", "发票开错了能重开吗",
           "怎么修改收货地址", "订单显示已签收但没收到", "会员积分怎么兑换", "账号被冻结了怎么办"]  # fmt: skip


def detail_of(kind: str, i: int, rng: random.Random) -> str | None:
    a, b = f"entry-{i % 997}", f"entry-{(i * 7 + 3) % 997}"
    if kind in ("contradiction", "duplicate"):
        days = rng.randint(3, 15)
        return json.dumps({
            "a": {"entry_id": a, "title": f"{PHRASES[i % 8]}？", "answer": f"一般在 {days} 个工作日内处理完毕。"},
            "b": {"entry_id": b, "title": f"{PHRASES[(i + 1) % 8]}？", "answer": f"一般在 {days + 5} 个工作日内处理完毕。"},
            "facts": [{"kind": "duration", "value_a": f"{days} 个工作日", "value_b": f"{days + 5} 个工作日",
                       "evidence_a": "…", "evidence_b": "…"}] if kind == "contradiction" else [],
            "score": round(rng.uniform(0.85, 0.99), 3),
        }, ensure_ascii=False)  # fmt: skip
    if kind == "gap":
        return json.dumps({"nearest_score": round(rng.uniform(0.1, 0.4), 3), "n_handoff": rng.randint(1, 40),
                           "n_low_score": rng.randint(1, 40), "n_no_click": rng.randint(1, 40)})  # fmt: skip
    if kind == "low_click":
        return json.dumps({"answer": "请在“我的订单”中查看物流信息。", "ctr": round(rng.uniform(0, 0.1), 3),
                           "impressions": rng.randint(100, 5000)}, ensure_ascii=False)  # fmt: skip
    if kind in ("expiring", "stale_asked"):
        return json.dumps({"expires_at": "2026-12-31"})
    return None


def build_queue(logs: Path, n: int, seed: int = 0) -> dict[str, Any]:
    """``n`` suggestions over four weeks, ~10 % decided; returns counts and the seconds."""
    rng = random.Random(seed)
    t0 = time.perf_counter()
    mined = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    by_week: dict[str, list[dict[str, Any]]] = {w: [] for w in WEEKS}
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        week = WEEKS[i % len(WEEKS)]
        sessions = max(2, int(rng.paretovariate(1.2) * 2))
        text = f"{PHRASES[i % len(PHRASES)]}（第{i}种说法）"
        by_week[week].append({
            "week": week, "suggestion_id": f"{i:032x}", "kind": kind,
            "entry_id": "" if kind == "gap" else f"entry-{i % 997}",
            "other_entry_id": f"entry-{(i * 7 + 3) % 997}" if kind != "similar_question" else None,
            "text": text, "norm": text, "n_sessions": sessions, "n_users": max(1, sessions - 1),
            "n_searches": sessions + rng.randint(0, 5), "n_clicks": sessions,
            "example_queries": [text, PHRASES[(i + 3) % len(PHRASES)]],
            "score_gap": round(rng.uniform(0, 0.05), 4) if kind == "confusion" else None,
            "impact": sessions, "mined_at": mined, "category": CATEGORIES[i % len(CATEGORIES)],
            "detail": detail_of(kind, i, rng),
        })  # fmt: skip
    decided = 0
    with connect_logs(logs) as con:
        con.execute(load_sql("suggest/create_suggestion_tables"))
        schema = con.sql("select * from review_suggestions limit 0").to_arrow_table().schema
        for week, rows in by_week.items():
            write_suggestions(
                con, week, pa.Table.from_pylist(rows, schema=schema), MiningSettings()
            )
        insert = load_sql("suggest/insert_review_decision")
        for week, rows in by_week.items():
            for r in rows[::10]:
                con.execute(insert, {
                    "decision_id": f"d{r['suggestion_id']}", "suggestion_id": r["suggestion_id"],
                    "week": week, "kind": r["kind"], "entry_id": r["entry_id"], "text": r["text"],
                    "decision": rng.choice(["accept", "reject", "defer"]), "reviewer": "王小明",
                    "decided_at": mined + timedelta(days=1), "comment": None,
                    "evidence_sessions": r["n_sessions"],
                })  # fmt: skip
                decided += 1
    return {"suggestions": n, "decisions": decided, "build_s": round(time.perf_counter() - t0, 2)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_timing(header: str) -> dict[str, float]:
    out = {}
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if dur:
            out[name] = float(dur)
    return out


def measure(url: str, repeat: int) -> dict[str, Any]:
    """One warm-up, then ``repeat`` GETs: server (Server-Timing) and client milliseconds."""
    got: dict[str, list[float]] = {"server_ms": [], "queue_ms": [], "client_ms": []}
    size = 0
    for i in range(repeat + 1):
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as r:
            body = r.read()
            timing = server_timing(r.headers.get("Server-Timing", ""))
        if i == 0:
            continue
        got["client_ms"].append((time.perf_counter() - t0) * 1000)
        got["server_ms"].append(timing["total"])
        got["queue_ms"].append(timing.get("queue", 0.0))
        size = len(body)
    return {
        **{f"median_{k}": round(statistics.median(v), 1) for k, v in got.items()},
        "max_server_ms": round(max(got["server_ms"]), 1),
        "bytes": size,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--suggestions", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kbflow-bench-workbench-"))
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    logs = home / "logs.duckdb"
    logs.unlink(missing_ok=True)
    result: dict[str, Any] = {
        "benchmark": "workbench",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        **build_queue(logs, args.suggestions),
    }
    queue_s = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        rows = review_queue(logs)
        queue_s.append(time.perf_counter() - t0)
    result["review_queue_median_ms"] = round(statistics.median(queue_s) * 1000, 1)
    assert len(rows) == args.suggestions
    contradiction = next(r["suggestion_id"] for r in rows if r["kind"] == "contradiction")

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "KBFLOW_REVIEW_TOKEN"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kbflow.cli", "review", "serve", "--home", str(home), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(base + "/static/workbench.css", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    print(proc.stderr.read() if proc.stderr else "", file=sys.stderr)
                    return 2
                time.sleep(0.1)
        pages = {
            "list_first_page": "/",
            "list_filtered": "/?kind=contradiction&category=%E9%80%80%E6%AC%BE&status=all",
            "list_page_20": "/?status=all&page=20",
            "detail_contradiction": f"/s/{contradiction}",
        }
        result["pages"] = {name: {"path": path, **measure(base + path, args.repeat)}
                           for name, path in pages.items()}  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    listed = result["pages"]["list_first_page"]["median_server_ms"]
    result["floor"] = {"list_server_ms_max": FLOOR_LIST_MS, "list_server_ms": listed}
    result["floor_ok"] = listed < FLOOR_LIST_MS
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.out:
        args.out.write_text(
            json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    return 0 if result["floor_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
