"""Every deployment in deployments/prefect.yaml points at a real flow with matching parameters."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text(encoding="utf-8"))


def _flow(entrypoint: str):
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def test_entrypoints_import_and_parameters_match_the_flow_signature():
    assert {d["name"] for d in SPEC["deployments"]} >= {"nightly", "weekly-mining"}
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
