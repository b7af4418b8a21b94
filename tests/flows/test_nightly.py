"""kb-nightly end to end on the bundled Chinese sample, under a real Prefect API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from kbflow_flows.nightly import kb_nightly

from kbflow.contracts import (
    CLEAN_ENTRY,
    PASSAGE,
    QUARANTINE_ROW,
    RAW_ROW,
    ROW_OUTCOME,
    read_table,
)
from kbflow.store.versions import current_version, list_versions

from ..conftest import EXAMPLES

ZH = EXAMPLES / "kb_zh"
EXPECTED = json.loads((ZH / "expected.json").read_text(encoding="utf-8"))
RUN_DATE = EXPECTED["run_date"]


def run(home: Path, source: Path, **kw):
    return kb_nightly(source=str(source), run_date=RUN_DATE, home=str(home), **kw)


def catalog_rows(home: Path, sql: str, *params):
    con = duckdb.connect(str(home / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kbhome")


@pytest.fixture(scope="module")
def first(home: Path) -> dict:
    return run(home, ZH / "export")


def test_first_run_publishes_and_accounts_for_every_row(home: Path, first: dict):
    rows = first["rows"]
    assert first["status"] == "published" and first["version"]
    assert rows["input"] == EXPECTED["total_rows"]
    assert (
        sum(rows[k] for k in ("indexed", "duplicate", "stale", "unpublished", "quarantined"))
        == rows["input"]
    )
    assert rows["indexed"] >= 250 and first["embedded"] > rows["indexed"]
    assert current_version(home / "indexes") == first["version"]
    assert Path(first["report"]).is_file()
    # one outcome per input row, stored in the catalog
    (n, distinct) = catalog_rows(
        home,
        "select count(*), count(distinct row_id) from row_outcomes where run_id = ?",
        first["run_id"],
    )[0]
    assert n == distinct == rows["input"]


def test_a_chinese_kb_is_embedded_with_the_multilingual_model(home: Path, first: dict):
    manifest = json.loads((home / "indexes" / first["version"] / "manifest.json").read_text())
    emb = manifest["embedding"]
    assert emb["model_key"] == "multilingual-e5-small@384" == first["model_key"]
    assert emb["document_prefix"] == emb["query_prefix"] == "query: "
    choice = emb["choice"]
    assert choice["mode"] == "auto" and choice["model"] == "multilingual-e5-small"
    assert (
        choice["language"]["zh"] > 0.9 and choice["language"]["entries"] == first["rows"]["indexed"]
    )
    assert "English 0%" in choice["reason"] and first["model_choice"]["mode"] == "auto"
    # its cosines are compressed: the version's dense scale and hub correction say how
    scale = manifest["index"]["dense_scale"]
    assert scale["hub_weight"] == 0.5 and 0.2 < scale["lo"] < scale["hi"] < 1
    assert (home / "indexes" / first["version"] / "hub.npy").is_file()
    # the dense side gets a say now (the English model got weight 0 on Chinese)
    assert manifest["calibration"]["dense_weight"] >= 0.5


def test_stage_files_match_their_contracts(home: Path, first: dict):
    run_dir = home / "runs" / first["run_id"]
    read_table(run_dir / "validate" / "rows.parquet", RAW_ROW)
    read_table(run_dir / "validate" / "quarantine.parquet", QUARANTINE_ROW)
    entries = read_table(run_dir / "clean" / "entries.parquet", CLEAN_ENTRY)
    read_table(run_dir / "chunk" / "passages.parquet", PASSAGE)
    meta = {r["entry_id"]: r["metadata"] for r in entries.to_pylist()}
    outcomes = read_table(run_dir / "account" / "outcomes.parquet", ROW_OUTCOME).to_pylist()
    outcome = {r["entry_id"]: (r["outcome"], r["detail"]) for r in outcomes}
    designed = {
        frozenset(p) for p in EXPECTED["near_duplicate_pairs"] + EXPECTED["exact_duplicate_pairs"]
    }
    indexed = 0
    for eid in EXPECTED["metadata_ids"]:
        match outcome[eid]:
            case ("indexed", _):
                # every indexed entry the sample gives an unknown column keeps it in metadata
                assert "owner" in json.loads(meta[eid]), eid
                indexed += 1
            case ("duplicate", kept):  # a designed copy, merged into the entry that is indexed
                assert frozenset((eid, kept)) in designed, eid
            case ("stale", _):
                assert eid in EXPECTED["expired_ids"], eid
            case other:
                raise AssertionError(f"{eid}: {other}")
    assert indexed >= 10


def test_broken_rows_are_quarantined_with_reasons(home: Path, first: dict):
    got = {
        (f, line): (exp, detail)
        for f, line, exp, detail in catalog_rows(
            home,
            "select source_file, source_line, expectation, detail from quarantine where run_id = ?",
            first["run_id"],
        )
    }
    for broken in EXPECTED["broken_rows"]:
        key = (broken["file"], broken["line"])
        assert key in got, f"broken row not quarantined: {broken}"
        assert got[key][0] and got[key][1]
    dup = EXPECTED["duplicate_id_quarantined"]
    assert (dup["file"], dup["line"]) in got


def test_near_duplicates_are_merged_and_expired_entries_are_stale(home: Path, first: dict):
    merges = catalog_rows(
        home,
        "select canonical_id, merged_id, kind from dedup_merges where run_id = ?",
        first["run_id"],
    )
    merged_pairs = {frozenset((a, b)) for a, b, _ in merges}
    for a, b in EXPECTED["near_duplicate_pairs"] + EXPECTED["exact_duplicate_pairs"]:
        assert frozenset((a, b)) in merged_pairs, f"{a} / {b} not merged"
    stale = {
        e
        for (e,) in catalog_rows(
            home, "select entry_id from stale_entries where run_id = ?", first["run_id"]
        )
    }
    assert set(EXPECTED["expired_ids"]) <= stale
    assert not set(EXPECTED["not_expired_ids"]) & stale
    outcome = dict(
        catalog_rows(
            home, "select entry_id, outcome from row_outcomes where run_id = ?", first["run_id"]
        )
    )
    for eid in EXPECTED["draft_ids"] + EXPECTED["archived_ids"] + EXPECTED["not_yet_effective_ids"]:
        assert outcome[eid] == "unpublished", eid


def test_review_stage_writes_its_tables_and_the_report_section(home: Path, first: dict):
    from kbflow.contracts import REVIEW_CONTRADICTION, REVIEW_SEMANTIC_DUPLICATE

    folder = home / "runs" / first["run_id"] / "review"
    sem = read_table(folder / "semantic_duplicates.parquet", REVIEW_SEMANTIC_DUPLICATE)
    con = read_table(folder / "contradictions.parquet", REVIEW_CONTRADICTION)
    method, n_sem, n_con = catalog_rows(
        home,
        "select method, n_semantic_pairs, n_contradictions from review_versions where version = ?",
        first["version"],
    )[0]
    # the multilingual model reads the Chinese sample: a calibrated threshold, pairs above it
    cal = first["review"]["calibration"]
    assert (
        method == "calibrated" == cal["method"] and cal["model_key"] == "multilingual-e5-small@384"
    )
    assert n_sem == sem.num_rows > 0 and n_con == con.num_rows
    assert all(r["score"] >= cal["threshold"] for r in sem.to_pylist())
    for table, n in (("review_semantic_duplicates", n_sem), ("review_contradictions", n_con)):
        assert catalog_rows(
            home, f"select count(*) from {table} where version = ?", first["version"]
        ) == [(n,)]
    html = Path(first["report"]).read_text(encoding="utf-8")
    assert html.index("Contradicting answers (") < html.index("Row accounting")
    assert f"Semantic near-duplicates ({n_sem} pairs" in html and "calibrated" in html


def test_search_answers_a_colloquial_query_with_a_title_prefixed_sop_passage(
    home: Path, first: dict
):
    from kbflow.cli.search import searcher_for

    searcher = searcher_for(home)
    res = searcher.search("我单子咋还没到", k=3)
    assert res.version == first["version"] and len(res.results) == 3
    assert not res.handoff and res.fallback_level == 0  # answered, not handed to a human
    refund = searcher.search("退款几天能到账啊", k=3)
    assert refund.results[0].entry_id in ("faq-0074", "faq-0246")  # "退款多久到账？" (merged pair)
    assert searcher.search("今天天气怎么样", k=3).handoff  # out of scope: a human
    passages = read_table(
        home / "indexes" / first["version"] / "passages.parquet", PASSAGE
    ).to_pylist()
    sections = [p for p in passages if p["kind"] == "section"]
    assert sections and all(p["text"].startswith("【") for p in sections)
    assert {p["entry_id"] for p in sections} >= set(EXPECTED["sop_ids"])


def test_second_run_on_same_export_is_unchanged_and_embeds_nothing(home: Path, first: dict):
    second = run(home, ZH / "export")
    assert second["status"] == "unchanged" and second["embedded"] == 0
    assert second["version"] == first["version"] == current_version(home / "indexes")
    assert second["rows"] == first["rows"]
    # the same export: the first run's validated, cleaned and chunked outputs, hard-linked
    runs = home / "runs"
    one, two = runs / first["run_id"], runs / second["run_id"]
    assert (two / "prepared.json").read_text() == (one / "prepared.json").read_text()
    for stage, name in (("validate", "rows.parquet"), ("chunk", "passages.parquet")):
        assert (two / stage / name).stat().st_ino == (one / stage / name).stat().st_ino
    events = catalog_rows(home, "select count(*) from publish_events where action = 'publish'")[0][
        0
    ]
    assert events == 1  # CURRENT moved exactly once


def test_edited_entries_are_the_only_ones_embedded(home: Path, first: dict, tmp_path: Path):
    src = tmp_path / "export"
    shutil.copytree(ZH / "export", src)
    lines = (src / "faq.jsonl").read_text(encoding="utf-8").splitlines()
    edited = 0
    for i, line in enumerate(lines):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if (
            isinstance(obj, dict)
            and obj.get("status", "published") == "published"
            and obj.get("id")
            and edited < 3
            and obj["id"] not in str(EXPECTED)
        ):
            obj["answer"] = obj["answer"] + "（本条已于今日更新，详情请咨询在线客服。）"
            lines[i] = json.dumps(obj, ensure_ascii=False)
            edited += 1
    (src / "faq.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    third = run(home, src)
    assert third["status"] == "published" and third["version"] != first["version"]
    # a harmless change passes the quality gate against the live version
    assert third["gate"]["passed"] and "live_common" in third["gate"]["checks"]["self_check"]
    assert third["embedded"] == edited == 3  # one answer passage per edited entry, nothing else
    assert third["cached"] > 250


def test_failed_batch_leaves_the_live_version_untouched(home: Path, tmp_path: Path):
    live = current_version(home / "indexes")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "".join(
            json.dumps({"id": f"x{i}", "title": f"问题{i}"}, ensure_ascii=False) + "\n"
            for i in range(10)
        ),
        encoding="utf-8",
    )
    state = kb_nightly(source=str(bad), run_date=RUN_DATE, home=str(home), return_state=True)
    assert state.is_failed()
    assert current_version(home / "indexes") == live
    assert not list((home / "indexes").glob(".building-*"))
    status, message = catalog_rows(
        home, "select status, message from runs order by started_at desc limit 1"
    )[0]
    assert status == "failed" and "answer" in message


def test_rollback_restores_the_previous_version(home: Path, first: dict, capsys):
    from kbflow.cli.main import main

    live = current_version(home / "indexes")
    assert live != first["version"]
    assert main(["rollback", "--home", str(home)]) == 0
    assert current_version(home / "indexes") == first["version"]
    assert main(["rollback", "--home", str(home), live]) == 0
    assert current_version(home / "indexes") == live
    assert len(list_versions(home / "indexes")) == 2


def test_entries_missing_from_a_new_snapshot_are_retired(home: Path, tmp_path: Path):
    src = tmp_path / "export"
    shutil.copytree(ZH / "export", src)
    (src / "legacy.csv").unlink()
    res = run(home, src)
    assert res["status"] == "published"
    assert res["retired"] >= 10
    from kbflow.index.version import LoadedVersion

    v = LoadedVersion(home / "indexes" / res["version"])
    assert not any(e.startswith("leg-") for e in v.entry_ids)


def test_run_leaves_a_markdown_report_artifact(first: dict):
    from prefect.client.orchestration import get_client

    # Prefect 3.8.8's artifact helpers send nulls its own server rejects: post the full filter.
    body = {
        "artifacts": {"key": {"any_": ["kb-nightly-report"]}},
        "flow_runs": {},
        "task_runs": {},
        "limit": 50,
        "offset": 0,
        "sort": "CREATED_DESC",
    }
    with get_client(sync_client=True) as client:
        arts = client._client.post("/artifacts/filter", json=body).json()
    bodies = [a["data"] for a in arts if a["type"] == "markdown"]
    assert any(
        first["run_id"] in b and "| indexed |" in b and "| quarantined |" in b for b in bodies
    )


def test_a_run_killed_during_calibration_leaves_nothing_the_next_run_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The version folder is renamed into place before calibration: a run that dies there
    leaves a complete but uncalibrated, never-live version. The next run publishes its own and
    prunes that one."""
    import kbflow.index.stage as index_stage

    real = index_stage.calibrate_index
    calls = {"n": 0}

    def dies_once(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt("killed during calibration")
        return real(*a, **kw)

    monkeypatch.setattr(index_stage, "calibrate_index", dies_once)
    home = tmp_path / "home"
    with pytest.raises(KeyboardInterrupt):
        run(home, ZH / "export")
    (orphan,) = list_versions(home / "indexes")
    assert orphan.status == "built" and current_version(home / "indexes") is None
    summary = run(home, ZH / "export")
    assert summary["status"] == "published"
    (live,) = list_versions(home / "indexes")
    assert live.live and live.version == summary["version"] != orphan.version
    manifest = json.loads((home / "indexes" / live.version / "manifest.json").read_text())
    assert manifest["calibration"]["threshold_method"]  # calibrated


def test_a_run_id_is_used_once(tmp_path: Path):
    """Reusing a finished run's id is refused with a sentence, before anything is written."""
    from kbflow.errors import ConfigError

    home = tmp_path / "home"
    first = run(home, ZH / "export", run_id="20261124T020000-once01")
    assert first["status"] == "published"
    with pytest.raises(ConfigError, match="already exists.*used once"):
        run(home, ZH / "export", run_id="20261124T020000-once01")
    assert current_version(home / "indexes") == first["version"]
    rows = catalog_rows(home, "select status from runs where run_id = ?", "20261124T020000-once01")
    assert rows == [("published",)]  # the first run's record is untouched
