"""LogWriter and import_events on a real logs.duckdb, including a second process holding it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kbflow.errors import SourceError
from kbflow.index.version import Hit
from kbflow.search.searcher import SearchResponse
from kbflow.store.logs import LogWriter, connect_logs, event_counts, import_events, search_event


def response(query: str, handoff: bool = False) -> SearchResponse:
    hits = [
        Hit("faq-1", "t", 0.8, 0.0, 0.8, "faq-1:0", "p"),
        Hit("faq-2", "t2", 0.5, 0, 0.5, "faq-2:0", "p"),
    ]
    return SearchResponse(
        query=query, version="v1", handoff=handoff, results=hits, latency_ms=12.5,
        fallback_level=1, top_score=0.8, threshold=0.4,
    )  # fmt: skip


def test_search_event_row_from_response():
    row = search_event(response("退款"), "s1", "u1")
    assert row["result_ids"] == ["faq-1", "faq-2"] and row["result_scores"] == [0.8, 0.5]
    assert row["top1_score"] == 0.8 and row["fallback_level"] == 1 and row["threshold"] == 0.4
    assert row["ts"].tzinfo is not None and len(row["query_id"]) == 32


def test_concurrent_appends_from_threads_lose_nothing(tmp_path: Path):
    path = tmp_path / "logs.duckdb"
    threads, per_thread = 8, 125
    with LogWriter(path, batch_size=64, flush_s=0.05) as writer:

        def work(t: int) -> None:
            for i in range(per_thread):
                qid = writer.log_search(response(f"q{t}-{i}"), f"s{t}", f"u{t}")
                if i % 5 == 0:
                    writer.log_click(qid, "faq-1", 1, f"s{t}", f"u{t}")

        pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
    assert event_counts(path) == {"searches": threads * per_thread, "clicks": threads * 25}
    assert writer.written == threads * per_thread + threads * 25 and writer.spilled is None


def test_logging_does_not_block_while_another_process_holds_the_file(tmp_path: Path):
    path = tmp_path / "logs.duckdb"
    with connect_logs(path):
        pass
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time\n"
            f"con = duckdb.connect({str(path)!r})\n"
            "print('held', flush=True)\ntime.sleep(1.5)\ncon.close()\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    writer = LogWriter(path, batch_size=10, flush_s=0.05, lock_retry_s=0.3)
    t0 = time.perf_counter()
    for i in range(50):
        writer.log_search(response(f"q{i}"))
    assert time.perf_counter() - t0 < 0.5  # queued, not written: the query path never waits
    writer.close()
    holder.wait(timeout=10)
    assert event_counts(path)["searches"] == 50 and writer.spilled is None


def test_events_are_spilled_not_lost_when_the_lock_never_frees(tmp_path: Path):
    path = tmp_path / "logs.duckdb"
    with connect_logs(path):
        pass
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, time\n"
            f"con = duckdb.connect({str(path)!r})\n"
            "print('held', flush=True)\ntime.sleep(4)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    writer = LogWriter(path, batch_size=5, flush_s=0.05, lock_retry_s=0.1)
    qids = [writer.log_search(response(f"q{i}")) for i in range(12)]
    writer.log_click(qids[0], "faq-1", 1)
    writer.close()
    assert writer.spilled is not None and writer.spilled.is_file()
    holder.wait(timeout=10)
    got = import_events(writer.spilled, path)
    assert got == {"lines": 13, "searches": 12, "clicks": 1}
    assert event_counts(path) == {"searches": 12, "clicks": 1}


def test_import_events_is_idempotent_and_names_bad_lines(tmp_path: Path):
    path = tmp_path / "logs.duckdb"
    src = tmp_path / "events.jsonl"
    events = [
        {"type": "search", "query_id": "a", "ts": "2026-11-17T03:00:00+08:00", "query": "退款",
         "result_ids": ["faq-1"], "result_scores": [0.7], "latency_ms": 20, "threshold": 0.4},
        {"type": "click", "query_id": "a", "ts": "2026-11-17T03:00:09Z", "entry_id": "faq-1", "position": 1},
        {"query_id": "b", "ts": "2026-11-17T04:00:00", "query": "发票", "handoff": True},
    ]  # fmt: skip
    src.write_text("\n".join(json.dumps(e, ensure_ascii=False) for e in events) + "\n\n")
    assert import_events(src, path) == {"lines": 3, "searches": 2, "clicks": 1}
    import_events(src, path)
    assert event_counts(path) == {"searches": 2, "clicks": 1}
    with connect_logs(path) as con:
        top1, ts = con.execute(
            "select top1_score, ts from search_events where query_id = 'a'"
        ).fetchone()
    assert top1 == 0.7
    assert ts.astimezone(UTC) == datetime(2026, 11, 16, 19, 0, tzinfo=UTC)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(events[0]) + '\n{"type": "click", "query_id": "x"}\n')
    with pytest.raises(SourceError, match="line 2"):
        import_events(bad, tmp_path / "other.duckdb")
    assert not (tmp_path / "other.duckdb").exists()  # validated before anything was written


def test_cli_commands_are_added_and_logs_import_runs(tmp_path: Path, capsys):
    import argparse

    from kbflow.cli.mine import add_commands
    from kbflow.errors import ConfigError

    parser = argparse.ArgumentParser(prog="kbflow")
    sub = parser.add_subparsers(dest="command", required=True)
    table: dict = {}
    add_commands(sub, table)
    assert set(table) == {"mine", "logs", "simulate-logs"}
    src = tmp_path / "events.jsonl"
    src.write_text(
        json.dumps({"type": "search", "query_id": "a", "ts": "2026-11-17T03:00:00Z", "query": "q"})
        + "\n"
    )
    home = tmp_path / "home"
    args = parser.parse_args(["logs", "import", str(src), "--home", str(home)])
    assert table[args.command](args) == 0
    assert "1 searches" in capsys.readouterr().out
    assert event_counts(home / "logs.duckdb") == {"searches": 1, "clicks": 0}
    args = parser.parse_args(["mine", "--week", "2026-47", "--home", str(home)])
    with pytest.raises(ConfigError, match="ISO week"):
        table["mine"](args)  # refused before Prefect starts
