"""The CLI runs the real flow in its own process and prints the documented JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..conftest import EXAMPLES


def kbflow(*args: str, home: Path, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KBFLOW_HOME": str(home), **extra_env}
    return subprocess.run(
        [sys.executable, "-m", "kbflow.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_nightly_json_then_search_and_eval(tmp_path: Path):
    # a newcomer's busy laptop: a fresh PREFECT_HOME (Prefect migrates its database on the
    # first start) while two processes keep every core of this machine busy
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(max(2, os.cpu_count() or 2))
    ]
    try:
        out = kbflow(
            "nightly",
            "--source",
            str(EXAMPLES / "kb_en" / "export"),
            "--run-date",
            "2026-11-24",
            "--json",
            home=tmp_path,
            PREFECT_HOME=str(tmp_path / "fresh-prefect-home"),
        )
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "fresh-prefect-home").is_dir()
    s = json.loads(out.stdout)
    assert s["status"] == "published" and s["version"]
    rows = s["rows"]
    assert set(rows) >= {"input", "indexed", "duplicate", "stale", "unpublished", "quarantined"}
    assert (
        sum(rows[k] for k in ("indexed", "duplicate", "stale", "unpublished", "quarantined"))
        == rows["input"]
    )
    assert s["embedded"] > 0 and s["cached"] == 0 and Path(s["report"]).is_file() and "retired" in s

    found = kbflow("search", "where is my parcel", "--json", "-k", "3", home=tmp_path)
    r = json.loads(found.stdout)
    assert r["version"] == s["version"] and len(r["results"]) == 3
    assert set(r["results"][0]) >= {"id", "title", "score", "passage"} and isinstance(
        r["handoff"], bool
    )
    assert r["latency_ms"] > 0

    ev = kbflow(
        "eval", "--golden", str(EXAMPLES / "kb_en" / "golden.jsonl"), "--json", home=tmp_path
    )
    m = json.loads(ev.stdout)
    assert m["n"] > 0 and 0 <= m["hit@1"] <= m["hit@3"] <= m["hit@10"] <= 1
    assert "auroc" in m["handoff"]


def test_missing_source_is_reported_without_traceback(tmp_path: Path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kbflow.cli",
            "nightly",
            "--home",
            str(tmp_path / "h"),
            "--source",
            str(tmp_path / "nope"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0
    # one line that names the missing source, and no traceback anywhere in stderr
    assert "Traceback" not in out.stderr
    assert "nope" in out.stderr.strip().splitlines()[-1]


def test_a_prefect_server_that_starts_too_slowly_is_one_line_and_nothing_runs(tmp_path: Path):
    # a busy laptop: Prefect's ephemeral server not up within the allowed time (0 s here)
    out = kbflow(
        "nightly",
        "--source",
        str(EXAMPLES / "kb_en" / "export"),
        home=tmp_path / "home",
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="0",
    )
    assert out.returncode == 75, out.stderr[-2000:]
    assert "Traceback" not in out.stderr + out.stdout
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("kbflow: Prefect's local API server did not start within 0 s")
    assert not (tmp_path / "home").exists()  # nothing ran
