"""kb-backfill end to end under a real Prefect API, on one data home:

1. three nightly runs (three exports, three run dates), then a replay of those dates: the final
   version holds exactly what the third nightly run built, each replay ran as the nightly of
   its export's date, and triggering the same backfill again does nothing;
2. a blue/green re-embed to 256 dimensions while a thread keeps searching: every answer is a
   normal one (fallback 0), from the old version until the swap and the new one after;
3. re-mining two past weeks, once.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from kbflow_flows.backfill import kb_backfill
from kbflow_flows.nightly import kb_nightly

from kbflow.cli.main import main
from kbflow.errors import BackfillFailed
from kbflow.mining.simulate import simulate_week
from kbflow.mining.tables import read_week_tables
from kbflow.search.searcher import make_searcher
from kbflow.settings import load_settings
from kbflow.store.golden import load_golden
from kbflow.store.logs import LogWriter
from kbflow.store.versions import current_version, list_versions, read_manifest

from ..conftest import EXAMPLES

ZH = EXAMPLES / "kb_zh"
DATES = ["2026-11-20", "2026-11-21", "2026-11-22"]


def catalog_rows(home: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(home / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def _edit(folder: Path, n_edit: int, drop: int, note: str) -> None:
    """Edit the answers of ``n_edit`` published FAQ entries and drop ``drop`` others."""
    path = folder / "faq.jsonl"
    out, edited, dropped = [], 0, 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            out.append(line)  # the sample's deliberately broken lines stay broken
            continue
        if (
            isinstance(obj, dict)
            and obj.get("status", "published") == "published"
            and obj.get("id")
        ):
            if dropped < drop and obj["id"].endswith("5"):
                dropped += 1
                continue
            if edited < n_edit and obj["id"].endswith("7"):
                obj["answer"] += note
                edited += 1
                line = json.dumps(obj, ensure_ascii=False)
        out.append(line)
    assert (edited, dropped) == (n_edit, drop)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kbbackfill") / "home"


@pytest.fixture(scope="module")
def nightly(home: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Three nights: a third of the sample export (its first 100 FAQ lines, a broken one
    included, and its SOP documents: a lean KB), then 3 answers edited, then 2 entries
    dropped."""
    root = tmp_path_factory.mktemp("exports")
    sources = [root / f"night{i}" / "export" for i in range(3)]
    sources[0].mkdir(parents=True)
    faq = (ZH / "export" / "faq.jsonl").read_text(encoding="utf-8").splitlines()[:100]
    (sources[0] / "faq.jsonl").write_text("\n".join(faq) + "\n", encoding="utf-8")
    shutil.copy(ZH / "export" / "sop.jsonl", sources[0])
    shutil.copytree(sources[0], sources[1])
    _edit(sources[1], 3, 0, "（11月21日更新）")
    shutil.copytree(sources[1], sources[2])
    _edit(sources[2], 1, 2, "（11月22日更新）")
    runs = [
        kb_nightly(source=str(src), run_date=day, home=str(home))
        for src, day in zip(sources, DATES, strict=True)
    ]
    assert [r["status"] for r in runs] == ["published"] * 3
    return runs


@pytest.fixture(scope="module")
def replayed(home: Path, nightly: list[dict[str, Any]]) -> dict[str, Any]:
    return kb_backfill(home=str(home), exports_from=DATES[0], exports_to=DATES[-1])


def _contents(version_dir: Path) -> tuple[list[tuple[Any, ...]], np.ndarray]:
    """What a version serves: its passages (id, entry, text, display) and their vectors, in
    passage-id order."""
    t = pq.read_table(version_dir / "passages.parquet")
    rows = list(
        zip(
            *(t.column(c).to_pylist() for c in ("passage_id", "entry_id", "text", "display")),
            strict=True,
        )
    )
    order = sorted(range(len(rows)), key=lambda i: rows[i][0])
    vectors = np.load(version_dir / "vectors.npy")
    return [rows[i] for i in order], vectors[order]


