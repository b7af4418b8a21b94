"""Spool files and Parquet log segments: real files, real processes killed with SIGKILL, real
DuckDB reading the segments beside logs.duckdb."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from kbflow.errors import SourceError
from kbflow.store.logs import connect_logs, event_counts, import_events
from kbflow.store.segments import attach_log_views, segment_files
from kbflow.store.spool import SpoolWriter, read_spool, roll_orphans


def response(query: str = "where is my parcel") -> SimpleNamespace:
    hit = SimpleNamespace(entry_id="order-status", score=0.8)
    return SimpleNamespace(
        query=query,
        version="v1",
        results=[hit],
        top_score=0.8,
        latency_ms=3.0,
        fallback_level=0,
        handoff=False,
        threshold=0.35,
    )


def stored_ids(logs: Path, segments: str) -> list[str]:
    with connect_logs(logs) as con:
        attach_log_views(con, segments)
        return [r[0] for r in con.execute("select query_id from search_log").fetchall()]


CHILD = textwrap.dedent(
    """
    import sys, time
    from types import SimpleNamespace
    from kbflow.store.spool import SpoolWriter
    hit = SimpleNamespace(entry_id="order-status", score=0.8)
    res = SimpleNamespace(query="where is my parcel", version="v1", results=[hit], top_score=0.8,
                          latency_ms=3.0, fallback_level=0, handoff=False, threshold=0.35)
    w = SpoolWriter(sys.argv[1], sys.argv[2], roll_interval_s=float(sys.argv[3]))
    i = 0
    while True:
        qid = w.log_search(res, session_id=f"s{i}")
        print(qid, flush=True)  # "answered": only after the event is in the spool
        i += 1
        time.sleep(0.002)
    """
)


def test_a_killed_process_loses_no_answered_event(tmp_path: Path):
    spool, segments, logs = tmp_path / "spool", str(tmp_path / "segments"), tmp_path / "logs.duckdb"
    # roll every 0.2 s, so the kill lands with some events rolled and some only spooled
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(spool), segments, "0.2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    answered = []
    assert proc.stdout is not None
    while len(answered) < 400:
        answered.append(proc.stdout.readline().strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    answered += [line.strip() for line in proc.stdout if line.strip()]
    assert segment_files(segments, "search"), "the roll thread wrote no segment before the kill"
    assert list(spool.glob("*.jsonl")), "the kill left no spool: nothing tested"
    done = roll_orphans(spool, segments)
    assert done and not list(spool.glob("*.jsonl"))
    ids = stored_ids(logs, segments)
    assert set(answered) <= set(ids)  # every answered event is there
    assert len(ids) == len(set(ids))  # each once
    assert roll_orphans(spool, segments) == []  # nothing left to roll


def test_a_live_spool_is_not_rolled_by_another_process(tmp_path: Path):
    spool, segments = tmp_path / "spool", str(tmp_path / "segments")
    with SpoolWriter(spool, segments, roll_interval_s=3600) as w:
        w.log_search(response())
        assert roll_orphans(spool, segments) == []  # held by w's flock
        assert len(list(spool.glob("*.jsonl"))) == 1
    assert not list(spool.glob("*.jsonl"))  # close rolled it
    assert event_counts(tmp_path / "logs.duckdb", segments)["searches"] == 1


def test_a_cut_last_line_is_dropped_and_a_bad_line_keeps_the_spool(tmp_path: Path):
    spool, segments = tmp_path / "spool", str(tmp_path / "segments")
    spool.mkdir()
    row = {"type": "search", "query_id": "q1", "ts": "2026-12-01T10:00:00Z", "query": "x"}
    (spool / "h-1-aa-000001.jsonl").write_text(json.dumps(row) + "\n" + '{"type": "sea')
    tables, torn = read_spool(spool / "h-1-aa-000001.jsonl")
    assert torn and tables["search"].num_rows == 1
    (spool / "h-2-bb-000001.jsonl").write_text("not json\n" + json.dumps(row) + "\n")
    with pytest.raises(SourceError, match="line 1"):
        read_spool(spool / "h-2-bb-000001.jsonl")
    done = roll_orphans(spool, segments)
    assert [r.searches for r in done] == [1] and done[0].torn
    assert (spool / "h-2-bb-000001.bad").exists()  # kept for a person, not lost


def test_segments_split_by_day_and_replays_count_once(tmp_path: Path):
    spool, segments, logs = tmp_path / "spool", str(tmp_path / "segments"), tmp_path / "logs.duckdb"
    before = datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC)
    after = datetime(2026, 12, 2, 0, 0, 1, tzinfo=UTC)
    with SpoolWriter(spool, segments, roll_interval_s=3600) as w:
        a = w.log_search(response("a"), ts=before)
        b = w.log_search(response("b"), ts=after)
        w.log_click(a, "order-status", 1, ts=after)
        w.flush()
    files = segment_files(segments, "search")
    assert [Path(f).parent.name for f in files] == ["date=2026-12-01", "date=2026-12-02"]
    assert pq.read_schema(files[0]).field("ts").type.tz == "UTC"
    # a window picks the days it needs (plus a day each side for time zones)
    assert segment_files(segments, "search", start=datetime(2026, 12, 5, tzinfo=UTC)) == []
    # the same events imported into logs.duckdb as well: still each once
    export = tmp_path / "export.jsonl"
    export.write_text(
        "\n".join(
            json.dumps({"type": "search", "query_id": q, "ts": t.isoformat(), "query": n})
            for q, t, n in ((a, before, "a"), (b, after, "b"))
        )
        + "\n"
    )
    import_events(export, logs)
    assert event_counts(logs) == {"searches": 2, "clicks": 0}
    assert event_counts(logs, segments) == {"searches": 2, "clicks": 1}
    assert sorted(stored_ids(logs, segments)) == sorted([a, b])
    # a segment copied by hand under another name (a spool rolled twice): still each once
    copy = Path(files[1]).with_name("other-host-1-cc-000001.parquet")
    copy.write_bytes(Path(files[1]).read_bytes())
    click = segment_files(segments, "click")[0]
    Path(click).with_name("other-host-1-cc-000001.parquet").write_bytes(Path(click).read_bytes())
    assert event_counts(tmp_path / "fresh.duckdb", segments) == {"searches": 2, "clicks": 1}


def test_segments_on_an_fsspec_url(tmp_path: Path):
    import fsspec

    url = "memory://kbflow-test/segments"
    fs = fsspec.filesystem("memory")
    try:
        with SpoolWriter(tmp_path / "spool", url, roll_interval_s=3600) as w:
            ids = {w.log_search(response(f"q{i}")) for i in range(5)}
        files = segment_files(url, "search")
        assert files and all(f.startswith("memory://") for f in files)
        assert set(stored_ids(tmp_path / "logs.duckdb", url)) == ids
    finally:
        fs.rm("/kbflow-test", recursive=True)


def test_logs_status_and_roll_commands(tmp_path: Path, capsys):
    from kbflow.cli.main import main

    home = tmp_path / "home"
    spool = home / "logs" / "spool"
    spool.mkdir(parents=True)
    row = {"type": "search", "query_id": "q1", "ts": "2026-12-01T10:00:00Z", "query": "x"}
    (spool / "h-1-aa-000001.jsonl").write_text(json.dumps(row) + "\n")  # a dead process's
    assert main(["logs", "status", "--home", str(home), "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert before["spool_files"] == 1 and before["all_events"] == {"searches": 0, "clicks": 0}
    assert main(["logs", "roll", "--home", str(home)]) == 0
    assert "rolled 1 spool files: 1 searches, 0 clicks" in capsys.readouterr().out
    assert main(["logs", "status", "--home", str(home), "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["spool_files"] == 0 and after["segment_files"] == {"search": 1, "click": 0}
    assert after["all_events"] == {"searches": 1, "clicks": 0}
