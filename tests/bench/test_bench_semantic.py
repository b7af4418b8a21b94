"""Smoke test of bench/bench_semantic.py at 3,000 entries (a few seconds, no model)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_semantic.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_semantic", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_semantic"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _load()


@pytest.fixture(scope="module")
def run(bench: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    out = tmp_path_factory.mktemp("bench-semantic") / "r.json"
    returned = bench.main(["--entries", "3000", "--out", str(out)])
    return returned, json.loads(out.read_text(encoding="utf-8"))


def test_json_is_what_main_returns(run: tuple[dict[str, Any], dict[str, Any]]) -> None:
    returned, written = run
    assert json.loads(json.dumps(returned, default=str)) == written


def test_the_pass_finds_the_injected_duplicates(run: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, res = run
    assert res["entries"] == 3000 and res["injected_duplicate_pairs"] == 30
    assert res["calibration"]["method"] == "calibrated"
    pairs = res["pairs"]
    assert pairs["recall_injected"] == 1.0 and pairs["precision_vs_injected"] >= 0.9
    sp = res["semantic_pass"]
    assert set(sp["parts_s"]) == {"calibrate", "search", "group"}
    assert sp["wall_s"] >= sum(sp["parts_s"].values()) * 0.9 and sp["search"] == "exact (Flat)"
    assert res["floor"]["passed"] is None  # the floor is defined at 100k entries
    assert res["peak_rss_mib"] > 0 and res["versions"]["faiss-cpu"]


def test_synthetic_kb_has_the_documented_shape(bench: ModuleType) -> None:
    vectors, owner, dups = bench.synthetic_kb(2000, 3.0, 64, 0.01, seed=1)
    assert vectors.dtype == np.float32 and np.allclose(
        np.linalg.norm(vectors, axis=1), 1, atol=1e-5
    )
    counts = np.bincount(owner)
    assert len(counts) == 2000 and counts.min() >= 2 and counts.max() <= 6
    assert len(dups) == 20 and all(a < b for a, b in dups)
    first = np.searchsorted(owner, np.arange(2000))  # each entry's title vector
    a, b = next(iter(dups))
    unrelated = float(np.median(vectors[first[:500]] @ vectors[first[500:1000]].T))
    assert float(vectors[first[a]] @ vectors[first[b]]) > 0.5 > abs(unrelated)
