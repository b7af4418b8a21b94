#!/usr/bin/env python
"""Load on ``kbflow serve``: requests/s and latency with 1 and N worker processes at several
numbers of concurrent clients, with every answered request checked in the log.

    python bench/bench_serve_load.py --home DIR [--workers 1,2] [--clients 8,32]
        [--seconds 20] [--publish-seconds 150] [--k 3] [--no-publish]
        [--out bench/results-serve-load.json]

For each (workers, clients) cell: ``kbflow serve --home DIR --workers W`` on a free loopback
port, with its own spool and segment folders (``KBFLOW_LOGS__*``) so the cell's events can be
counted; wait until W distinct processes answer ``/health``; then ``clients`` threads, each
with one kept-alive connection, ``POST /search`` the sample KB's questions for ``--seconds``
(timed at the client). The service is then stopped with SIGINT (workers roll their spools) and
the cell's segments are read with DuckDB: logged events must equal answered requests, each
query id once. Cells marked ``publish`` copy the live version to a new version folder before
the load and publish it (``publish_version``: the atomic swap) a third of the way in, so every
worker reloads under traffic; the cell reports which versions answered.

The clients run in this process (threads; JSON and HTTP in Python), on the same cores as the
service: on a 2-core machine they take a share of the CPU, so absolute requests/s are a floor
for the service alone; compare cells, measured in one run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_search import _free_port, latency_stats, load_queries  # noqa: E402


def wait_workers(port: int, workers: int, timeout: float = 600.0) -> dict[int, str]:
    """Poll ``/health`` (new connection each time) until ``workers`` pids answered with a
    version; returns pid -> version."""
    seen: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(seen)} of {workers} workers answered in {timeout} s")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/health")
            body = json.loads(conn.getresponse().read())
            conn.close()
            if body.get("version"):
                seen[int(body["pid"])] = body["version"]
        except (OSError, ValueError):
            time.sleep(0.5)
    return seen


def run_clients(
    port: int, queries: list[str], clients: int, seconds: float, k: int, on_third: Any = None
) -> dict[str, Any]:
    lock = threading.Lock()
    ms: list[float] = []
    ids: list[str] = []
    versions: dict[str, int] = {}
    answered_at: list[tuple[float, str]] = []
    errors: list[str] = []
    stop = threading.Event()
    swapped_at: list[float] = []

    def client(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json"}
        i = c
        while not stop.is_set():
            q = queries[i % len(queries)]
            i += clients
            body = json.dumps({"query": q, "k": k, "session_id": f"load-{c}"}, ensure_ascii=False)
            t = time.perf_counter()
            try:
                conn.request("POST", "/search", body.encode(), headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                continue
            elapsed = (time.perf_counter() - t) * 1000
            if resp.status != 200:
                with lock:
                    errors.append(f"HTTP {resp.status}: {data[:120]!r}")
                continue
            r = json.loads(data)
            with lock:
                ms.append(elapsed)
                ids.append(r["query_id"])
                versions[r["version"]] = versions.get(r["version"], 0) + 1
                answered_at.append((time.perf_counter() - t0, r["version"]))
        conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    if on_third is not None:
        time.sleep(seconds / 3)
        swapped_at.append(time.perf_counter() - t0)
        on_third()
    time.sleep(max(0.0, seconds - (time.perf_counter() - t0)))
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    switch = {}
    if swapped_at:
        at = swapped_at[0]
        before = next((v for t, v in answered_at if t < at), None)
        new_t = [t for t, v in answered_at if v != before and t >= at]
        old_t = [t for t, v in answered_at if v == before and t >= at]
        switch = {
            "published_at_s": round(at, 1),
            "first_new_after_s": round(min(new_t) - at, 1) if new_t else None,
            "last_old_after_s": round(max(old_t) - at, 1) if old_t else None,
        }
    return {
        "requests": len(ms),
        "wall_s": round(wall, 1),
        "requests_per_s": round(len(ms) / wall, 1),
        **{k_: v for k_, v in latency_stats(ms).items() if k_ != "n"},
        "errors": len(errors),
        "error_examples": errors[:3],
        "versions_answered": versions,
        **({"switch": switch} if switch else {}),
        "_ids": ids,
    }


def logged_ids(segments: Path) -> list[str]:
    """Query ids of every search event in the cell's segments, as stored (repeats kept)."""
    import duckdb

    from kbflow.store.segments import segment_files

    files = segment_files(str(segments), "search")
    if not files:
        return []
    with duckdb.connect() as con:
        return [
            r[0] for r in con.execute("select query_id from read_parquet(?)", [files]).fetchall()
        ]


def copy_version(home: Path) -> tuple[str, str]:
    """Copy the live version to a new folder (its manifest renamed), not published yet;
    returns (live, new)."""
    from kbflow.store.versions import current_version as read_current

    indexes = home / "indexes"
    old = read_current(indexes)
    new = f"{old}-load{int(time.time())}"
    shutil.copytree(indexes / old, indexes / new)
    manifest = indexes / new / "manifest.json"  # the copy stands for a new version
    data = json.loads(manifest.read_text(encoding="utf-8"))
    manifest.write_text(json.dumps({**data, "version": new}, ensure_ascii=False), encoding="utf-8")
    return old, new


