"""Prefect tasks of ``kb-fleet``: size the global concurrency limits, submit one ``kb-nightly``
flow run per KB to the work pool, wait for them, write the fleet report."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from kbflow.errors import ConfigError
from kbflow.fleet.registry import LIMIT_NAMES, KbSpec, Registry, last_fire
from kbflow.fleet.report import write_fleet_report
from kbflow.fleet.status import fleet_status

MINUTE = 60
#: Prefect's states in which a flow run will not change any more.
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@task(name="fleet-limits", cache_policy=NO_CACHE, timeout_seconds=5 * MINUTE)
def ensure_limits(registry: Registry) -> dict[str, int]:
    """Create (or resize) the Prefect global concurrency limits the registry sizes."""
    from prefect.client.orchestration import get_client

    sized = {LIMIT_NAMES[kind]: size for kind, size in registry.limits.items()}
    with get_client(sync_client=True) as client:
        for name, size in sized.items():
            client.upsert_global_concurrency_limit_by_name(name, size)
    get_run_logger().info("fleet-limits: %s", sized or "none")
    return sized


def idempotency_key(kb: KbSpec, registry: Registry, now: datetime, by_hand: str | None) -> str:
    """A KB due on its schedule (``by_hand`` None) gets one flow run per firing, however often
    kb-fleet is retried; a KB named by hand gets one per fleet run (``by_hand``: its id)."""
    when = by_hand or last_fire(kb.schedule, now, registry.timezone).isoformat()
    return f"kb-fleet:{kb.name}:{when}"


def outcome(flow_run_id: str, state: Any, label: str = "") -> dict[str, Any]:
    """What the fleet records of a KB's finished flow run (``kbflow.fleet.status.fleet_status``
    merges it into the KB's row): its id, state name and, unless it completed, the error."""
    error = None if state.is_completed() else f"{label}{state.name}: {state.message or ''}".strip()
    return {"flow_run_id": flow_run_id, "flow_state": state.name, "error": error}


@task(name="fleet-submit", cache_policy=NO_CACHE, timeout_seconds=10 * MINUTE)
def submit(
    kbs: Sequence[KbSpec],
    registry: Registry,
    deployment: str,
    now: datetime,
    by_hand: str | None,
) -> dict[str, str]:
    """One flow run of ``deployment`` (kb-nightly) per KB, on its work pool; not waited for."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    out = {}
    for kb in kbs:
        try:
            run = run_deployment(
                deployment,
                parameters={
                    "source": kb.source,
                    "home": str(kb.home),
                    "overrides": kb.overrides(registry.limit_names),
                },
                timeout=0,
                tags=["kb-fleet", f"kb:{kb.name}"],
                idempotency_key=idempotency_key(kb, registry, now, by_hand),
                as_subflow=False,
            )
        except ObjectNotFound as exc:
            raise ConfigError(
                f"the Prefect server has no deployment {deployment}: deploy it "
                "(KBFLOW_FLEET=<registry> python deployments/deploy.py, with PREFECT_API_URL "
                "set), or run the KBs here without --on-pool"
            ) from exc
        assert isinstance(run, FlowRun)  # called from sync code: the run, not a coroutine
        out[kb.name] = str(run.id)
    get_run_logger().info("fleet-submit: %d flow runs of %s", len(out), deployment)
    return out


@task(name="fleet-wait", cache_policy=NO_CACHE, timeout_seconds=24 * 60 * MINUTE)
def wait(flow_runs: Mapping[str, str], poll_s: float = 5.0) -> dict[str, dict[str, Any]]:
    """Poll the KBs' flow runs until every one is final; their states, by KB."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    log = get_run_logger()
    pending = dict(flow_runs)
    out: dict[str, dict[str, Any]] = {}
    waiting_since = time.monotonic()
    with get_client(sync_client=True) as client:
        while pending:
            unstarted = 0
            for kb, run_id in list(pending.items()):
                run = client.read_flow_run(UUID(run_id))
                state = run.state
                if state is None or state.type.value not in FINAL:
                    unstarted += state is None or state.type.value in ("SCHEDULED", "PENDING")
                    continue
                out[kb] = outcome(run_id, state, f"flow run {run.name}: ")
                del pending[kb]
                log.info("fleet-wait: %s %s (%d still running)", kb, state.name, len(pending))
            if pending and unstarted == len(pending) and time.monotonic() - waiting_since > 300:
                log.warning(
                    "fleet-wait: %d KB runs not started for %.0f s: is a worker polling the "
                    "deployment's work pool (prefect worker start --pool kbflow-gpu)?",
                    unstarted, time.monotonic() - waiting_since,
                )  # fmt: skip
                waiting_since = time.monotonic()
            elif unstarted < len(pending):
                waiting_since = time.monotonic()
            if pending:
                time.sleep(poll_s)
    return out


@task(name="fleet-report", cache_policy=NO_CACHE, timeout_seconds=10 * MINUTE)
def report(
    registry: Registry, outcomes: Mapping[str, Mapping[str, Any]], run: dict[str, Any]
) -> dict[str, Any]:
    rows = fleet_status(registry, outcomes)
    path = write_fleet_report(registry, rows, run)
    get_run_logger().info("fleet-report: %s", path)
    return {"report": str(path), "kbs": rows}
