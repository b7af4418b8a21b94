"""Every deployment in deployments/prefect.yaml points at a real flow with matching parameters."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
SPEC = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text(encoding="utf-8"))


def _flow(entrypoint: str):
    from kbflow_deployments.deploy import flow_of

    flow = flow_of(entrypoint)
    # the same flow Prefect loads from the file the entrypoint names (as workers do)
    path, name = entrypoint.split(":")
    spec = importlib.util.spec_from_file_location("_entrypoint_" + name, ROOT / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert getattr(module, name).name == flow.name
    return flow


def test_entrypoints_import_and_parameters_match_the_flow_signature():
    assert {d["name"] for d in SPEC["deployments"]} == {"nightly", "weekly-mining", "backfill"}
    for dep in SPEC["deployments"]:
        flow = _flow(dep["entrypoint"])
        sig = inspect.signature(flow.fn)
        assert set(dep.get("parameters", {})) <= set(sig.parameters), dep["name"]
        required = {n for n, p in sig.parameters.items() if p.default is inspect.Parameter.empty}
        assert required <= set(dep.get("parameters", {})), (dep["name"], required)


def test_schedules_are_in_shanghai_time_with_one_run_at_a_time():
    by_name = {d["name"]: d for d in SPEC["deployments"]}
    assert by_name["nightly"]["schedules"][0] == {"cron": "0 2 * * *", "timezone": "Asia/Shanghai"}
    assert by_name["weekly-mining"]["schedules"][0] == {
        "cron": "0 6 * * 1",
        "timezone": "Asia/Shanghai",
    }
    for dep in SPEC["deployments"]:
        assert dep["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}


def test_backfill_is_unscheduled_and_the_nightly_embeds_on_the_gpu_pool():
    by_name = {d["name"]: d for d in SPEC["deployments"]}
    assert "schedules" not in by_name["backfill"]
    assert by_name["backfill"]["entrypoint"] == "flows/backfill.py:kb_backfill"
    pools = {name: d["work_pool"]["name"] for name, d in by_name.items()}
    assert pools == {
        "nightly": "kbflow-gpu",
        "weekly-mining": "kbflow-cpu",
        "backfill": "kbflow-gpu",
    }


def _deploy_module():
    spec = importlib.util.spec_from_file_location(
        "kbflow_deploy", ROOT / "deployments" / "deploy.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_serve_serves_what_prefect_yaml_says():
    """deployments/deploy.py (``make serve`` and ``apply``) builds every deployment of
    prefect.yaml with the same schedules, limits and parameters, placeholders filled."""
    deploy = _deploy_module()
    env = {"KBFLOW_SOURCE": "/exports/kb", "KBFLOW_HOME": "/data/kbflow"}
    served = {d.name: d for d in deploy.build_deployments(env)}
    assert set(served) == {d["name"] for d in SPEC["deployments"]}
    for dep in SPEC["deployments"]:
        got = served[dep["name"]]
        assert got.entrypoint == dep["entrypoint"]
        assert [
            {"cron": s.schedule.cron, "timezone": s.schedule.timezone} for s in got.schedules
        ] == (dep.get("schedules") or [])
        assert got.concurrency_limit == 1
        assert got.concurrency_options.collision_strategy == "ENQUEUE"
        assert set(got.parameters) == set(dep["parameters"])
        assert got.parameters["home"] == "/data/kbflow"
    assert served["nightly"].parameters["source"] == "/exports/kb"
    with pytest.raises(SystemExit, match="KBFLOW_SOURCE"):
        deploy.build_deployments({"KBFLOW_HOME": "/data/kbflow"})
