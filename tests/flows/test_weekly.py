"""kb-weekly-mining end to end: a real index from kb-nightly, a SIMULATED week of real
searches and clicks, then the mining flow under a real Prefect API."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from kbflow_flows.nightly import kb_nightly
from kbflow_flows.weekly import kb_weekly_mining

from kbflow.mining.simulate import simulate_week
from kbflow.search.searcher import make_searcher
from kbflow.settings import load_settings
from kbflow.store.golden import load_golden
from kbflow.store.logs import LogWriter, event_counts

from ..conftest import EXAMPLES

ZH = EXAMPLES / "kb_zh"
RUN_DATE = json.loads((ZH / "expected.json").read_text(encoding="utf-8"))["run_date"]
WEEK = "2026-W47"
SESSIONS = 30


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("kbweekly")
    built = kb_nightly(source=str(ZH / "export"), run_date=RUN_DATE, home=str(home))
    assert built["status"] == "published"
    # queries embedded with the version's own model (the multilingual one for this KB)
    searcher = make_searcher(home, load_settings(str(home)))
    golden = load_golden(ZH / "golden.jsonl")
    with LogWriter(home / "logs.duckdb", batch_size=100, flush_s=0.5) as writer:
        simulated = simulate_week(searcher, writer, golden, WEEK, sessions=SESSIONS, seed=7)
    assert event_counts(home / "logs.duckdb") == {
        "searches": simulated["searches"],
        "clicks": simulated["clicks"],
    }
    return home


@pytest.fixture(scope="module")
def mined(home: Path) -> dict:
    return kb_weekly_mining(week=WEEK, home=str(home))


def q(home: Path, sql: str, *params):
    con = duckdb.connect(str(home / "logs.duckdb"), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def test_simulated_week_lands_inside_the_week(home: Path):
    (n, lo, hi, sim) = q(
        home,
        "select count(*), min(ts), max(ts), bool_and(session_id like 'sim-%') from search_events",
    )[0]
    assert n >= SESSIONS and sim
    assert str(lo.date()) >= "2026-11-15" and str(hi.date()) <= "2026-11-22"


def test_flow_writes_review_tables_exports_and_report(home: Path, mined: dict):
    assert mined["week"] == WEEK
    m = mined["metrics"]
    n_searches = event_counts(home / "logs.duckdb")["searches"]
    assert m["n_queries"] == n_searches
    assert 0 < m["p50_ms"] <= m["p95_ms"] <= m["p99_ms"]
    assert 0 < m["ctr"] < 1 and 0 < m["handoff_rate"] < 1  # golden has out-of-scope queries
    assert mined["answers"] > 10 and mined["gap_clusters"] > 0
    assert q(home, "select count(*) from review_weekly_metrics where week = ?", WEEK) == [(1,)]
    # gap clusters partition the gap queries: sizes sum to the gap events
    (gap_events,) = q(
        home,
        "select count(*) from search_events s where handoff or top1_score is null "
        "or top1_score < threshold or query_id not in (select query_id from click_events)",
    )[0]
    (size_sum,) = q(home, "select sum(size) from review_kb_gaps where week = ?", WEEK)[0]
    assert size_sum == gap_events
    out = Path(mined["report"]).parent
    assert out == home / "reports" / "weekly" / WEEK
    for name in ("low_click_answers", "kb_gaps", "weekly_metrics"):
        assert (out / f"{name}.csv").is_file()
        assert pq.read_table(out / f"{name}.parquet").num_rows == len(
            q(home, f"select 1 from review_{name} where week = ?", WEEK)
        )
    # the KB review tables of the live version travel with the weekly bundle
    for name in ("semantic_duplicates", "contradictions"):
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.parquet").is_file()
    text = Path(mined["report"]).read_text(encoding="utf-8")
    assert "KB review: version v" in text
    parser = HTMLParser()
    parser.feed(text)
    assert text.count("<svg") == 4 and WEEK in text


def test_flow_creates_artifacts(mined: dict):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        TaskRunFilter,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    wanted = [f"kb-weekly-{WEEK.lower()}", "kb-weekly-kb-gaps", "kb-weekly-report"]

    async def read() -> dict:
        async with get_client() as client:
            arts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=wanted)),
                flow_run_filter=FlowRunFilter(),
                task_run_filter=TaskRunFilter(),
                sort=ArtifactSort.UPDATED_DESC,
                limit=50,
                offset=0,
            )
            # newest first: other tests (backfill re-mining) write the same keys earlier
            newest: dict = {}
            for a in arts:
                newest.setdefault(a.key, a)
            return newest

    got = asyncio.run(read())
    assert set(got) == set(wanted)
    link = got[f"kb-weekly-{WEEK.lower()}"]
    # Prefect 3.8 stores a link artifact as markdown holding the link
    assert Path(mined["report"]).as_uri() in str(link.data)
    assert got["kb-weekly-kb-gaps"].type == "table"


def test_the_queue_holds_every_kind_the_sample_gives(home: Path, mined: dict):
    """On the sample: gap topics grouped by the version's own encoder, the review stage's
    duplicate pairs and its contradiction with both answers side by side."""
    from kbflow.mining.suggest import review_queue

    assert mined["gap_clustering"] == "vectors"
    queue = review_queue(home / "logs.duckdb")
    kinds = {r["kind"] for r in queue}
    assert {"gap", "duplicate", "contradiction"} <= kinds, kinds
    assert kinds & {"similar_question", "confusion"}, kinds
    con = next(r for r in queue if r["kind"] == "contradiction")
    detail = json.loads(con["detail"])
    assert detail["a"]["answer"] and detail["b"]["answer"] and detail["facts"]
    assert all(r["category"] for r in queue if r["kind"] in ("duplicate", "contradiction"))
    (other,) = q(home, "select count(*) from review_kb_gaps where week = ? and cluster_id < 0",
                 WEEK)  # fmt: skip
    assert other == (1,)  # queries asked once, alone, are one "other" row, not topics


def test_rerun_replaces_the_week(home: Path, mined: dict):
    before = q(home, "select count(*) from review_low_click_answers where week = ?", WEEK)
    again = kb_weekly_mining(week=WEEK, home=str(home))
    assert again["metrics"]["n_queries"] == mined["metrics"]["n_queries"]
    assert q(home, "select count(*) from review_low_click_answers where week = ?", WEEK) == before
    assert q(home, "select count(*) from review_weekly_metrics") == [(1,)]


def test_accepted_suggestions_reach_the_next_nightly_as_an_overlay(home: Path, mined: dict):
    """The loop on the sample: the week's suggestions, every one accepted, then the next
    nightly adds them to the index (recorded per run and in the manifest) and the accepted
    wording now finds its entry first."""
    from kbflow.mining.suggest import decide, review_queue
    from kbflow.store.decisions import QUESTION_KINDS
    from kbflow.store.versions import read_manifest

    assert mined["suggestions"] and mined["suggestions"] > 0
    queue = review_queue(home / "logs.duckdb")
    assert len(queue) == mined["suggestions"]
    for s in queue:
        decide(home / "logs.duckdb", s["suggestion_id"], "accept", "test-reviewer")
    # only new wordings of an entry go into the overlay; the other kinds are for the source
    accepted = {(s["entry_id"], s["text"]) for s in queue if s["kind"] in QUESTION_KINDS}
    again = kb_nightly(source=str(ZH / "export"), run_date=RUN_DATE, home=str(home))
    assert again["status"] == "published", again
    manifest = read_manifest(home / "indexes" / again["version"])
    overlay = manifest["overlay"]
    assert overlay["applied"] + overlay["retired"] + overlay["dropped"] == len(accepted)
    assert overlay["applied"] > 0
    rows = pq.read_table(home / "runs" / again["run_id"] / "chunk" / "overlay.parquet").to_pylist()
    applied = [(r["applied_to"], r["text"]) for r in rows if r["outcome"] == "applied"]
    passages = pq.read_table(home / "indexes" / again["version"] / "passages.parquet").to_pylist()
    questions = {(p["entry_id"], p["text"]) for p in passages if p["kind"] == "question"}
    assert set(applied) <= questions  # each applied question is a passage of its entry
    searcher = make_searcher(home, load_settings(str(home)))
    hits = [searcher.search(text, 1).results[0].entry_id for _, text in applied]
    assert sum(h == e for h, (e, _) in zip(hits, applied, strict=True)) / len(applied) >= 0.9
    expected = json.loads((ZH / "expected.json").read_text(encoding="utf-8"))
    assert again["rows"]["input"] == expected["total_rows"]  # the overlay adds no input row
