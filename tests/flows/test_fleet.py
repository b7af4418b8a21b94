"""``kb-fleet`` in this process (no work pool): four small KBs, one whose export is broken and one
whose golden file makes its gate block; the other two publish, each KB stays in its own home,
and the fleet report and ``kbflow fleet status`` list every KB. The work-pool path is
``tests/deploy/test_fleet_pool.py``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kbflow.cli.main import main
from kbflow.errors import FleetFailed
from kbflow.store.versions import current_version, version_dir

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from fleet_kbs import brand, write_fleet, write_kb  # noqa: E402


def _texts(home: Path) -> str:
    live = version_dir(home / "indexes", current_version(home / "indexes") or "")
    return "\n".join(pq.read_table(live / "passages.parquet").column("text").to_pylist())


@pytest.mark.flow
def test_a_fleet_run_isolates_kbs_and_one_failure_or_block_never_stops_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kbflow_flows.fleet import kb_fleet

    registry = write_fleet(tmp_path, 4, limits={"embed": 1, "cpu": 1}, broken=2, blocked=4)
    state = kb_fleet(registry=str(registry), deployment=None, return_state=True)
    failure = state.result(raise_on_failure=False)
    assert isinstance(failure, FleetFailed) and "1 of 4 KBs failed (kb02)" in str(failure)

    homes = {f"kb{i:02d}": tmp_path / "homes" / f"kb{i:02d}" for i in range(1, 5)}
    report = json.loads((tmp_path / "fleet-reports" / "latest.json").read_text("utf-8"))
    states = {r["kb"]: r["state"] for r in report["kbs"]}
    assert states == {"kb01": "published", "kb02": "failed", "kb03": "published", "kb04": "blocked"}
    rows = {r["kb"]: r for r in report["kbs"]}
    assert "kb02" in report["run"]["ran"] and len(report["run"]["ran"]) == 4
    assert rows["kb02"]["message"].startswith("export rejected")  # kbflow's own words
    assert "golden" in rows["kb04"]["message"] and rows["kb04"]["version"] is None
    assert rows["kb01"]["quality"]["hit@3"] > 0.5 and rows["kb01"]["seconds"] > 0
    html = (tmp_path / "fleet-reports" / "latest.html").read_text("utf-8")
    assert all(f">{name}<" in html for name in homes) and "status blocked" in html

    # isolation: each home holds its own KB's texts and nothing of the others'
    for i in (1, 3):
        texts = _texts(homes[f"kb{i:02d}"])
        assert brand(i) in texts
        assert not any(brand(j) in texts for j in (1, 2, 3, 4) if j != i)
    assert current_version(homes["kb02"] / "indexes") is None
    assert current_version(homes["kb04"] / "indexes") is None  # blocked: nothing published
    # every CPU-heavy stage and the embedding held the fleet's limits, recorded per run
    slots = [
        json.loads(line)
        for line in next((homes["kb01"] / "runs").glob("*/slots.jsonl")).read_text().splitlines()
    ]
    assert [s["stage"] for s in slots] == ["validate+clean+chunk", "embed", "index+review+gate"]
    assert {s["limit"] for s in slots} == {"kbflow-embed", "kbflow-cpu"}

    # nothing is due until the schedules fire again; the status command says the same
    assert main(["fleet", "status", "--registry", str(registry), "--json"]) == 0
    listed = {r["kb"]: r for r in json.loads(capsys.readouterr().out)}
    assert {k: r["state"] for k, r in listed.items()} == states
    assert not any(r["due"] for r in listed.values())

    # the broken export fixed, that KB alone runs again; the others are untouched
    runs_before = {k: sorted(p.name for p in (h / "runs").iterdir()) for k, h in homes.items()}
    write_kb(tmp_path / "kbs" / "kb02", 2)
    assert main(["fleet", "run", "--registry", str(registry), "--kb", "kb02"]) == 0
    out = capsys.readouterr().out
    assert "fleet report:" in out and "kb02" in out
    assert brand(2) in _texts(homes["kb02"])
    for k, h in homes.items():
        after = sorted(p.name for p in (h / "runs").iterdir())
        assert (len(after) - len(runs_before[k])) == (1 if k == "kb02" else 0), k

    # --on-pool where the server has no fleet deployment: one clear line, nothing run
    assert main(["fleet", "run", "--registry", str(registry), "--all", "--on-pool", "--json"]) == 2
    out, err = capsys.readouterr()
    assert "no deployment kb-nightly/fleet-kb" in err
    assert "no deployment" in json.loads(out)["error"] and len(json.loads(out)["kbs"]) == 4
    assert all(
        len(list((h / "runs").iterdir())) == len(runs_before[k]) + (k == "kb02")
        for k, h in homes.items()
    )