def test_replaying_three_exports_gives_what_the_three_nightly_runs_built(
    home: Path, nightly: list[dict[str, Any]], replayed: dict[str, Any]
) -> None:
    units = replayed["units"]
    assert replayed["counts"] == {"done": 3}
    # oldest first, each run as the nightly of its export's date
    assert [u["unit"].split(":")[0] for u in units] == DATES
    assert [u["status"] for u in units] == ["published"] * 3
    for unit, original, day in zip(units, nightly, DATES, strict=True):
        assert unit["unit"].split(":")[1] == original["snapshot_id"]
        (flow, run_date, snapshot) = catalog_rows(
            home, "select flow, run_date, snapshot_id from runs where run_id = ?", unit["run_id"]
        )[0]
        assert (flow, str(run_date), snapshot) == ("kb-nightly", day, original["snapshot_id"])
        pull = json.loads((home / "runs" / unit["run_id"] / "pull" / "_SUCCESS.json").read_text())
        assert pull["replay_of"] == original["run_id"] and pull["root"].endswith(
            original["snapshot_id"]
        )
        replay = json.loads((home / "runs" / unit["run_id"] / "summary.json").read_text())
        assert replay["rows"] == original["rows"]  # the same row accounting that night
        assert replay["embedded"] == 0  # everything came from the embedding cache
    # the final version is new, and holds exactly what the third nightly run published
    final = current_version(home / "indexes")
    assert final == units[-1]["version"] != nightly[-1]["version"]
    new_rows, new_vecs = _contents(home / "indexes" / final)
    old_rows, old_vecs = _contents(home / "indexes" / nightly[-1]["version"])
    assert new_rows == old_rows and len(new_rows) > 100
    np.testing.assert_array_equal(new_vecs, old_vecs)
    fingerprints = dict(
        catalog_rows(home, "select version, manifest->>'passages_fingerprint' from versions")
    )
    assert [fingerprints[u["version"]] for u in units] == [
        fingerprints[r["version"]] for r in nightly
    ]


