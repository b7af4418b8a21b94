"""Prefect tasks of ``kb-backfill`` and ``kb-reembed``: thin wrappers, one call into
``kbflow.backfill`` each. The ledger writes are quick catalog statements; nothing here retries
(a unit that failed is done again when the backfill is triggered again)."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from kbflow.backfill.reembed import reembed_overrides as reembed_overrides_core
from kbflow.backfill.reembed import start_reembed as start_reembed_core
from kbflow.backfill.request import BackfillRequest
from kbflow.backfill.units import plan_units, raise_if_failed, summarize
from kbflow.results import Forked
from kbflow.store.home import DataHome

MINUTE = 60


@task(name="plan-backfill", cache_policy=NO_CACHE, timeout_seconds=10 * MINUTE)
def plan(
    home: DataHome, request: BackfillRequest, overrides: dict[str, Any], force: bool
) -> list[dict[str, Any]]:
    units = plan_units(home, request, overrides, force)
    get_run_logger().info(
        "plan: %d %s unit(s): %s",
        len(units),
        request.kind,
        ", ".join(u["unit"] + (" (done)" if u["done"] else "") for u in units),
    )
    return units


@task(name="summarize-backfill", cache_policy=NO_CACHE, timeout_seconds=MINUTE)
def summary(kind: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The backfill's result; fails it (``BackfillFailed``) when some unit failed."""
    out = summarize(kind, results)
    get_run_logger().info("backfill: %s", out["counts"])
    raise_if_failed(results)
    return out


@task(name="reembed-settings", cache_policy=NO_CACHE, timeout_seconds=MINUTE)
def reembed_overrides(
    home: DataHome, model: str | None, dim: int | None, overrides: dict[str, Any] | None
) -> dict[str, Any]:
    return reembed_overrides_core(home, model, dim, overrides)


@task(name="fork-live-run", cache_policy=NO_CACHE, timeout_seconds=30 * MINUTE)
def start_reembed(home: DataHome, run_id: str) -> Forked:
    out = start_reembed_core(home, run_id)
    get_run_logger().info(
        "fork: run %s starts from run %s (live %s, %s)",
        run_id,
        out["source_run"],
        out["live_version"],
        out["live_model_key"],
    )
    return out
