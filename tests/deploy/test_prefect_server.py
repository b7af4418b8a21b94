"""kbflow deployed for real: a local Prefect server (``prefect server start``, its own
PREFECT_HOME, a free port), the work pools created and ``deployments/prefect.yaml`` applied with
``python deployments/deploy.py`` as the README says, ``kb-nightly`` triggered through the
Prefect API and run by a process worker polling ``kbflow-gpu``: the new version is published in
the data home. Then a backfill submitted twice with the same parameters is one flow run.

One test (it costs a minute or two): the server, the deploy and the worker are each a process
that pays Prefect's start-up.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from kbflow.store.versions import current_version, list_versions

ROOT = Path(__file__).resolve().parents[2]
ZH = ROOT / "examples" / "kb_zh"


def _deploy_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "kbflow_deploy", ROOT / "deployments" / "deploy.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prefect(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    out = subprocess.run([str(Path(sys.executable).with_name("prefect")), *args], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert out.returncode == 0, (
        f"prefect {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    )
    return out.stdout + out.stderr


@pytest.mark.flow
def test_deploy_from_prefect_yaml_trigger_through_the_api_and_run_with_a_worker(
    tmp_path: Path,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path / "kbhome"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),  # its own database, not the test session's
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1",
        "KBFLOW_REPO": str(ROOT),
        "KBFLOW_SOURCE": str(ZH / "export"),
        "KBFLOW_HOME": str(home),
    }
    with _deploy_module().local_server(_free_port(), env=env) as api:
        env["PREFECT_API_URL"] = api
        for pool in ("kbflow-cpu", "kbflow-gpu"):
            _prefect(env, "work-pool", "create", pool, "--type", "process")
        deployed = subprocess.run([sys.executable, "deployments/deploy.py"], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert deployed.stdout.count("deployed ") == 3, deployed.stdout

        with temporary_settings(updates={PREFECT_API_URL: api}):
            with get_client(sync_client=True) as client:
                deps = {n: client.read_deployment_by_name(n)
                        for n in ("kb-nightly/nightly", "kb-weekly-mining/weekly-mining",
                                  "kb-backfill/backfill")}  # fmt: skip
            nightly = deps["kb-nightly/nightly"]
            assert [(s.schedule.cron, s.schedule.timezone) for s in nightly.schedules] == [  # type: ignore[union-attr]
                ("0 2 * * *", "Asia/Shanghai")
            ]
            assert nightly.work_pool_name == "kbflow-gpu"
            assert nightly.parameters == {"source": str(ZH / "export"), "home": str(home)}
            for dep in deps.values():
                assert dep.global_concurrency_limit is not None
                assert dep.global_concurrency_limit.limit == 1
                assert dep.concurrency_options is not None
                assert dep.concurrency_options.collision_strategy == "ENQUEUE"
            assert deps["kb-backfill/backfill"].schedules == []

            run = run_deployment("kb-nightly/nightly", parameters={"run_date": "2026-11-24"},
                                 timeout=0, as_subflow=False)  # fmt: skip
            worker = subprocess.run(
                [str(Path(sys.executable).with_name("prefect")), "worker", "start", "--pool",
                 "kbflow-gpu", "--type", "process", "--run-once", "--limit", "1"],
                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=540,
            )  # fmt: skip
            logs = worker.stdout[-4000:] + worker.stderr[-4000:]
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(run.id).state
            assert state is not None and state.is_completed(), (state, logs)

            # the same backfill submitted twice is one flow run (Prefect idempotency key)
            from kbflow_deployments.submit import submit_backfill

            params = {"home": str(home), "reembed": True, "dim": 256}
            first, second = submit_backfill(params), submit_backfill(params)
            other = submit_backfill({**params, "dim": 128})
            assert first["flow_run_id"] == second["flow_run_id"] != other["flow_run_id"]

    # the worker's run published a complete version into the data home
    live = current_version(home / "indexes")
    assert live is not None and [v.version for v in list_versions(home / "indexes")] == [live]
    con = duckdb.connect(str(home / "catalog.duckdb"), read_only=True)
    try:
        ((status, version, run_date),) = con.execute(
            "select status, version, run_date from runs"
        ).fetchall()
    finally:
        con.close()
    assert (status, version, str(run_date)) == ("published", live, "2026-11-24")
    summary = json.loads(next((home / "runs").glob("*/summary.json")).read_text())
    assert summary["rows"]["indexed"] > 250
