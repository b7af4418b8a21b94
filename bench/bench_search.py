#!/usr/bin/env python
"""Search latency over a data home's live version: in-process and through the HTTP service.

    python bench/bench_search.py --home DIR [--queries 400] [--k 3] [--no-http] [--out JSON]

In-process: ``kbflow.search.searcher.make_searcher`` (what ``kbflow search`` and ``kbflow serve`` use),
one query at a time, wall time around ``Searcher.search`` (query embedding on CPU, dense top-50,
BM25 top-50, fusion, top k). HTTP: ``kbflow serve --home DIR`` started as a child process on a
free loopback port, then ``POST /search`` with ``{"query": ..., "k": ...}`` over one kept-alive
connection, timed at the client (so it includes JSON, HTTP and the service's search log write).
``measure_http(base_url, queries, k)`` can be pointed at any running service.

Queries: the sample KB's golden queries (``examples/kb_zh/golden.jsonl``), then its similar
questions, distinct, up to ``--queries``; ``--warmup`` of them first, not counted. Reports P50,
P95, P99, mean and max in ms, fallback levels and the hand-off rate. On a benchmark home built
with synthetic or sampled vectors, the answers mean nothing; the latency is what is measured.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import resource
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SAMPLE = ROOT / "examples" / "kb_zh"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def load_queries(n: int, sample: Path = SAMPLE) -> list[str]:
    """Golden queries, then similar questions of the sample export, distinct, at most ``n``."""
    out: dict[str, None] = {}
    golden = sample / "golden.jsonl"
    if golden.is_file():
        for line in golden.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.setdefault(json.loads(line)["query"], None)
    for path in sorted((sample / "export").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                for q in row.get("similar_questions") or []:
                    if isinstance(q, str) and q.strip():
                        out.setdefault(q.strip(), None)
    queries = list(out)
    while queries and len(queries) < n:  # a tiny sample: cycle
        queries += queries[: n - len(queries)]
    return queries[:n]


def latency_stats(ms: list[float]) -> dict[str, float]:
    s = sorted(ms)

    def pct(p: float) -> float:  # nearest rank: the smallest value with p% at or below it
        return round(s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))], 2)

    return {
        "n": len(s),
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "mean_ms": round(statistics.fmean(s), 2),
        "max_ms": round(s[-1], 2),
    }


def _outcomes(resps: list[dict[str, Any]]) -> dict[str, Any]:
    levels: dict[str, int] = {}
    for r in resps:
        key = str(r.get("fallback_level", 0))
        levels[key] = levels.get(key, 0) + 1
    return {
        "fallback_levels": levels,
        "handoff_rate": round(sum(bool(r.get("handoff")) for r in resps) / max(1, len(resps)), 4),
    }


def open_searcher(home: Path) -> Any:
    from kbflow.search.searcher import make_searcher
    from kbflow.settings import load_settings

    return make_searcher(home, load_settings(str(home)))


def measure_inprocess(home: Path, queries: list[str], k: int, warmup: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    searcher = open_searcher(home)
    version = searcher.version()
    for q in queries[:warmup]:  # loads the version, the model, jieba
        searcher.search(q, k)
    ready = time.perf_counter() - t0
    ms: list[float] = []
    resps: list[dict[str, Any]] = []
    for q in queries[warmup:]:
        t = time.perf_counter()
        r = searcher.search(q, k)
        ms.append((time.perf_counter() - t) * 1000)
        resps.append({"fallback_level": r.fallback_level, "handoff": r.handoff})
    close = getattr(searcher, "close", None)
    if close is not None:
        close()
    return {
        **latency_stats(ms),
        **_outcomes(resps),
        "version": version.version,
        "passages": version.n_passages,
        "load_and_warmup_s": round(ready, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def measure_http(base_url: str, queries: list[str], k: int, warmup: int = 20) -> dict[str, Any]:
    """Client-side latency of ``POST {base_url}/search`` over one kept-alive connection."""
    host_port = base_url.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.partition(":")
    conn = http.client.HTTPConnection(host, int(port or 80), timeout=60)
    headers = {"Content-Type": "application/json"}
    ms: list[float] = []
    resps: list[dict[str, Any]] = []
    server_ms: list[float] = []
    for i, q in enumerate(queries):
        body = json.dumps({"query": q, "k": k}, ensure_ascii=False).encode()
        t = time.perf_counter()
        conn.request("POST", "/search", body, headers)
        resp = conn.getresponse()
        data = resp.read()
        elapsed = (time.perf_counter() - t) * 1000
        if resp.status != 200:
            raise RuntimeError(f"POST /search: HTTP {resp.status}: {data[:200]!r}")
        if i >= warmup:
            ms.append(elapsed)
            r = json.loads(data)
            resps.append(r)
            if isinstance(r.get("latency_ms"), int | float):
                server_ms.append(float(r["latency_ms"]))
    conn.close()
    out = {**latency_stats(ms), **_outcomes(resps), "url": base_url}
    if server_ms:
        out["search_latency_ms_reported"] = latency_stats(server_ms)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_available() -> bool:
    try:
        import kbflow.search.service  # noqa: F401
    except ImportError:
        return False
    return True


def start_service(home: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "kbflow.cli", "serve", "--home", str(home), "--port", str(port)]
    fh = open(log, "ab")  # noqa: SIM115 - owned by the child's lifetime
    return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)


def wait_ready(port: int, timeout: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            resp = conn.getresponse()
            body = json.loads(resp.read())
            conn.close()
            if resp.status == 200 and body.get("version"):
                return body
        except (OSError, ValueError) as exc:
            last = exc
        time.sleep(0.5)
    raise RuntimeError(f"kbflow serve did not answer /health in {timeout:.0f} s ({last})")


def measure_service(home: Path, queries: list[str], k: int, warmup: int) -> dict[str, Any]:
    port = _free_port()
    log = home / "bench-serve.log"
    t0 = time.perf_counter()
    proc = start_service(home, port, log)
    try:
        health = wait_ready(port)
        ready = time.perf_counter() - t0
        res = measure_http(f"http://127.0.0.1:{port}", queries, k, warmup)
        res["start_to_healthy_s"] = round(ready, 2)
        res["health"] = {k: health.get(k) for k in ("status", "version", "passages", "entries")}
        try:
            with open(f"/proc/{proc.pid}/status", encoding="ascii") as fh:
                res["server_rss_mib"] = next(
                    round(int(line.split()[1]) / 1024, 1) for line in fh if line.startswith("VmRSS")
                )
        except (OSError, StopIteration):
            pass
        res["command"] = f"kbflow serve --home {home} --port {port}"
        return res
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", type=Path, required=True, help="data home with a live version")
    p.add_argument("--queries", type=int, default=400, help="queries timed (after --warmup)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--no-http", action="store_true", help="skip the HTTP service measurement")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    home = a.home.resolve()
    queries = load_queries(a.queries + a.warmup)
    load = os.getloadavg()
    res: dict[str, Any] = {
        "benchmark": "kbflow search latency (bench/bench_search.py)",
        "command": shlex.join(
            ["python", "bench/bench_search.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "home": str(home),
        "k": a.k,
        "queries": len(queries) - a.warmup,
        "warmup": a.warmup,
        "distinct_queries": len(set(queries)),
        "in_process": measure_inprocess(home, queries, a.k, a.warmup),
    }
    if a.no_http:
        res["http"] = {"skipped": "--no-http"}
    elif not serve_available():
        res["http"] = {
            "skipped": "kbflow.search.service (kbflow serve) is not in this checkout; "
            "call bench_search.measure_http(url, queries, k) against a running service"
        }
    else:
        res["http"] = measure_service(home, queries, a.k, a.warmup)
    res["load_avg"] = [round(load[0], 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(res, ensure_ascii=False, indent=1))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, ensure_ascii=False, indent=1), encoding="utf-8")
    return res


if __name__ == "__main__":
    main()
    sys.exit(0)
