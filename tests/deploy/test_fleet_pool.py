"""The fleet on a real work pool: a local Prefect server, ``prefect.yaml`` applied with the
fleet's deployments (``KBFLOW_FLEET``), two process workers on ``kbflow-gpu``, and
``kbflow fleet run --on-pool`` sending three KBs' nightlies to them. The global concurrency
limits hold: at no moment do more runs embed, or run a CPU-heavy stage, than the registry's
limits allow, although the KBs' runs do overlap (two workers)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from bench_fleet import most_at_once  # noqa: E402
from fleet_kbs import run_on_pool, write_fleet  # noqa: E402


def test_most_at_once() -> None:
    assert most_at_once([(0, 2), (1, 3), (2.5, 4)]) == 2
    assert most_at_once([(0, 1), (1, 2)]) == 1  # one ends as the next starts
    assert most_at_once([]) == 0


@pytest.mark.flow
def test_kb_fleet_on_a_work_pool_with_two_workers_holds_the_concurrency_limits(
    tmp_path: Path,
) -> None:
    registry = write_fleet(tmp_path, 3, limits={"embed": 1, "cpu": 1})
    out, _ = run_on_pool(tmp_path, registry, workers=2, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert {r["kb"]: r["state"] for r in result["kbs"]} == {
        "kb01": "published", "kb02": "published", "kb03": "published",
    }  # fmt: skip
    assert all(r["flow_state"] == "Completed" and r["flow_run_id"] for r in result["kbs"])
    slots = [
        json.loads(line)
        for path in (tmp_path / "homes").glob("*/runs/*/slots.jsonl")
        for line in path.read_text().splitlines()
    ]
    by_kind = {
        kind: [(s["acquired"], s["released"]) for s in slots if s["kind"] == kind]
        for kind in ("embed", "cpu")
    }
    assert len(by_kind["embed"]) == 3 and len(by_kind["cpu"]) == 3 * 2
    assert most_at_once(by_kind["embed"]) == 1
    assert most_at_once(by_kind["cpu"]) == 1
    # ...while the KBs' runs themselves overlapped: both workers ran at once
    spans = []
    for path in (tmp_path / "homes").glob("*/runs/*/slots.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        spans.append((min(r["asked"] for r in rows), max(r["released"] for r in rows)))
    assert most_at_once(spans) == 2