def test_the_same_backfill_triggered_again_does_nothing(
    home: Path, replayed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    runs_before = catalog_rows(home, "select count(*) from runs")[0][0]
    versions_before = [v.version for v in list_versions(home / "indexes")]
    live = current_version(home / "indexes")
    code = main(["backfill", "--home", str(home), "--exports-from", DATES[0],
                     "--exports-to", DATES[-1], "--json"])  # fmt: skip
    again = json.loads(capsys.readouterr().out)
    assert code == 0 and again["counts"] == {"skipped": 3}
    assert [u["run_id"] for u in again["units"]] == [u["run_id"] for u in replayed["units"]]
    assert catalog_rows(home, "select count(*) from runs")[0][0] == runs_before
    assert [v.version for v in list_versions(home / "indexes")] == versions_before
    assert current_version(home / "indexes") == live


QUERIES = ["退款几天能到账啊", "发票开错了能重开吗", "我单子咋还没到", "优惠卷为啥用不了"]


@pytest.fixture(scope="module")
def reembedded(home: Path, replayed: dict[str, Any]) -> dict[str, Any]:
    """Re-embed at 256 dimensions while a thread searches the live version non-stop."""
    searcher = make_searcher(home, load_settings(str(home)))
    searcher.warm_up()
    old = current_version(home / "indexes")
    seen: list[tuple[str | None, int, int]] = []
    stop = threading.Event()

    def keep_searching() -> None:
        i = 0
        while not stop.is_set():
            r = searcher.search(QUERIES[i % len(QUERIES)])
            seen.append((r.version, r.fallback_level, len(r.results)))
            i += 1
            time.sleep(0.05)

    thread = threading.Thread(target=keep_searching, daemon=True)
    thread.start()
    try:
        result = kb_backfill(home=str(home), reembed=True, dim=256)
        new = current_version(home / "indexes")
        deadline = time.monotonic() + 60
        while (not seen or seen[-1][0] != new) and time.monotonic() < deadline:
            time.sleep(0.2)  # the searcher loads a new CURRENT in the background
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(10)
        searcher.close()
    return {"result": result, "old": old, "new": new, "seen": seen}


def test_reembed_publishes_a_new_dimension_while_the_old_version_keeps_answering(
    home: Path, reembedded: dict[str, Any]
) -> None:
    old, new, seen = reembedded["old"], reembedded["new"], reembedded["seen"]
    (unit,) = reembedded["result"]["units"]
    assert unit["status"] == "published" and unit["version"] == new != old
    m_new, m_old = read_manifest(home / "indexes" / new), read_manifest(home / "indexes" / old)
    # the Chinese sample's model (embed.model auto), at another dimension
    assert m_new["embedding"]["model_key"] == "multilingual-e5-small@256"
    assert m_old["embedding"]["model_key"] == "multilingual-e5-small@384"
    assert np.load(home / "indexes" / new / "vectors.npy").shape[1] == 256
    # the same snapshot, passages and cleaning: only the vectors changed
    assert m_new["passages_fingerprint"] == m_old["passages_fingerprint"]
    assert (
        m_new["snapshot_id"] == m_old["snapshot_id"]
        and m_new["settings"]["chunk"] == m_old["settings"]["chunk"]
    )
    assert m_new["gate"]["passed"] and "live_common" in m_new["gate"]["checks"]["self_check"]
    (flow,) = catalog_rows(home, "select flow from runs where run_id = ?", unit["run_id"])[0]
    assert flow == "kb-reembed"
    # every search succeeded; old version until the swap, new version after, never back
    assert seen and all(level == 0 and n > 0 for _, level, n in seen), seen
    versions = [v for v, _, _ in seen]
    swap = versions.index(new)
    assert swap >= 20, f"only {swap} searches ran during the re-embed"
    assert set(versions[:swap]) == {old} and set(versions[swap:]) == {new}
    assert (home / "indexes" / old / "manifest.json").is_file()  # kept for a rollback


def test_the_same_reembed_triggered_again_does_nothing(
    home: Path, reembedded: dict[str, Any]
) -> None:
    runs_before = catalog_rows(home, "select count(*) from runs")[0][0]
    again = kb_backfill(home=str(home), reembed=True, dim=256)
    assert again["counts"] == {"skipped": 1}
    assert again["units"][0]["run_id"] == reembedded["result"]["units"][0]["run_id"]
    assert catalog_rows(home, "select count(*) from runs")[0][0] == runs_before
    assert current_version(home / "indexes") == reembedded["new"]


def test_past_weeks_are_remined_once(home: Path, reembedded: dict[str, Any]) -> None:
    searcher = make_searcher(home, load_settings(str(home)))
    golden = load_golden(ZH / "golden.jsonl")
    with LogWriter(home / "logs.duckdb", batch_size=100, flush_s=0.5) as writer:
        for week in ("2026-W46", "2026-W47"):
            simulate_week(searcher, writer, golden, week, sessions=8, seed=3)
    searcher.close()
    first = kb_backfill(home=str(home), weeks="2026-W46..2026-W47")
    assert first["counts"] == {"done": 2}
    for week in ("2026-W46", "2026-W47"):
        metrics = read_week_tables(home / "logs.duckdb", week)["weekly_metrics"].to_pylist()
        assert metrics and metrics[0]["n_queries"] >= 8
        assert (home / "reports" / "weekly" / week).is_dir()
    again = kb_backfill(home=str(home), weeks="2026-W46..2026-W47")
    assert again["counts"] == {"skipped": 2}


def test_a_failed_unit_fails_the_backfill_after_the_others_and_is_tried_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    weeks = "2026-W46..2026-W47"
    # an invalid mining setting: each week's flow run fails
    state = kb_backfill(home=str(home), weeks=weeks, overrides={"min_impressions": 0},
                        return_state=True)  # fmt: skip
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, BackfillFailed) and "2 of 2 backfill units failed" in str(error)
    first = catalog_rows(home, "select unit, status, run_id from backfill_units order by unit")
    assert [(u, s) for u, s, _ in first] == [("2026-W46", "failed"), ("2026-W47", "failed")]
    # triggered again: failed units are not "done", so they run again (and fail again)
    code = main(["backfill", "--home", str(home), "--weeks", weeks, "--set", "min_impressions=0"])
    assert code == BackfillFailed.exit_code
    assert capsys.readouterr().err.startswith("kbflow: 2 of 2 backfill units failed")
    again = catalog_rows(home, "select unit, status, run_id from backfill_units order by unit")
    assert [s for _, s, _ in again] == ["failed", "failed"]
    assert {r for _, _, r in again}.isdisjoint({r for _, _, r in first})  # new attempts
