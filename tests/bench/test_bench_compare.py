"""bench/bench_compare.py (kbflow vs LlamaIndex) and bench/bench_llamaindex.py.

The arithmetic (pair figures, extrapolation) is tested everywhere. The real side-by-side run
needs LlamaIndex, which lives only in the bench environment (``make bench-venv``: it pins
marshmallow<4, so it is kept out of the main one); CI installs ``.[dev]`` only, so there that
test skips and says why. Locally it takes a minute or two at 100 entries.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import bench_compare  # noqa: E402


def _kbflow(texts: int, passages: int) -> dict[str, Any]:
    stages = {"start_run": 0.1, "pull": 0.2, "validate": 3.0, "clean": 1.0, "chunk": 0.5,
              "check_unchanged": 0.1, "embed": 2.0, "index": 10.0, "gate": 5.0, "account": 0.3,
              "publish": 0.1, "report": 0.2}  # fmt: skip
    recs = [{"stage": k, "wall_s": v, "process_peak_rss_mib": 900.0} for k, v in stages.items()]
    recs[4]["summary"] = {"passages": passages}
    recs.insert(6, {"stage": "embed_sample_bench", "wall_s": 99.0, "not_a_stage": True,
                    "process_peak_rss_mib": 900.0})  # fmt: skip
    return {
        "first_run": {
            "stages": recs,
            "total_wall_s": sum(stages.values()),
            "prefill": {"to_embed": texts, "model_load_s": 4.0, "synthetic_fill_s": 1.0},
        }
    }


def _llama(n: int, scale: float = 1.0) -> tuple[dict[str, Any], dict[str, Any]]:
    build = {
        "stages": {
            "import": 1.0,
            "load_documents": 0.5 * scale,
            "model_load": 5.0,
            "splitter_init": 0.1,
            "split": 4.0 * scale,
            "embed_synthetic": 1.0 * scale,
            "pipeline_run": 8.0 * scale,
            "index": 2.0 * scale,
            "persist_index": 1.0 * scale,
            "persist_pipeline": 6.0 * scale,
            "pipeline_overhead": 3.0 * scale,
        },  # fmt: skip
        "nodes": n,
        "documents": n - 10,
        "texts_to_embed": n,
        "peak_rss_mib": 700 + 2000 * scale,
        "total_wall_s": 30.0 * scale,
    }
    rerun = {
        "stages": {
            "import": 1.0,
            "load_documents": 0.5 * scale,
            "model_load": 5.0,
            "pipeline_load": 2.0 * scale,
            "pipeline_run": 0.1 * scale,
        },  # fmt: skip
        "nodes": 0,
        "total_wall_s": 8.6 * scale,
        "peak_rss_mib": 600.0,
    }
    return build, rerun


def test_combine_extrapolates_each_side_with_its_own_rate_and_count() -> None:
    kb = _kbflow(texts=1000, passages=1500)
    li_b, li_r = _llama(1600)
    kb_rerun = {"total_wall_s": 4.0, "status": "unchanged", "texts_embedded": 0,
                "peak_rss_mib": 400.0}  # fmt: skip
    rate = {"per_text_s": {"kbflow": 0.02, "llamaindex": 0.025}}
    pair = bench_compare.combine(kb, kb_rerun, li_b, li_r, rate)
    st = pair["stages"]
    # kbflow's embed: measured stage + cold model load + cache fill + its texts x its rate
    assert st["embed (EXTRAPOLATED)"]["kbflow_s"] == round(2.0 + 4.0 + 1.0 + 1000 * 0.02, 2)
    # LlamaIndex's: model load + every node x its rate (the synthetic pass is not counted)
    assert st["embed (EXTRAPOLATED)"]["llamaindex_s"] == round(5.0 + 1600 * 0.025, 2)
    assert pair["full"]["kbflow_s"] == round(sum(v["kbflow_s"] for v in st.values()), 1)
    # every kbflow stage is in exactly one row: the total is the measured run + the embedding
    measured = kb["first_run"]["total_wall_s"]
    assert pair["full"]["kbflow_s"] == pytest.approx(measured + 4.0 + 1.0 + 1000 * 0.02, abs=0.2)
    assert st["review + quality gate"] == {**st["review + quality gate"], "kbflow_s": 5.0}
    assert pair["full"]["ratio"] == round(
        pair["full"]["kbflow_s"] / pair["full"]["llamaindex_s"], 4
    )
    assert pair["no_change"]["ratio"] == round(4.0 / 8.6, 4)
    assert pair["texts_embedded"] == {"kbflow": 1000, "llamaindex": 1600}
    # the bench's own prefill is not a kbflow stage and is nowhere in the totals
    assert pair["full"]["kbflow_s"] < 99.0


def test_extrapolation_is_linear_through_the_two_largest_sizes() -> None:
    measured: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for n, scale in ((100, 1.0), (200, 2.0), (300, 3.0)):
        b, r = _llama(n * 4, scale)
        measured[n] = {"build": [b], "rerun": [r]}
    measured[600] = {"build": [], "rerun": []}  # where LlamaIndex did not fit
    b, r, used = bench_compare.extrapolate_llamaindex(measured, 600)
    assert used == [200, 300]
    assert b["nodes"] == 2400 and b["texts_to_embed"] == 2400
    assert b["stages"]["split"] == pytest.approx(24.0)  # 4 s per 100 entries
    assert b["stages"]["model_load"] == pytest.approx(5.0)  # constant stays constant
    assert r["stages"]["pipeline_load"] == pytest.approx(12.0)
    assert b["peak_rss_mib"] == pytest.approx(700 + 2000 * 6.0)
    with pytest.raises(RuntimeError):
        bench_compare.extrapolate_llamaindex({100: measured[100], 600: measured[600]}, 600)


def test_the_memory_watchdog_kills_and_reports(tmp_path: Path) -> None:
    hog = "x = bytearray(400 * 2**20); import time; print('[stage] load 0.1 s', flush=True); time.sleep(30)"
    with pytest.raises(bench_compare.Killed) as info:
        bench_compare._run([sys.executable, "-c", hog], tmp_path / "log", mem_limit_mib=200)
    assert info.value.rss_mib > 200 and info.value.after_s < 30
    assert "killed at" in (tmp_path / "log").read_text()


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    problem = bench_compare.bench_env_problem(bench_compare.DEFAULT_BENCH_PYTHON)
    if problem:
        pytest.skip(f"LlamaIndex is installed only in the bench environment: {problem}")
    if not (ROOT / "examples" / "kb_zh" / "export").is_dir():
        pytest.skip("examples/kb_zh/export is absent")
    tmp = tmp_path_factory.mktemp("cmp")
    out = tmp / "cmp.json"
    rc = bench_compare.main(
        ["--entries", "100", "--runs", "1", "--embed-sample", "8",
         "--workdir", str(tmp / "w"), "--out", str(out)]
    )  # fmt: skip
    res = json.loads(out.read_text(encoding="utf-8"))
    res["_rc"] = rc
    return res


def test_side_by_side_runs_both_pipelines_on_the_same_export(compared: dict[str, Any]) -> None:
    pair = compared["by_size"]["100"]["pairs"][0]
    assert pair["llamaindex_extrapolated"] is False
    assert pair["no_change"]["kbflow_status"] == "unchanged"
    assert pair["no_change"]["kbflow_embedded"] == 0
    assert pair["no_change"]["llamaindex_nodes"] == 0  # the docstore saw every document
    assert pair["texts_embedded"]["llamaindex"] >= pair["passages"]["llamaindex_documents"] > 0
    assert pair["embed_rate"]["min_cosine_same_text"] > 0.999  # the same weights on both sides
    assert set(pair["stages"]) == {
        "read + validate", "clean", "chunk / split", "embed (EXTRAPOLATED)",
        "review + quality gate", "docstore / cache bookkeeping", "index + publish",
    }  # fmt: skip
    assert compared["versions"]["llama-index-core"]
    assert compared["_rc"] in (0, 1) and compared["floors"][0]["value"] > 0
