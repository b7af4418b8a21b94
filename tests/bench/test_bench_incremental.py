"""bench/bench_incremental.py and synth_export.derive_export at a tiny size (no model: synthetic
vectors), so the incremental benchmark cannot rot. About 30 s on the 2-core machine."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
SAMPLE = ROOT / "examples" / "kb_zh" / "export"
ENTRIES = 100

if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


def _needs_sample() -> None:
    if not SAMPLE.is_dir():
        pytest.skip(f"{SAMPLE} is absent: build it with `python examples/build_examples.py`")


def test_derive_export_changes_and_deletes_exactly_what_it_says(tmp_path: Path) -> None:
    _needs_sample()
    from synth_export import derive_export, write_export

    base = tmp_path / "base"
    write_export(SAMPLE, base, 400, seed=3)
    same = derive_export(base, tmp_path / "same", 0.0, 0)
    for p in base.iterdir():
        if not p.name.startswith("."):  # an unchanged copy is byte for byte the same
            assert (tmp_path / "same" / p.name).read_bytes() == p.read_bytes()
    assert same.changed == same.deleted == 0
    st = derive_export(base, tmp_path / "d", 0.05, 2, seed=1)
    assert st.changed == round(400 * 0.05) and st.deleted == 2
    assert sum(st.files.values()) == 400 - 2
    assert not set(st.changed_ids) & set(st.deleted_ids)
    # the edited records are still readable by the pipeline's reader, in their own encodings
    from kbflow.pull.discover import discover_export
    from kbflow.pull.readers import read_export

    def answers(folder: Path) -> dict[str, list[str]]:
        rows = read_export(folder, discover_export(str(folder))).rows
        out: dict[str, list[str]] = {}
        for rid, ans in zip(
            rows.column("id").to_pylist(), rows.column("answer").to_pylist(), strict=True
        ):
            out.setdefault(rid, []).append(ans)
        return out

    after, before = answers(tmp_path / "d"), answers(base)
    for rid in st.deleted_ids:
        assert len(after.get(rid, [])) == len(before[rid]) - 1, rid
    for rid in st.changed_ids:
        assert after[rid] != before[rid], rid


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    _needs_sample()
    import bench_incremental

    # The gate and review stages (tested in tests/unit) would double this test's time; the
    # benchmark's own logic does not depend on them.
    tmp = tmp_path_factory.mktemp("incr")
    out = tmp / "incr.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KBFLOW_GATE__ENABLED", "false")
        mp.setenv("KBFLOW_REVIEW__ENABLED", "false")
        res = bench_incremental.main(
            ["--entries", str(ENTRIES), "--no-embed", "--workdir", str(tmp / "w"),
             "--out", str(out), "--log-level", "WARNING"]
        )  # fmt: skip
    assert json.loads(out.read_text(encoding="utf-8"))["scenarios"] == json.loads(
        json.dumps(res["scenarios"], default=str)
    )
    return res


def test_every_scenario_runs_in_order_with_the_right_outcome(result: dict[str, Any]) -> None:
    sc = result["scenarios"]
    assert list(sc) == ["full", "no_change", "changed_1pct", "changed_10pct", "deleted_one"]
    assert sc["full"]["status"] == "published"
    assert sc["no_change"]["status"] == "unchanged"
    assert sc["no_change"]["texts_embedded"] == 0
    assert "embed" not in sc["no_change"]["stages"]
    for name in ("changed_1pct", "changed_10pct", "deleted_one"):
        assert sc[name]["status"] == "published", name
        assert "index" in sc[name]["stages"]
    # an edited answer is a new passage text; the similar questions stay cached
    assert 0 < sc["changed_1pct"]["texts_embedded"] <= sc["changed_10pct"]["texts_embedded"]
    assert sc["changed_10pct"]["texts_embedded"] < sc["full"]["texts_embedded"] / 2
    assert sc["deleted_one"]["passages"] < sc["changed_10pct"]["passages"]
    assert sc["changed_10pct"]["derived_export"]["changed"] == round(ENTRIES * 0.10)
    assert sc["deleted_one"]["derived_export"]["deleted"] == 1
    runs = result["runs"]
    assert runs["deleted_one"]["version"] != runs["changed_10pct"]["version"]
    # the full build has no live version to start from; the small changes reuse it
    assert sc["full"]["index_build"]["mode"] == "full"
    assert sc["changed_1pct"]["index_build"]["mode"] == "incremental"
    assert sc["changed_1pct"]["index_build"]["base_version"] == runs["full"]["version"]


def test_ratios_and_floors_are_computed_against_the_full_build(result: dict[str, Any]) -> None:
    sc = result["scenarios"]
    full = sc["full"]
    one = sc["changed_1pct"]
    assert one["embedded_vs_full_passages"] == round(one["texts_embedded"] / full["passages"], 5)
    assert sc["no_change"]["time_vs_full"] == round(
        sc["no_change"]["total_wall_s"] / full["total_wall_s"], 4
    )
    floors = {f["name"]: f for f in result["floors"]}
    assert floors["no-change rerun embeds no passage"]["passed"] is True
    # --no-embed: the time floor cannot be judged, and says so
    assert floors["no-change rerun / full build wall time"]["passed"] is None
    # the absolute floors of issue 19 are judged at 100k entries, not at this size
    rest = floors["1% changed: wall seconds apart from embedding its new texts"]
    assert rest["passed"] is None and rest["limit"] == 60.0
    assert rest["value"] == round(one["total_wall_s"] - one["stages"].get("embed", 0.0), 3)
    assert floors["no-change rerun wall seconds"]["passed"] is None
    peak = floors["peak RSS of a nightly run, MiB"]
    worst = max(sc.values(), key=lambda s: s["peak_rss_mib"])
    assert peak["value"] == worst["peak_rss_mib"] and peak["limit"] == 3072.0
    assert peak["passed"] is None and worst["peak_stage"] in peak["note"]
    assert result["embed_mode"] == "none" and "--no-embed" in result["command"]