def cell(
    home: Path, workdir: Path, workers: int, clients: int, seconds: float, k: int,
    queries: list[str], publish: bool,
) -> dict[str, Any]:  # fmt: skip
    from kbflow.publish.pointer import publish_version
    from kbflow.store.versions import current_version as read_current

    name = f"w{workers}-c{clients}{'-publish' if publish else ''}"
    logs = workdir / name
    shutil.rmtree(logs, ignore_errors=True)
    segments = logs / "segments"
    port = _free_port()
    env = {
        **os.environ,
        "KBFLOW_LOGS__SEGMENTS": str(segments),
        "KBFLOW_LOGS__SPOOL_DIR": str(logs / "spool"),
        "KBFLOW_LOGS__ROLL_INTERVAL_S": "5",
    }
    cmd = [sys.executable, "-m", "kbflow.cli", "serve", "--home", str(home), "--port", str(port),
           "--workers", str(workers)]  # fmt: skip
    logs.mkdir(parents=True)
    out = open(logs / "serve.log", "wb")  # noqa: SIM115 - closed below
    live = read_current(home / "indexes")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    published: dict[str, str] = {}
    try:
        t0 = time.perf_counter()
        pids = wait_workers(port, workers)
        ready_s = time.perf_counter() - t0

        if publish:  # copied before the load starts: the swap itself is the pointer
            old, new = copy_version(home)
            published.update(old=old, new=new, at_s=f"{seconds / 3:.0f}")

        def swap() -> None:
            publish_version(home / "indexes", published["new"], keep=100)

        got = run_clients(port, queries, clients, seconds, k, swap if publish else None)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=300)
        out.close()
        if published:  # back to the version the run started on; drop the copy
            if read_current(home / "indexes") != live:
                publish_version(home / "indexes", live, keep=100)
            shutil.rmtree(home / "indexes" / published["new"], ignore_errors=True)
    ids = got.pop("_ids")
    stored = logged_ids(segments)
    log = {"events": len(stored), "distinct": len(set(stored))}
    missing = len(set(ids) - set(stored))
    return {
        "cell": name,
        "workers": workers,
        "clients": clients,
        "worker_pids": sorted(pids),
        "ready_s": round(ready_s, 1),
        **got,
        "logged_events": log["events"],
        "logged_distinct": log["distinct"],
        "answered_not_logged": missing,
        "logged_equals_requests": log["events"] == got["requests"] == log["distinct"]
        and missing == 0,
        **({"published": published} if published else {}),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--home", type=Path, required=True, help="data home with a live version")
    ap.add_argument("--workers", default="1,2", help="comma-separated (default 1,2)")
    ap.add_argument("--clients", default="8,32", help="comma-separated (default 8,32)")
    ap.add_argument("--seconds", type=float, default=20.0, help="load per cell (default 20)")
    ap.add_argument(
        "--publish-seconds",
        type=float,
        default=150.0,
        help="load per publish cell (default 150: every worker loads the new version beside "
        "the traffic, which takes a while at 100k entries, and the cell must see the switch)",
    )
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--no-publish", action="store_true", help="skip the publish-mid-load cells")
    ap.add_argument("--workdir", type=Path, default=HERE / ".work" / "serve-load")
    ap.add_argument("--out", type=Path, default=HERE / "results-serve-load.json")
    args = ap.parse_args(argv)
    from kbflow.store.versions import current_version as read_current

    home = args.home.resolve()
    queries = load_queries(args.queries)
    workers = [int(x) for x in args.workers.split(",")]
    clients = [int(x) for x in args.clients.split(",")]
    cells = []
    load_at_start = os.getloadavg()
    plan = [(w, c, False) for w in workers for c in clients]
    if not args.no_publish:
        plan += [(w, max(clients), True) for w in workers]
    for w, c, pub in plan:
        secs = args.publish_seconds if pub else args.seconds
        r = cell(home, args.workdir, w, c, secs, args.k, queries, pub)
        print(
            f"{r['cell']:<20} {r['requests_per_s']:>7.1f} req/s  p50 {r['p50_ms']:>7.1f} ms  "
            f"p95 {r['p95_ms']:>7.1f} ms  errors {r['errors']}  logged {r['logged_events']}"
            f"/{r['requests']}  versions {r['versions_answered']}",
            flush=True,
        )
        cells.append(r)
    result = {
        "benchmark": "kbflow serve under load (bench/bench_serve_load.py)",
        "command": " ".join(["python bench/bench_serve_load.py", *(argv or sys.argv[1:])]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_avg_at_start": load_at_start,
        "load_avg_at_end": os.getloadavg(),
        "home": str(home),
        "version": read_current(home / "indexes"),
        "seconds_per_cell": args.seconds,
        "seconds_per_publish_cell": args.publish_seconds,
        "cells": cells,
        "all_logged": all(c["logged_equals_requests"] for c in cells),
        "zero_errors": all(c["errors"] == 0 for c in cells),
    }
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"-> {args.out}")
    return 0 if result["all_logged"] and result["zero_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
