"""Prefect tasks of ``kb-backfill`` and ``kb-reembed``: thin wrappers, one call into
``kbflow.backfill`` each. The ledger writes are quick catalog statements; nothing here retries
(a unit that failed is done again when the backfill is triggered again)."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from kbflow import backfill as core
from kbflow.home import DataHome


@task(name="plan-backfill", cache_policy=NO_CACHE)
def plan(
    home: DataHome, request: core.BackfillRequest, overrides: dict[str, Any], force: bool
) -> list[dict[str, Any]]:
    units = core.plan_units(home, request, overrides, force)
    get_run_logger().info(
        "plan: %d %s unit(s): %s",
        len(units),
        request.kind,
        ", ".join(u["unit"] + (" (done)" if u["done"] else "") for u in units),
    )
    return units


@task(name="begin-unit", cache_policy=NO_CACHE)
def begin_unit(home: DataHome, unit: dict[str, Any], run_id: str) -> dict[str, Any]:
    out = core.begin_unit(home, unit, run_id)
    get_run_logger().info("unit %s %s: run %s", unit["kind"], unit["unit"], run_id)
    return out


@task(name="finish-unit", cache_policy=NO_CACHE)
def finish_unit(
    home: DataHome,
    unit: dict[str, Any],
    run_id: str,
    completed: bool,
    result: Any,
    flow_run_id: str | None,
) -> dict[str, Any]:
    out = core.finish_unit(home, unit, run_id, completed, result, flow_run_id)
    get_run_logger().info(
        "unit %s %s: %s (%s)", unit["kind"], unit["unit"], out["outcome"], out.get("status")
    )
    return out


@task(name="skip-unit", cache_policy=NO_CACHE)
def skip_unit(unit: dict[str, Any]) -> dict[str, Any]:
    out = core.skipped_unit(unit)
    get_run_logger().info(
        "unit %s %s: already done by run %s, skipped", unit["kind"], unit["unit"], out["run_id"]
    )
    return out


@task(name="reembed-settings", cache_policy=NO_CACHE)
def reembed_overrides(
    home: DataHome, model: str | None, dim: int | None, overrides: dict[str, Any] | None
) -> dict[str, Any]:
    return core.reembed_overrides(home, model, dim, overrides)


@task(name="fork-live-run", cache_policy=NO_CACHE)
def start_reembed(home: DataHome, run_id: str) -> dict[str, Any]:
    out = core.start_reembed(home, run_id)
    get_run_logger().info(
        "fork: run %s starts from run %s (live %s, %s)",
        run_id,
        out["source_run"],
        out["live_version"],
        out["live_model_key"],
    )
    return out
