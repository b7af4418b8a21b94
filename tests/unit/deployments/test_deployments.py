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
    assert {d["name"] for d in SPEC["deployments"]} == {
        "nightly", "weekly-mining", "backfill", "fleet", "fleet-kb",
    }  # fmt: skip
    for dep in SPEC["deployments"]:
        flow = _flow(dep["entrypoint"])
        sig = inspect.signature(flow.fn)
        assert set(dep.get("parameters", {})) <= set(sig.parameters), dep["name"]
        required = {n for n, p in sig.parameters.items() if p.default is inspect.Parameter.empty}
        if dep["name"] == "fleet-kb":
            # triggered by kb-fleet with each KB's source, home and settings
            assert required == {"source"} and "parameters" not in dep
            continue
        assert required <= set(dep.get("parameters", {})), (dep["name"], required)


def test_schedules_are_in_shanghai_time_with_one_run_at_a_time():
    by_name = {d["name"]: d for d in SPEC["deployments"]}
    assert by_name["nightly"]["schedules"][0] == {"cron": "0 2 * * *", "timezone": "Asia/Shanghai"}
    assert by_name["weekly-mining"]["schedules"][0] == {
        "cron": "0 6 * * 1",
        "timezone": "Asia/Shanghai",
    }
    assert by_name["fleet"]["schedules"][0] == {"cron": "*/15 * * * *", "timezone": "Asia/Shanghai"}
    for name in ("nightly", "weekly-mining", "backfill"):
        assert by_name[name]["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    # one fleet run at a time (a collision is dropped: the next one in 15 minutes sees the same
    # due KBs); its KBs' runs side by side, bounded by the global concurrency limits instead
    assert by_name["fleet"]["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert "concurrency_limit" not in by_name["fleet-kb"] and "schedules" not in by_name["fleet-kb"]


def test_backfill_is_unscheduled_and_the_nightly_embeds_on_the_gpu_pool():
    by_name = {d["name"]: d for d in SPEC["deployments"]}
    assert "schedules" not in by_name["backfill"]
    assert by_name["backfill"]["entrypoint"] == "flows/backfill.py:kb_backfill"
    pools = {name: d["work_pool"]["name"] for name, d in by_name.items()}
    assert pools == {
        "nightly": "kbflow-gpu",
        "weekly-mining": "kbflow-cpu",
        "backfill": "kbflow-gpu",
        "fleet": "kbflow-cpu",
        "fleet-kb": "kbflow-gpu",
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
    # the fleet's two exist only with a registry
    assert set(served) == {d["name"] for d in SPEC["deployments"]} - {"fleet", "fleet-kb"}
    for dep in SPEC["deployments"]:
        if dep["name"] not in served:
            continue
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
    fleet = {
        d.name: d for d in deploy.build_deployments({**env, "KBFLOW_FLEET": "/srv/fleet.yaml"})
    }
    assert set(fleet) == {d["name"] for d in SPEC["deployments"]}
    assert fleet["fleet"].parameters == {"registry": "/srv/fleet.yaml"}
    assert fleet["fleet"].concurrency_options.collision_strategy == "CANCEL_NEW"
    assert fleet["fleet-kb"].parameters == {} and fleet["fleet-kb"].concurrency_limit is None
    with pytest.raises(SystemExit, match="KBFLOW_SOURCE"):
        deploy.build_deployments({"KBFLOW_HOME": "/data/kbflow"})


def test_serve_bounds_concurrent_runs_with_a_fleet():
    deploy = _deploy_module()
    assert deploy.serve_limit({}) is None  # one KB: as before
    assert deploy.serve_limit({"KBFLOW_FLEET": "f.yaml"}) >= 2
    assert deploy.serve_limit({"KBFLOW_FLEET": "f.yaml", "KBFLOW_SERVE_LIMIT": "3"}) == 3
    assert deploy.serve_limit({"KBFLOW_SERVE_LIMIT": "1"}) == 1
    with pytest.raises(SystemExit, match="at least 2"):
        deploy.serve_limit({"KBFLOW_FLEET": "f.yaml", "KBFLOW_SERVE_LIMIT": "1"})
    with pytest.raises(SystemExit, match="whole number"):
        deploy.serve_limit({"KBFLOW_SERVE_LIMIT": "many"})
