"""bench/bench_search.py at a tiny size: a 100-entry home (synthetic vectors), latency in
process and, where this checkout has ``kbflow serve``, over HTTP."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not (ROOT / "examples" / "kb_zh" / "export").is_dir():
        pytest.skip("examples/kb_zh/export is absent")
    import bench_search
    import bench_stages

    tmp = tmp_path_factory.mktemp("search")
    with pytest.MonkeyPatch.context() as mp:  # the home only needs a live version
        mp.setenv("KBFLOW_GATE__ENABLED", "false")
        mp.setenv("KBFLOW_REVIEW__ENABLED", "false")
        bench_stages.main(["--entries", "100", "--no-embed", "--workdir", str(tmp / "w"),
                           "--out", str(tmp / "stages.json"), "--log-level", "WARNING"])  # fmt: skip
    return bench_search.main(
        ["--home", str(tmp / "w" / "home"), "--queries", "30", "--warmup", "3",
         "--out", str(tmp / "search.json")]
    )  # fmt: skip


def test_latency_percentiles_in_process(measured: dict[str, Any]) -> None:
    ip = measured["in_process"]
    assert ip["n"] == measured["queries"] == 30
    assert 0 < ip["p50_ms"] <= ip["p95_ms"] <= ip["p99_ms"] <= ip["max_ms"]
    assert sum(ip["fallback_levels"].values()) == 30
    assert ip["fallback_levels"].get("0") == 30  # the embedder answered every query
    assert ip["passages"] > 100 and ip["version"]


def test_http_is_measured_or_says_why(measured: dict[str, Any]) -> None:
    import bench_search

    h = measured["http"]
    if not bench_search.serve_available():
        assert "measure_http" in h["skipped"]
        return
    assert h["n"] == 30 and 0 < h["p50_ms"] <= h["p95_ms"] <= h["max_ms"]
    assert h["health"]["version"] == measured["in_process"]["version"]
    # the client sees at least what the service reports for the search itself
    assert h["p50_ms"] >= h["search_latency_ms_reported"]["p50_ms"] * 0.9


def test_percentile_definition() -> None:
    import bench_search

    s = bench_search.latency_stats([float(x) for x in range(1, 101)])
    assert (s["p50_ms"], s["p95_ms"], s["p99_ms"], s["max_ms"]) == (50.0, 95.0, 99.0, 100.0)
    assert bench_search.load_queries(5) == bench_search.load_queries(5)
    assert len(bench_search.load_queries(7)) == 7


def test_serve_load_cells_log_every_answered_request(
    measured: dict[str, Any], tmp_path: Path
) -> None:
    import bench_serve_load

    out = tmp_path / "load.json"
    rc = bench_serve_load.main(
        ["--home", measured["home"], "--workers", "2", "--clients", "4", "--seconds", "3", "--publish-seconds", "9",
         "--workdir", str(tmp_path / "work"), "--out", str(out)]
    )  # fmt: skip
    import json

    result = json.loads(out.read_text())
    assert rc == 0 and result["all_logged"] and result["zero_errors"]
    plain, published = result["cells"]
    assert plain["cell"] == "w2-c4" and len(plain["worker_pids"]) == 2
    assert plain["requests"] > 0 and plain["logged_events"] == plain["requests"]
    assert published["published"]["new"] in published["versions_answered"]  # swapped under load
    assert result["version"] == measured["in_process"]["version"]  # put back afterwards
